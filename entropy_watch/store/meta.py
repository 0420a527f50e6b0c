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
import re
from typing import Any

from entropy_watch.store import layout
from entropy_watch.store.atomic import read_json, write_json_atomic
from entropy_watch.store.fs import StorePath, is_object, listdir, mtime

META_DIR = "_meta"
_RANK_JSON = re.compile(r"rank=(\d+)\.json")
STAMPED_AT = "_stamped_at"
"""Key :func:`statuses` adds to each heartbeat: its file's modification time (Unix s), stamped by the filesystem or
object store that holds it, a clock every writing host shares. Liveness is judged by it (``reader.rank_state``), not
by ``updated_at``, which the writing host's own clock stamped: a rank on a host whose clock ran 2 minutes behind was
listed ``stalled`` while it wrote, and one 2 minutes ahead stayed ``running`` for 2 minutes after a ``kill -9``."""


def rank_meta_path(root: StorePath, run: str, rank: int) -> StorePath:
    """``ROOT/run=<run>/_meta/rank=<r>.json``: the fields rank ``r`` set (object stores only)."""
    return layout.run_dir(root, run) / META_DIR / f"rank={int(rank)}.json"


def local_document(root: StorePath, run: str) -> dict[str, Any]:
    """The run's ``_run.json`` as stored (or the ``run.json`` of a store written before the rename); ``{}``."""
    meta = read_json(layout.run_json_path(root, run))
    if meta is None and not is_object(root):
        meta = read_json(layout.run_dir(root, run) / layout.LEGACY_RUN_JSON)
    return meta or {}


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
    """``(rank, heartbeat)`` of every readable ``_status/rank=<r>.json`` of ``run`` (``status/`` in older stores)."""
    folders = [layout.status_dir(root, run)]
    if not is_object(root):
        folders.append(layout.run_dir(root, run) / layout.LEGACY_STATUS_DIR)
    for folder in folders:
        try:
            entries = listdir(folder)
        except FileNotFoundError:
            continue
        out = []
        for entry in entries:
            m = _RANK_JSON.fullmatch(entry.name)
            if m and (st := read_json(entry.path)) is not None:
                with contextlib.suppress(OSError):  # replaced meanwhile: judged by its own clock (updated_at)
                    st[STAMPED_AT] = mtime(entry.path)
                out.append((int(m.group(1)), st))
        return out
    return []
