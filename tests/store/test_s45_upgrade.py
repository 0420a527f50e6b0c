"""Stores written by older versions, read and continued by this one (an upgrade mid-project).

Each test builds the older layout in code, file by file as that version wrote it: ``run.json`` and ``status/`` beside
the table folders (before they were renamed ``_run.json`` and ``_status/``), heartbeats without ``latest`` (before run
summaries) or with ``latest`` but without ``covers`` (before the catch-up after a kill), segments named
``seg-<session>-<seq>.parquet`` with ``_writer``/``_seq`` columns (unchanged since the first version).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter, Store, manifest

T0 = 1_790_000_000.0  # wall times of the old sessions: well in the past


def _session(at: float, pid: int) -> str:
    return f"{int(at * 1e9)}-{pid}"


def _segment(root: Path, run: str, table: str, rank: int, session: str, seq: int, cols: dict[str, list[Any]]) -> None:
    """One segment as every version published it."""
    folder = root / f"run={run}" / f"table={table}" / f"rank={rank}"
    folder.mkdir(parents=True, exist_ok=True)
    n = len(cols["step"])
    tbl = pa.table({**cols, "_writer": [session] * n, "_seq": pa.array([seq] * n, pa.int64())})
    pq.write_table(tbl, folder / f"seg-{session}-{seq:06d}.parquet")


def _scalars(steps: list[int], values: list[float], wall: float) -> dict[str, list[Any]]:
    return {
        "step": pa.array(steps, pa.int64()),
        "name": [M.ENTROPY_MEAN] * len(steps),
        "value": pa.array(values, pa.float64()),
        "wall_time": pa.array([wall + i * 0.01 for i in range(len(steps))], pa.float64()),
    }


def _json(path: Path, doc: dict[str, Any], mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _old_run_json(root: Path, run: str) -> None:
    _json(root / f"run={run}" / "run.json", {"name": run, "created_at": T0, "schema_version": 1, "framework": "x"})


def _heartbeat(session: str, state: str, last_step: int | None, at: float, **more: Any) -> dict[str, Any]:
    """A heartbeat of the first versions (no ``latest``, no ``covers``); ``more`` adds what later ones carried."""
    return {"rank": 0, "pid": 1, "host": "old", "state": state, "last_step": last_step, "updated_at": at,
            "started_at": at, "interval_s": 5.0, "session": session, **more}  # fmt: skip


def test_resumed_run_from_before_summaries_lists_what_the_resume_kept(root: Path) -> None:
    """A run an early version trained, crashed at step 19 and resumed from step 10 (to 14): ``ls`` summarised it by
    a query of its own that kept the replaced trajectory's step 19 (entropy 0.81) beside ``show``'s 0.36 at 14."""
    first, second = _session(T0, 11), _session(T0 + 100, 12)
    _old_run_json(root, "res")
    _segment(root, "res", "scalars", 0, first, 0, _scalars(list(range(20)), [1.0 - 0.01 * s for s in range(20)], T0))
    _segment(root, "res", "events", 0, second, 0,
             {"step": pa.array([10], pa.int64()), "kind": ["resume"], "payload": ["{}"],
              "wall_time": pa.array([T0 + 100], pa.float64())})  # fmt: skip
    steps = list(range(10, 15))
    _segment(root, "res", "scalars", 0, second, 0, _scalars(steps, [0.5 - 0.01 * s for s in steps], T0 + 101))
    _json(root / "run=res" / "status" / "rank=0.json", _heartbeat(second, "finished", 14, T0 + 102))

    store = Store(root)
    info = store.run_info("res")
    (_, (value, step)) = store.ends("res", [M.ENTROPY_MEAN])[M.ENTROPY_MEAN]
    assert (info.last_step, step) == (14, 14)
    assert info.latest[M.ENTROPY_MEAN] == (value, step) == (0.5 - 0.14, 14)


def test_ranks_of_one_step_before_summaries_list_the_lowest_rank(root: Path) -> None:
    """Two ranks logging their own values at one step: the listing keeps rank 0's, as every read does (it kept
    whichever DuckDB met first: rank 0's before a compaction, rank 1's after)."""
    _old_run_json(root, "rw")
    for rank in (1, 0):
        session = _session(T0 + rank, 20 + rank)
        for seq in range(3):
            steps = list(range(seq * 10, seq * 10 + 10))
            cols = _scalars(steps, [1.0 - 0.01 * s + rank for s in steps], T0 + seq)
            _segment(root, "rw", "scalars", rank, session, seq, cols)
        beat = {**_heartbeat(session, "finished", 29, T0), "rank": rank}
        _json(root / "run=rw" / "status" / f"rank={rank}.json", beat)
    info = Store(root).run_info("rw")
    assert info.latest[M.ENTROPY_MEAN] == (0.71, 29)


def test_killed_run_whose_heartbeat_predates_covers_lists_its_rows(root: Path) -> None:
    """A version with run summaries but before ``covers`` was killed 0.1 s into a run: its only heartbeat (written at
    start) says step None. Trusted as it was, ``ls`` and ``show`` read "last step N/A, entropy N/A" of a run holding
    20 steps, for good."""
    session = _session(T0, 31)
    _old_run_json(root, "killed")
    for seq in range(4):
        steps = list(range(seq * 5, seq * 5 + 5))
        _segment(root, "killed", "scalars", 0, session, seq, _scalars(steps, [2.0 - 0.05 * s for s in steps], T0))
    _json(root / "run=killed" / "status" / "rank=0.json", _heartbeat(session, "running", None, T0, latest={}), mtime=T0)

    info = Store(root).run_info("killed")
    assert info.state == "stalled"
    assert info.last_step == 19
    assert info.latest[M.ENTROPY_MEAN] == (2.0 - 0.05 * 19, 19)


def _two_folders(root: Path, run: str, now: float) -> None:
    """A run this version wrote to step 29 (``_status/``, finished an hour ago) that an older trainer then went on
    writing (``status/``, its heartbeat refreshed now, rows to step 39)."""
    new = _session(now - 3600, 41)
    _json(root / f"run={run}" / "_run.json", {"name": run, "created_at": now - 3600, "schema_version": 1})
    _segment(root, run, "scalars", 0, new, 0, _scalars(list(range(30)), [0.5] * 30, now - 3600))
    beat = _heartbeat(new, "finished", 29, now - 3600, latest={M.ENTROPY_MEAN: [29, 0.5]}, covers={"scalars": [1, []]})
    _json(root / f"run={run}" / "_status" / "rank=0.json", beat, mtime=now - 3600)
    old = _session(now - 60, 42)
    _segment(root, run, "scalars", 0, old, 0, _scalars(list(range(30, 40)), [0.2] * 10, now - 60))
    _json(root / f"run={run}" / "status" / "rank=0.json", _heartbeat(old, "running", 39, now), mtime=now)


def test_older_trainer_continuing_a_run_is_listed_by_its_heartbeat(root: Path) -> None:
    """Each rank's heartbeat is the newer of ``_status/`` and ``status/``: reading ``_status/`` alone listed the run
    'finished at step 29' while the older trainer wrote step 39."""
    _two_folders(root, "mixed", time.time())
    info = Store(root).run_info("mixed")
    assert (info.state, info.last_step) == ("running", 39)
    assert info.latest[M.ENTROPY_MEAN] == (0.2, 39)


def test_listing_from_the_manifest_sees_an_older_trainers_heartbeat(root: Path) -> None:
    """The manifest's stamp of a run covers its ``status/`` folder too: a run recorded settled while both folders
    existed stayed 'finished' from ``_runs.parquet`` once the older trainer refreshed its heartbeat there."""
    now = time.time()
    _two_folders(root, "mixed", now)
    beat_path = root / "run=mixed" / "status" / "rank=0.json"
    _json(beat_path, _heartbeat(_session(now - 60, 42), "finished", 39, now - 600), mtime=now - 600)
    _json(root / "run=other" / "_run.json", {"name": "other", "created_at": now - 600, "schema_version": 1})
    for folder in [p for p in root.rglob("*") if p.is_dir()]:
        os.utime(folder, (now - 600, now - 600))  # settled: untouched for longer than manifest.SETTLE_S
    assert manifest.write(root, Store(root).runs) == 2
    _json(beat_path, _heartbeat(_session(now - 60, 42), "failed", 39, now), mtime=now)  # the older trainer again

    info = {i.name: i for i in Store(root).runs()}["mixed"]
    assert info.state == "failed"


def test_resuming_a_run_an_older_version_wrote_continues_its_heartbeat(root: Path) -> None:
    """A rank resumed by this version finds its previous session's heartbeat in the older ``status/`` folder: the
    run's last step (what Watch warns and seeds the live analysis from) read None, as if the run were new."""
    session = _session(T0, 51)
    _old_run_json(root, "old")
    _segment(root, "old", "scalars", 0, session, 0, _scalars(list(range(30)), [0.7] * 30, T0))
    _json(root / "run=old" / "status" / "rank=0.json", _heartbeat(session, "finished", 29, T0 + 1))

    writer = RunWriter(root, "old")
    try:
        assert writer.earlier_last_step == 29
        assert writer.session > session  # and its session follows the previous one
    finally:
        writer.close()
    info = Store(root).run_info("old")
    assert (info.state, info.last_step, info.meta.get("framework")) == ("finished", 29, "x")


def test_fields_an_older_rank_wrote_are_read_beside_the_new_document(root: Path) -> None:
    """A rank on an upgraded node created ``_run.json``; rank 0, still on the older version, then wrote the run's
    fields into ``run.json``: the histogram edges and vocabulary size it set were read by no one."""
    run_dir = root / "run=mix"
    _json(run_dir / "_run.json", {"name": "mix", "created_at": T0, "schema_version": 1, "world_size": 2}, mtime=T0)
    older = {"name": "mix", "created_at": T0 + 1, "schema_version": 1, "vocab_size": 50257, "world_size": 1}
    _json(run_dir / "run.json", older, mtime=T0 + 5)
    _segment(root, "mix", "scalars", 0, _session(T0, 61), 0, _scalars([0], [1.0], T0))

    meta = Store(root).run_meta("mix")
    assert (meta["vocab_size"], meta["world_size"], meta["created_at"]) == (50257, 1, T0)  # the later one wins
    writer = RunWriter(root, "mix", rank=1, heartbeat=False)  # a writer merges into _run.json from both
    try:
        assert writer.update_run_meta(seed=3)["vocab_size"] == 50257
    finally:
        writer.close()


def test_alerts_written_into_an_older_run_keep_its_state(root: Path) -> None:
    """``alerts --write`` on a run an older version trained: the side writer creates an empty ``_status/`` (it never
    beats), which hid the run's heartbeats in ``status/``, so the run read 'imported' with no rank."""
    session = _session(T0, 71)
    _old_run_json(root, "old")
    _segment(root, "old", "scalars", 0, session, 0, _scalars(list(range(30)), [0.7] * 30, T0))
    _json(root / "run=old" / "status" / "rank=0.json", _heartbeat(session, "failed", 29, T0 + 1))

    writer = RunWriter(root, "old", heartbeat=False)
    writer.write("alerts", {"step": [29], "detector": ["x"], "severity": ["warning"], "message": ["m"]})
    writer.close()
    info = Store(root).run_info("old")
    assert (info.state, info.last_step, info.ranks) == ("failed", 29, [0])


def test_killed_run_from_before_summaries_lists_its_last_row(root: Path) -> None:
    """The first versions' heartbeat, refreshed every 5 s, said step 4 of a run killed at step 19; the listing read the
    entropy at step 19 from the rows but kept the heartbeat's step 4 beside it."""
    session = _session(T0, 81)
    _old_run_json(root, "killed")
    for seq in range(4):
        steps = list(range(seq * 5, seq * 5 + 5))
        _segment(root, "killed", "scalars", 0, session, seq, _scalars(steps, [2.0 - 0.05 * s for s in steps], T0))
    _json(root / "run=killed" / "status" / "rank=0.json", _heartbeat(session, "running", 4, T0), mtime=T0)

    info = Store(root).run_info("killed")
    assert (info.state, info.last_step) == ("stalled", 19)
    assert info.latest[M.ENTROPY_MEAN] == (2.0 - 0.05 * 19, 19)
