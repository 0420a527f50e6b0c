"""``import_log``: parse a log and publish its runs into a store, atomically.

Everything is parsed first (a malformed file fails before the store is touched). Each run is then written by a
:class:`~entropy_watch.store.RunWriter` rooted at a hidden staging folder ``ROOT/.staging-<host>-<pid>-<ns>/`` (store
readers ignore hidden folders) and moved into place with one ``os.rename`` of its ``run=<name>`` folder, so readers see
either nothing or the whole run. An existing run is refused unless ``replace=True``; the new run is then swapped in with
one atomic exchange of the two folders where Linux offers it (:func:`~entropy_watch.store.atomic.exchange`: never a
moment without the run), else the old one moved aside to a hidden ``ROOT/.replaced-*`` folder and the new one renamed in
(moved back if that rename fails). Readers that read a run several times over (``show``,
``alerts``) do so as of one version (:func:`~entropy_watch.store.read_steady`). The old folders are deleted only once
every run of the call is published: if a later run of a multi-run file fails, the runs this call published are withdrawn
and the replaced ones restored.

Imported runs carry no heartbeat file, so :class:`~entropy_watch.store.Store` lists them with state ``imported``.
Scalars get ``wall_time`` NaN (the source's clock is unknown for most formats); ``run.json`` records the source file,
format, column mapping, entropy definition, importer version and the import time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from entropy_watch.errors import EntropyWatchError
from entropy_watch.importers import staging as staging_mod
from entropy_watch.importers.base import ImportedRun, Progress
from entropy_watch.importers.loader import load_log
from entropy_watch.store import fs
from entropy_watch.store.atomic import exchange
from entropy_watch.store.fs import ObjectPath
from entropy_watch.store.hive import ensure_common_metadata
from entropy_watch.store.layout import RUN_JSON, default_root, run_dir, status_dir


class RunExists(EntropyWatchError):
    """The run to import is already in the store (and ``replace`` was not asked for)."""


def store_root(store: Any) -> Path:
    """The root of ``store``: a :class:`~entropy_watch.store.Store`, a path, or None (the default root)."""
    if store is None or isinstance(store, str | os.PathLike):
        return default_root(store)
    return default_root(store.root)


def import_log(
    store: Any,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
    run: str | None = None,
    replace: bool = False,
    progress: Progress | None = None,
) -> list[str]:
    """Parse ``path`` (see :func:`~entropy_watch.importers.load_log`) and publish its runs; returns their names.

    Raises ImportFormatError for malformed input and :class:`RunExists` when a run is already in the store and
    ``replace`` is False; in both cases the store is unchanged.
    """
    runs = load_log(path, fmt=fmt, mapping=mapping, run=run, progress=progress)
    return publish_runs(store_root(store), runs, replace=replace)


def publish_runs(root: Path, runs: list[ImportedRun], *, replace: bool = False) -> list[str]:
    """Stage and publish ``runs`` under ``root``; all or nothing across the list."""
    if fs.is_object(root):
        return _publish_objects(root, runs, replace=replace)
    if not replace:
        for r in runs:
            if run_dir(root, r.name).exists():
                raise RunExists(
                    f"run {r.name!r} already exists in {root}; pass --replace to overwrite it or --run NAME to rename"
                )
    root.mkdir(parents=True, exist_ok=True)
    ensure_common_metadata(root)
    staging_mod.clean_stale(root)  # folders of imports killed earlier (age and pid rules, safe with live imports)
    staging = staging_mod.staging_dir(root)
    published: list[tuple[Path, Path | None]] = []  # (run folder, the replaced run moved aside)
    try:
        for r in runs:
            staged = stage_run(staging, r)
            published.append(_move_into_place(staged, run_dir(root, r.name), replace=replace))
    except BaseException:
        for target, aside in reversed(published):  # withdraw what this call published, restore what it replaced
            shutil.rmtree(target, ignore_errors=True)
            if aside is not None:
                os.rename(aside, target)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for _, aside in published:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    return [r.name for r in runs]


def _publish_objects(root: ObjectPath, runs: list[ImportedRun], *, replace: bool) -> list[str]:
    """An object store has no rename: stage every run locally first (a malformed run fails before the bucket is
    touched), then PUT each run's files, ``run.json`` last; with ``replace`` the old run's objects are deleted after.
    Each object appears whole, but a run becomes visible file by file (a reader may briefly see part of it)."""
    for r in runs:
        if not replace and fs.is_dir(run_dir(root, r.name)):
            raise RunExists(f"run {r.name!r} already exists in {root}; pass --replace to overwrite it or --run NAME")
    ensure_common_metadata(root)
    with tempfile.TemporaryDirectory(prefix="ew-import-") as tmp:
        staged = [stage_run(Path(tmp), r) for r in runs]
        for r, folder in zip(runs, staged, strict=True):
            target = run_dir(root, r.name)
            old = [p for _, p in fs.walk_files(target)] if replace else []
            files = [f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")]
            put = [target / f.relative_to(folder).as_posix() for f in files]
            for f, dest in sorted(zip(files, put, strict=True), key=lambda fd: fd[0].name == RUN_JSON):
                fs.put_bytes(dest, f.read_bytes())
            for p in set(old) - set(put):
                fs.unlink(p)
            if replace:
                _drop_markers(target, put)
    return [r.name for r in runs]


def _drop_markers(target: ObjectPath, kept: list[ObjectPath]) -> None:
    """Delete the folder markers (empty ``key/`` objects a writer's ``create_dir`` left) under the replaced run
    ``target`` that hold none of the ``kept`` files: the old run's ``table=*/rank=N/`` markers outlived its files,
    and the store still counted those ranks (``RunInfo.ranks`` [0, 1, 2] for an import that wrote rank 0 only)."""
    keep = {k.key.rsplit("/", i)[0] for k in kept for i in range(1, k.key.count("/") + 1)}  # every ancestor
    selector = pafs.FileSelector(target.key, allow_not_found=True, recursive=True)
    infos = target.fs.get_file_info(selector)
    for info in sorted(infos, key=lambda i: -len(i.path)):  # deepest first: a parent may hold only empty children
        if info.type == pafs.FileType.Directory and info.path.rstrip("/") not in keep:
            try:
                target.fs.delete_dir(info.path)
            except OSError:  # gone already, or refused: the run is published; an empty marker is no reason to fail
                pass


def stage_run(staging: Path, r: ImportedRun) -> Path:
    """Write ``r`` with a RunWriter rooted at ``staging``; returns the staged ``run=<name>`` folder."""
    from entropy_watch.store import RunWriter

    writer = RunWriter(staging, r.name, rank=0)
    writer.write("scalars", scalars_table(r))
    if r.events:
        import json

        writer.write(
            "events",
            {
                "step": [int(e["step"]) for e in r.events],
                "kind": [str(e["kind"]) for e in r.events],
                "payload": [json.dumps(e.get("payload", {}), default=str) for e in r.events],
                "wall_time": [float("nan")] * len(r.events),
            },
        )
    writer.update_run_meta(**run_meta(r), summary=writer.summary())  # what `ls` shows, without a query
    folder = run_dir(staging, r.name)
    shutil.rmtree(status_dir(staging, r.name), ignore_errors=True)  # no heartbeat: listed as "imported"
    (folder / ".run.json.lock").unlink(missing_ok=True)
    return folder


def scalars_table(r: ImportedRun) -> pa.Table:
    """The ``scalars`` rows of ``r``: one per (step, name), wall_time NaN."""
    steps, names, values = [], [], []
    for name, (s, v) in r.scalars.items():
        steps.append(np.asarray(s, dtype=np.int64))
        values.append(np.asarray(v, dtype=np.float64))
        names.append(np.full(len(s), name, dtype=object))
    if not steps:
        return pa.table({"step": pa.array([], pa.int64()), "name": pa.array([], pa.string())})
    n = sum(len(s) for s in steps)
    return pa.table(
        {
            "step": pa.array(np.concatenate(steps), pa.int64()),
            "name": pa.array(np.concatenate(names), pa.string()),
            "value": pa.array(np.concatenate(values), pa.float64()),
            "wall_time": pa.array(np.full(n, np.nan), pa.float64()),
        }
    )


def run_meta(r: ImportedRun) -> dict[str, Any]:
    """``run.json`` fields of an imported run."""
    from entropy_watch import __version__

    rng = r.step_range
    return {
        **r.meta,
        "imported": True,
        "imported_at": time.time(),
        "import_notes": list(r.notes),
        "framework": r.meta.get("framework", "unknown"),
        "entropy_watch_version": __version__,
        "step_range": list(rng) if rng else None,
    }


def _move_into_place(staged: Path, target: Path, *, replace: bool) -> tuple[Path, Path | None]:
    """``os.rename`` ``staged`` to ``target``; with ``replace``, move an existing target aside first.

    Returns ``(target, aside)``: the caller deletes ``aside`` once every run is published, or moves it back.
    """
    if not target.exists():
        os.rename(staged, target)
        return target, None
    if not replace:
        raise RunExists(f"run folder {target} appeared during the import; pass --replace to overwrite it")
    aside = staging_mod.aside_dir(target.parent, target.name[4:])
    if exchange(staged, target):  # one atomic swap: a reader finds the old run or the new one, never no run
        os.rename(staged, aside)  # the old run, now under the staging name
        return target, aside
    os.rename(target, aside)
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(aside, target)
        raise
    return target, aside
