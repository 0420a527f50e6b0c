"""``TailReader(root, keep=N)`` holds the rows of the runs it follows only, and answers like a fresh Store.

Mirroring every run held every row of the store (a team's store of 197 runs: 25.3 s and 4.96 GB before the app's
Runs page could draw). In keep mode the rows held are those of at most ``keep`` followed runs; every run's version
comes from an index of its segments; any other read comes from the run's files. The live behaviours of the full
mirror hold: a run deleted and re-created, a copied run, compaction, rows of deleted files dropped.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, TailReader, compact
from entropy_watch.store import tail as tail_mod
from entropy_watch.synthetic import write_to_store

ENTROPY = "entropy/mean"


def _held(tail: TailReader) -> dict[str, int]:
    """Rows held in memory per run, over every mirrored table."""
    out: dict[str, int] = {}
    for table in tail.tables:
        for row in tail.query(f"SELECT run, count(*) AS n FROM {table} GROUP BY run").to_pylist():
            out[row["run"]] = out.get(row["run"], 0) + int(row["n"])
    return out


def _answers(reader: Any, run: str) -> dict[str, Any]:
    steps, values = reader.series(run, ENTROPY)
    return {
        "version": reader.versions().get(run),
        "series": (steps.tolist(), values.tolist()),
        "names": reader.scalar_names(run),
        "events": len(reader.events(run)),
        "alerts": len(reader.alerts(run)),
    }


def _assert_same(tail: TailReader, root: Path) -> None:
    tail.poll()
    store = Store(root)
    assert tail.versions() == store.versions()
    for info in store.runs():
        assert _answers(tail, info.name) == _answers(store, info.name), info.name
    spark, want = tail.sparklines(ENTROPY), store.sparklines(ENTROPY)
    assert spark.keys() == want.keys()
    for run, line in want.items():
        np.testing.assert_allclose(spark[run], line, rtol=1e-12, err_msg=run)


@pytest.fixture(autouse=True)
def _fresh_sparklines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tail_mod, "SPARK_REFRESH_S", 0.0)  # every moved run read again (the default waits 10 s)


def test_keep_holds_the_rows_of_the_followed_runs_only(tmp_path: Path) -> None:
    root = tmp_path / "ew"
    for i, kind in enumerate(["fast_collapse", "healthy", "explosion", "healthy"]):
        write_to_store(root, f"r{i}", kind, seed=i, n_steps=60 + 10 * i)
    tail = TailReader(root, keep=2)
    tail.poll()
    assert _held(tail) == {}, "nothing followed: no rows held, whatever the store holds"
    _assert_same(tail, root)
    tail.follow("r0")
    _assert_same(tail, root)
    assert set(_held(tail)) == {"r0"}
    tail.follow("r1", "r2")  # r0 let go: two runs at most
    assert tail.followed == ["r1", "r2"]
    _assert_same(tail, root)
    assert set(_held(tail)) == {"r1", "r2"}
    full = TailReader(root)
    full.poll()
    assert _held(tail) == {r: n for r, n in _held(full).items() if r in ("r1", "r2")}
    tail.follow("r0")  # followed again: read whole again, nothing counted twice
    _assert_same(tail, root)
    assert set(_held(tail)) == {"r2", "r0"} and _held(tail)["r0"] == _held(full)["r0"]


def test_a_followed_run_reads_right_before_the_poll_that_loads_it(tmp_path: Path) -> None:
    root = tmp_path / "ew"
    write_to_store(root, "a", "fast_collapse", seed=1, n_steps=50)
    tail = TailReader(root, keep=1)
    tail.poll()
    tail.follow("a")  # not loaded yet: its reads come from its files
    assert _answers(tail, "a") == _answers(Store(root), "a")
    tail.poll()
    assert _held(tail) and _answers(tail, "a") == _answers(Store(root), "a")


def test_keep_mode_follows_deleted_recreated_copied_and_compacted_runs(tmp_path: Path) -> None:
    root = tmp_path / "ew"
    write_to_store(root, "demo", "fast_collapse", seed=1, n_steps=120)
    write_to_store(root, "other", "healthy", seed=3, n_steps=40)
    tail = TailReader(root, keep=1)
    tail.follow("demo")
    _assert_same(tail, root)
    generation = tail.generation
    shutil.rmtree(root / "run=other")  # an index-only run deleted: its version goes, the generation moves
    _assert_same(tail, root)
    assert tail.generation > generation and "other" not in tail.versions()
    shutil.rmtree(root / "run=demo")  # the followed run deleted and re-created
    write_to_store(root, "demo", "healthy", seed=2, n_steps=80)
    _assert_same(tail, root)
    assert tail.versions()["demo"] == (Store(root).versions()["demo"]) and tail.versions()["demo"][1] == 79
    shutil.copytree(root / "run=demo", root / "run=copy")  # same keys in two runs: each counts its own
    _assert_same(tail, root)
    assert tail.versions()["copy"] == tail.versions()["demo"]
    w = RunWriter(root, "live")
    for step in range(20):
        w.write("scalars", {"step": [step], "name": [ENTROPY], "value": [float(step)]})
    _assert_same(tail, root)
    compact(root, min_age_s=0)  # segments merged into parts and deleted: nothing dropped, nothing twice
    _assert_same(tail, root)
    for step in range(20, 25):
        w.write("scalars", {"step": [step], "name": [ENTROPY], "value": [float(step)]})
    compact(root, final=True)
    _assert_same(tail, root)
    assert tail.versions()["live"] == (25, 24)
    w.close()


def test_keep_must_be_a_number_of_runs(tmp_path: Path) -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="keep must be a number of runs"):
            TailReader(tmp_path, keep=bad)  # type: ignore[arg-type]
