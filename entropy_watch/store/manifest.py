"""``ROOT/_runs.parquet``: what listing knows about settled runs, so ``ls`` over 10,000 runs costs a few ``stat`` calls
per run instead of reading each run's ``_run.json`` and heartbeats.

Listing a run reads its ``_run.json``, its heartbeat files and its five table folders (about ten system calls and two
JSON parses; ~0.8 ms a run on a loaded 2-core machine, so ~8 s at 10,000 runs). Most runs in a large store are
*settled*: finished, failed, terminated, interrupted or imported, with nothing written since. :func:`write` (called by
:func:`~entropy_watch.store.write_catalog`, which ``entropy-watch compact`` runs) records each settled run's
:class:`~entropy_watch.store.RunInfo` with a *stamp*: inode and modification time (ns) of the run folder and of its
heartbeat folders. Every write that can change what listing shows replaces a file in one of those folders by rename
(``_run.json`` in the run folder, ``rank=<r>.json`` in ``_status/``), which changes the folder's modification time; a
run replaced wholesale (``import --replace``) is a new inode. :meth:`Manifest.get` returns the recorded info only while
the stamp is unchanged; anything else is listed the ordinary way.

Two rules keep the stamp honest:

* only terminal states are recorded: ``running`` turns into ``stalled`` as time passes with no file changing;
* a run whose folders changed less than :data:`SETTLE_S` before the manifest was written is left out: a folder's
  modification time has a coarse tick (a few ms on ext4, up to 1-2 s elsewhere), so a second change within the same
  tick after the manifest was taken would not move it.

A third: the manifest records what listing *concluded* (a state), so it is valid only under the rules that concluded
it. Its Parquet metadata carries :data:`RULES`, changed whenever the state or summary rules change; a manifest of
other rules (or none: written before the key) is ignored. Without it, a run that an older rule read as ``failed``
(a resume on fewer ranks: the earlier session's rank decided) stayed ``failed`` in ``ls`` until the next compaction,
and forever if the store was too full to write the new manifest.

Local stores only: on an object store checking a stamp costs a request per folder, as much as listing the run. A
missing or unreadable manifest just means every run is listed the ordinary way.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from entropy_watch.store import fs, layout
from entropy_watch.store.atomic import write_parquet_atomic
from entropy_watch.store.fs import StorePath
from entropy_watch.store.query import run_names
from entropy_watch.store.summary import RunInfo

MANIFEST = "_runs.parquet"
SETTLE_S = 2.0
TERMINAL = frozenset({"finished", "failed", "terminated", "interrupted", "imported"})
RULES_KEY = b"entropy_watch.rules"
RULES = b"2"  # 2: ranks of a session a resume superseded no longer decide the state (Store._superseded)
_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("stamp", pa.string()),
        ("state", pa.string()),
        ("last_step", pa.int64()),
        ("ranks", pa.list_(pa.int32())),
        ("updated_at", pa.float64()),
        ("meta", pa.string()),  # JSON
        ("latest", pa.string()),  # JSON {name: [value, step]}
    ],
    metadata={RULES_KEY: RULES},
)


def path(root: StorePath) -> StorePath:
    return layout.default_root(root) / MANIFEST


def stamp(root: StorePath, run: str) -> tuple[str, float] | None:
    """``(stamp, newest modification time in s)`` of the run's folders; None when the run folder is gone."""
    rdir = f"{root}/run={run}"
    parts, newest = [], 0
    # both status folders: a run an older version wrote and a newer one continued (or the reverse) holds both, and
    # the listing reads each rank's newer heartbeat of the two (meta.statuses)
    for folder in (rdir, f"{rdir}/{layout.STATUS_DIR}", f"{rdir}/{layout.LEGACY_STATUS_DIR}"):
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            if folder == rdir:
                return None
            parts.append("-")
            continue
        parts.append(f"{st.st_ino}:{st.st_mtime_ns}")
        newest = max(newest, st.st_mtime_ns)
    return "/".join(parts), newest / 1e9


@dataclass
class Manifest:
    """The recorded runs of one root: ``name -> row`` (see the module docstring)."""

    root: StorePath
    rows: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, root: StorePath) -> Manifest:
        """The root's manifest; empty for an object store or when there is none (or it cannot be read)."""
        root = layout.default_root(root)
        if fs.is_object(root):
            return cls(root, {})
        try:
            table = pq.ParquetFile(str(path(root))).read()  # not pq.read_table: it imports pyarrow.dataset (pandas)
        except (OSError, pa.ArrowException):
            return cls(root, {})
        if (table.schema.metadata or {}).get(RULES_KEY) != RULES:  # concluded by other rules: not trusted
            return cls(root, {})
        return cls(root, {r["name"]: r for r in table.to_pylist()})

    def get(self, run: str) -> RunInfo | None:
        """The recorded info of ``run`` if nothing in it changed since; else None."""
        row = self.rows.get(run)
        if row is None:
            return None
        now = stamp(self.root, run)
        if now is None or now[0] != row["stamp"]:
            return None
        latest = {k: (float(v), int(s)) for k, (v, s) in json.loads(row["latest"]).items()}
        return RunInfo(
            run, json.loads(row["meta"]), row["state"], row["last_step"], row["ranks"], row["updated_at"], latest
        )


def write(root: StorePath, list_runs: Callable[[], list[RunInfo]]) -> int:
    """List the root's runs with ``list_runs`` (``Store(root).runs``) and record the settled ones in
    ``ROOT/_runs.parquet`` (replacing it); returns how many.

    Each run's stamp is taken before and after it is listed; a run that changed meanwhile is left out, so a recorded
    info is never older than its stamp.
    """
    root = layout.default_root(root)
    if fs.is_object(root):
        return 0
    names = run_names(root)
    cutoff = time.time() - SETTLE_S
    before = {name: stamp(root, name) for name in names}
    rows = []
    for info in list_runs():
        st = before.get(info.name)
        if info.state not in TERMINAL or st is None or st[1] > cutoff or stamp(root, info.name) != st:
            continue
        rows.append(
            {
                "name": info.name,
                "stamp": st[0],
                "state": info.state,
                "last_step": info.last_step,
                "ranks": list(info.ranks),
                "updated_at": info.updated_at,
                "meta": json.dumps(info.meta, default=str),
                "latest": json.dumps({k: [v, s] for k, (v, s) in info.latest.items()}),
            }
        )
    write_parquet_atomic(path(root), pa.Table.from_pylist(rows, schema=_SCHEMA))
    return len(rows)
