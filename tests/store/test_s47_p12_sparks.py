"""``TailReader(root, keep=N, sparks=(name,))`` draws every run's sparkline of ``name`` from its index, not its files.

In keep mode the Runs page's sparklines read every run's files (60 uncompacted runs, 9,290 files: 3-4 s on a cold
server, the first paint 11 -> 16 s). The index that the poll already builds from every scalar segment now keeps the
points of the sparkline's name (and each segment's newest wall time, and the runs' resume events: what the store's
rules read), so the lines come from memory and equal a fresh Store's through resumes, ranks logging the same step,
deleted runs and segments, and compaction.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, TailReader, compact
from entropy_watch.store import tail as tail_mod
from entropy_watch.synthetic import write_to_store

ENTROPY = "entropy/mean"


def _no_file_reads(*_: object, **__: object) -> None:
    raise AssertionError("a sparkline of an indexed name read the runs' files")


def _assert_lines(tail: TailReader, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tail.poll()
    with monkeypatch.context() as m:
        m.setattr(tail_mod, "query_files", _no_file_reads)
        got = tail.sparklines(ENTROPY)
    want = Store(root).sparklines(ENTROPY)
    assert got.keys() == want.keys()
    for run, line in want.items():
        np.testing.assert_allclose(got[run], line, rtol=1e-12, err_msg=run)


def _scalars(w: RunWriter, steps: range, tag: float) -> None:
    for s in steps:
        w.write("scalars", {"step": [s], "name": [ENTROPY], "value": [s + tag], "wall_time": [time.time()]})


def test_sparklines_of_an_indexed_name_come_from_memory_and_match_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ew"
    for i, kind in enumerate(["fast_collapse", "healthy", "explosion"]):
        write_to_store(root, f"r{i}", kind, seed=i, n_steps=80 + 20 * i)
    tail = TailReader(root, keep=1, sparks=(ENTROPY,))
    tail.follow("r0")
    _assert_lines(tail, root, monkeypatch)
    first = RunWriter(root, "resumed", rank=0)  # a resume: the first session's steps from 10 on are replaced
    _scalars(first, range(0, 30), tag=0.25)
    first.close()
    time.sleep(0.01)
    second = RunWriter(root, "resumed", rank=0)
    second.write("events", {"step": [10], "kind": ["resume"], "payload": ["{}"], "wall_time": [time.time()]})
    _scalars(second, range(10, 20), tag=0.5)
    ranked = RunWriter(root, "resumed", rank=1)  # another rank logging the same steps: rank 0's value is kept
    _scalars(ranked, range(0, 40), tag=0.75)
    _assert_lines(tail, root, monkeypatch)
    assert len(tail.sparklines(ENTROPY)["resumed"]) == 40
    shutil.rmtree(root / "run=r1")  # a run deleted: its line goes
    seg = sorted((root / "run=resumed" / "table=scalars" / "rank=1").glob("*.parquet"))[-1]
    seg.unlink()  # a segment deleted for good: its points go
    _assert_lines(tail, root, monkeypatch)
    assert "r1" not in tail.sparklines(ENTROPY)
    compact(root, min_age_s=0)  # segments merged into parts: no point lost or counted twice
    _assert_lines(tail, root, monkeypatch)
    _scalars(second, range(20, 25), tag=0.5)  # a live run moves: its line is made again at once
    compact(root, final=True)
    _assert_lines(tail, root, monkeypatch)
    for w in (second, ranked):
        w.close()


def test_a_name_not_indexed_is_still_read_from_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ew"
    write_to_store(root, "a", "fast_collapse", seed=1, n_steps=60)
    tail = TailReader(root, keep=1, sparks=(ENTROPY,))
    tail.poll()
    name = next(n for n in Store(root).scalar_names("a") if n != ENTROPY)
    assert tail.sparklines(name).keys() == Store(root).sparklines(name).keys() == {"a"}
    assert tail.query(f"SELECT count(*) AS n FROM {tail_mod.POINTS}").to_pylist()[0]["n"] == 60  # one name's points
