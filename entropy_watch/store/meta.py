"""A run's small JSON documents: its ``_run.json`` (merged from per-rank objects on an object store) and the ranks'
heartbeat files.

Locally the ranks of a run merge their fields into one ``run.json`` under an advisory file lock
(:meth:`~entropy_watch.store.RunWriter.update_run_meta`). An object store has no locks, and pyarrow exposes no
conditional PUT, so two ranks that each read, merge and write one object would silently drop each other's fields.
There each rank instead keeps what *it* set in its own object ``run=<run>/_meta/rank=<r>.json`` (one writer per rank
at a time, like the heartbeat; a restarted rank starts from its previous object), and readers merge:

1. ``run.json`` when there is one (imports, and stores that were once local);
2. the ranks' objects from the highest rank down to rank 0, so rank 0 wins a key that two ranks set differently;
3. ``created_at`` is the earliest any rank recorded.

No writer ever overwrites another's object, and a reader sees each object whole (one PUT each). The ``_`` prefix
keeps the folder out of Spark's and Trino's partition discovery.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from typing import Any

from entropy_watch.store import layout
from entropy_watch.store.atomic import read_json, write_json_atomic
from entropy_watch.store.fs import StorePath, is_link, is_object, listdir, mtime

META_DIR = "_meta"
_RANK_JSON = re.compile(r"rank=(\d+)\.json")
STAMPED_AT = "_stamped_at"
"""Key :func:`statuses` adds to each heartbeat: its file's modification time (Unix s), stamped by the filesystem or
object store that holds it, a clock every writing host shares. Liveness is judged by it (``reader.rank_state``), not
by ``updated_at``, which the writing host's own clock stamped: a rank on a host whose clock ran 2 minutes behind was
listed ``stalled`` while it wrote, and one 2 minutes ahead stayed ``running`` for 2 minutes after a ``kill -9``."""


def check_readable(*paths: StorePath) -> None:
    """Raise :class:`PermissionError` for the first local file among ``paths`` that exists but this user may not
    open. :func:`read_json` reads such a file as absent, so a reader checks where it found nothing: a run whose
    ``_run.json`` was private to its writer was read without its vocabulary size and reward ceiling (another verdict,
    silently), and one whose heartbeats were, as ``imported``."""
    for path in paths:
        if is_object(path):
            continue
        try:
            os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)))
        except PermissionError:
            raise PermissionError(errno.EACCES, "permission denied (this user may not read it)", str(path)) from None
        except OSError:
            continue


def check_run_json(root: StorePath, run: str) -> None:
    """:func:`check_readable` on the run's ``_run.json`` (and the ``run.json`` of older stores)."""
    check_readable(layout.run_json_path(root, run), layout.run_dir(root, run) / layout.LEGACY_RUN_JSON)


def rank_meta_path(root: StorePath, run: str, rank: int) -> StorePath:
    """``ROOT/run=<run>/_meta/rank=<r>.json``: the fields rank ``r`` set (object stores only)."""
    return layout.run_dir(root, run) / META_DIR / f"rank={int(rank)}.json"


def local_document(root: StorePath, run: str) -> dict[str, Any]:
    """The run's ``_run.json`` as stored (or the ``run.json`` of a store written before the rename); ``{}``.

    A local run may hold both: an older version writing into a run this one started (a resume, a rank on a node not
    yet upgraded) writes ``run.json``, whose fields (histogram edges, vocabulary size, config) every reader then
    ignored beside ``_run.json``. Both are read, the one written last winning a key both set (``created_at``: the
    earlier).
    """
    path = layout.run_json_path(root, run)
    meta = read_json(path)
    if is_object(root):
        return meta or {}
    legacy_path = layout.run_dir(root, run) / layout.LEGACY_RUN_JSON
    legacy = read_json(legacy_path)
    if meta is None or legacy is None:
        return meta or legacy or {}
    try:
        legacy_newer = mtime(legacy_path) > mtime(path)
    except OSError:  # replaced meanwhile: the current document wins
        legacy_newer = False
    merged = {**meta, **legacy} if legacy_newer else {**legacy, **meta}
    created = [d["created_at"] for d in (meta, legacy) if isinstance(d.get("created_at"), int | float)]
    if created:
        merged["created_at"] = min(created)  # as :func:`load` merges ranks: the run began with its first writer
    return merged


def load(root: StorePath, run: str) -> dict[str, Any]:
    """The run's merged ``_run.json`` document; ``{}`` when it has none."""
    meta = local_document(root, run)
    if not is_object(root):
        return meta
    docs = [meta, *(doc for _, doc in sorted(rank_docs(root, run), key=lambda rd: rd[0], reverse=True))]
    created = [d["created_at"] for d in docs if isinstance(d.get("created_at"), int | float)]
    merged: dict[str, Any] = {}
    for doc in docs:
        merged.update(doc)
    if created:
        merged["created_at"] = min(created)
    return merged


def rank_docs(root: StorePath, run: str) -> list[tuple[int, dict[str, Any]]]:
    """``(rank, document)`` of every rank's meta object of ``run`` (unreadable ones skipped)."""
    try:
        entries = listdir(layout.run_dir(root, run) / META_DIR)
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        m = _RANK_JSON.fullmatch(entry.name)
        if m and (doc := read_json(entry.path)) is not None:
            out.append((int(m.group(1)), doc))
    return out


def save_rank(root: StorePath, run: str, rank: int, doc: dict[str, Any]) -> None:
    """Publish rank ``rank``'s own fields (one PUT)."""
    write_json_atomic(rank_meta_path(root, run, rank), doc)


def statuses(root: StorePath, run: str) -> list[tuple[int, dict[str, Any]]]:
    """``(rank, heartbeat)`` of every readable ``_status/rank=<r>.json`` of ``run`` (``status/`` in older stores).

    A local run may hold both folders: versions before the rename wrote ``status/``, and a run written by one version
    was continued by the other (a resume, or ranks on nodes that run different versions). Each rank's heartbeat is then
    the one written last (:func:`_newest`); reading ``_status/`` alone listed a run that an older trainer went on
    writing as its newer session had left it (``finished`` at step 29 beside rows to step 39).
    """
    folders = [layout.status_dir(root, run)]
    if not is_object(root):
        folders.append(layout.run_dir(root, run) / layout.LEGACY_STATUS_DIR)
    found: dict[int, dict[str, Any]] = {}
    for folder in folders:
        try:
            entries = listdir(folder)
        except FileNotFoundError:
            continue
        for entry in entries:
            m = _RANK_JSON.fullmatch(entry.name)
            if m and (st := read_json(entry.path)) is None:
                check_readable(entry.path)  # another user's private heartbeat: never a run silently "imported"
            elif m and st is not None:
                with contextlib.suppress(OSError):  # replaced meanwhile: judged by its own clock (updated_at)
                    st[STAMPED_AT] = mtime(entry.path)
                rank = int(m.group(1))
                found[rank] = _newest(found[rank], st) if rank in found else st
    return sorted(found.items())


def rank_status(root: StorePath, run: str, rank: int) -> dict[str, Any] | None:
    """Rank ``rank``'s heartbeat as :func:`statuses` reads it (the newer of ``_status/`` and ``status/``); None when
    it has none."""
    docs = []
    paths = [layout.status_path(root, run, rank)]
    if not is_object(root):
        paths.append(layout.run_dir(root, run) / layout.LEGACY_STATUS_DIR / f"rank={int(rank)}.json")
    for path in paths:
        if is_link(path.parent):
            continue  # a link inside the store is not followed (:func:`~.fs.listdir`)
        if (st := read_json(path)) is not None:
            with contextlib.suppress(OSError):
                st[STAMPED_AT] = mtime(path)
            docs.append(st)
    if not docs:
        return None
    return docs[0] if len(docs) == 1 else _newest(docs[0], docs[1])


def _newest(current: dict[str, Any], legacy: dict[str, Any]) -> dict[str, Any]:
    """Of one rank's two heartbeats (``_status/`` first, ``status/`` second), the one written last: by the file's
    modification time, else its ``updated_at``; the current folder's on a tie."""

    def when(st: dict[str, Any]) -> float:
        for key in (STAMPED_AT, "updated_at"):
            t = st.get(key)
            if isinstance(t, int | float) and not isinstance(t, bool):
                return float(t)
        return float("-inf")

    return legacy if when(legacy) > when(current) else current
