"""A warm TailReader (the app keeps one per store) answers as a fresh one-shot Store after files go away: a run
deleted, deleted and re-created under the same name (``make demo`` on every run), compacted, or copied. Its run
listing reads again only the runs whose own folders changed, and still sees every change."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from entropy_watch.histogram import n_bins
from entropy_watch.store import RunWriter, Store, TailReader, compact
from entropy_watch.store import fs as fs_mod
from entropy_watch.store import listing as listing_mod
from entropy_watch.store import meta as meta_mod
from entropy_watch.store.fs import open_root
from entropy_watch.synthetic import write_to_store

ENTROPY = "entropy/mean"


def _alert(root: Path, run: str, step: int, detector: str) -> None:
    w = RunWriter(root, run, heartbeat=False)
    w.write("alerts", {"step": [step], "detector": [detector], "severity": ["critical"], "message": [detector]})


def _answers(reader: Any, run: str) -> dict[str, Any]:
    """What the app reads of ``run``, comparable with ==."""
    bins = n_bins(np.asarray(Store(reader.root).run_meta(run)["hist_edges"]))
    steps, values = reader.series(run, ENTROPY)
    hm = reader.hist_matrix(run, bins)
    alerts = [(a["step"], a["detector"]) for a in reader.alerts(run)]
    return {
        "version": reader.versions().get(run),
        "series": (steps.tolist(), values.tolist()),
        "hist": None if hm is None else (hm[0].tolist(), hm[1].tolist()),
        "alerts": sorted(alerts),
        "events": len(reader.events(run)),
    }


def _assert_same(tail: TailReader, root: Path) -> None:
    tail.poll()
    store = Store(root)
    assert [(r.name, r.last_step) for r in tail.runs()] == [(r.name, r.last_step) for r in store.runs()]
    assert tail.versions() == store.versions()
    for info in store.runs():
        assert _answers(tail, info.name) == _answers(store, info.name), info.name


def test_a_run_deleted_and_recreated_under_its_name_shows_only_the_new_run(tmp_path: Path) -> None:
    root = tmp_path / "ew"
    write_to_store(root, "demo", "fast_collapse", seed=1, n_steps=120)
    _alert(root, "demo", 100, "old_collapse")
    write_to_store(root, "other", "healthy", seed=3, n_steps=40)
    tail = TailReader(root)
    _assert_same(tail, root)
    shutil.rmtree(root / "run=demo")
    write_to_store(root, "demo", "healthy", seed=2, n_steps=80)
    _alert(root, "demo", 10, "new_one")
    _assert_same(tail, root)
    assert tail.versions()["demo"][1] == 79
    assert tail.alerts("demo")[0]["detector"] == "new_one"


def test_a_deleted_run_leaves_the_reader_and_bumps_its_generation(tmp_path: Path) -> None:
    root = tmp_path / "ew"
    write_to_store(root, "demo", "fast_collapse", seed=1, n_steps=60)
    write_to_store(root, "other", "healthy", seed=3, n_steps=40)
    tail = TailReader(root)
    tail.poll()
    generation = tail.generation
    shutil.rmtree(root / "run=demo")
    assert tail.poll() == 0
    assert tail.generation > generation, "the app's caches are keyed by the generation: they must see the loss"
    assert set(tail.versions()) == {"other"}
    for table in ("scalars", "hist", "events", "alerts"):
        n = tail.query(f"SELECT count(*) AS n FROM {table} WHERE run = 'demo'").column("n")[0].as_py()
        assert n == 0, table
    write_to_store(root, "demo", "healthy", seed=2, n_steps=30)  # made again after a poll saw it gone
    _assert_same(tail, root)


def test_compaction_drops_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    root = tmp_path / "ew"
    w = RunWriter(root, "r")
    for step in range(20):
        w.write("scalars", {"step": [step], "name": [ENTROPY], "value": [float(step)]})
        w.write("hist", {"step": [step], "bin": [1], "count": [step + 1]})
    w.update_run_meta(hist_edges=[0.0, 1.0, 2.0, 3.0])
    _alert(root, "r", 5, "d")
    tail = TailReader(root)
    _assert_same(tail, root)
    compact(root, min_age_s=0)  # segments merged into parts, the segments deleted
    _assert_same(tail, root)
    for step in range(20, 25):
        w.write("scalars", {"step": [step], "name": [ENTROPY], "value": [float(step)]})
    _assert_same(tail, root)
    compact(root, final=True)  # parts and segments into one final part each
    _assert_same(tail, root)
    assert tail.versions()["r"] == (25, 24)
    # and a compacted run deleted and re-created: its part's rows go too
    shutil.rmtree(root / "run=r")
    write_to_store(root, "r", "healthy", seed=2, n_steps=30)
    _assert_same(tail, root)


def test_a_run_copied_under_another_name_keeps_both(tmp_path: Path) -> None:
    """``cp -r run=a run=b`` (a backup, a run brought from another store): both runs hold the same segment keys."""
    root = tmp_path / "ew"
    write_to_store(root, "a", "fast_collapse", seed=1, n_steps=50)
    tail = TailReader(root)
    tail.poll()
    shutil.copytree(root / "run=a", root / "run=b")
    store = Store(root)
    assert store.versions()["b"] == store.versions()["a"]
    _assert_same(tail, root)
    assert _answers(store, "b") == _answers(store, "a")
    _assert_same(TailReader(root), root)


def _age(root: Path, seconds: float = 10.0) -> None:
    """Every folder's modification time ``seconds`` back: settled (written well before any listing)."""
    for dirpath, _, _ in os.walk(root):
        t = os.stat(dirpath).st_mtime - seconds
        os.utime(dirpath, (t, t))


def _listing(reader: TailReader | Store) -> list[tuple[Any, ...]]:
    return [(r.name, r.state, r.last_step, r.ranks, r.updated_at, r.meta, r.latest) for r in reader.runs()]


def _finished(root: Path, run: str, steps: int) -> RunWriter:
    w = RunWriter(root, run)
    for step in range(steps):
        w.write("scalars", {"step": [step], "name": [ENTROPY], "value": [float(step)]})
    w.update_run_meta(note="first")
    w.close()
    return w


def test_the_listing_reads_only_the_runs_whose_folders_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ew"
    for i in range(4):
        _finished(root, f"r{i}", 3)
    _age(root)
    monkeypatch.setattr(listing_mod, "TRUST_NS", 10**15)  # however slow this machine, no stamp expires here
    read: list[str] = []
    real = meta_mod.load
    monkeypatch.setattr(meta_mod, "load", lambda root_, run: read.append(run) or real(root_, run))
    tail = TailReader(root)

    def listed() -> list[str]:
        """The runs the tail's listing read (it must agree with a fresh Store's)."""
        read.clear()
        got = _listing(tail)
        names = sorted(read)
        assert got == _listing(Store(root))
        return names

    assert listed() == ["r0", "r1", "r2", "r3"]
    assert listed() == [], "no run changed: none is read again"
    RunWriter(root, "r2", heartbeat=False).update_run_meta(note="changed")
    w = RunWriter(root, "r3")  # a resumed run: running again, more rows
    w.write("scalars", {"step": [3], "name": [ENTROPY], "value": [9.0]})
    w.heartbeat()
    assert listed() == ["r2", "r3"]
    assert {i.name: (i.meta.get("note"), i.state, i.last_step) for i in tail.runs()}["r2"] == ("changed", "finished", 2)
    assert tail.run_info("r3").state == "running"
    w.close()
    assert "r3" in listed()
    shutil.rmtree(root / "run=r1")
    _finished(root, "r1", 7)  # deleted and re-created
    assert _listing(tail) == _listing(Store(root)) and tail.run_info("r1").last_step == 6


def test_a_change_within_the_folder_time_tick_is_not_missed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A coarse (whole second) modification time: a stamp taken within 2 s of it is not trusted, nor one older than
    the trust period (a network filesystem may serve a cached time)."""
    root = tmp_path / "ew"
    _finished(root, "r", 3)
    tick = (int(time.time()) - 100) * 1_000_000_000
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, ns=(tick, tick))
    clock = [tick + 1_000_000_000]
    monkeypatch.setattr(listing_mod, "time", SimpleNamespace(time_ns=lambda: clock[0]))
    tail = TailReader(root)
    assert tail.run_info("r").meta["note"] == "first" and tail.runs()[0].meta["note"] == "first"
    RunWriter(root, "r", heartbeat=False).update_run_meta(note="same tick")
    os.utime(root / "run=r", ns=(tick, tick))  # the rename did not move the folder's time (same tick)
    assert tail.runs()[0].meta["note"] == "same tick", "a stamp taken within the tick is not trusted"
    clock[0] = tick + 3_000_000_000  # now settled
    tail.runs()
    RunWriter(root, "r", heartbeat=False).update_run_meta(note="later")
    os.utime(root / "run=r", ns=(tick, tick))  # a filesystem serving a cached time
    assert tail.runs()[0].meta["note"] == "same tick"  # trusted (settled, unchanged time): the rule's known limit
    clock[0] += listing_mod.TRUST_NS
    assert tail.runs()[0].meta["note"] == "later", "trust lasts TRUST_NS"


def test_a_running_run_turns_stalled_without_any_file_changing(tmp_path: Path) -> None:
    root = tmp_path / "ew"
    w = RunWriter(root, "live", heartbeat_interval_s=0.05)
    w.write("scalars", {"step": [0], "name": [ENTROPY], "value": [1.0]})
    w.heartbeat()
    tail = TailReader(root)
    tail.runs()
    deadline = time.monotonic() + 30
    while tail.runs()[0].state != "stalled" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tail.runs()[0].state == "stalled" == Store(root).runs()[0].state


def test_on_an_object_store_a_deleted_and_rewritten_run_is_the_new_one(s3_root: str) -> None:
    def write(values: list[float]) -> None:
        w = RunWriter(s3_root, "r")
        for step, value in enumerate(values):
            w.write("scalars", {"step": [step], "name": [ENTROPY], "value": [value]})
        w.close()

    write([1.0, 2.0, 3.0])
    tail = TailReader(s3_root, tables=("scalars",))
    tail.poll()
    bucket_fs, prefix = fs_mod.arrow(open_root(s3_root))
    bucket_fs.delete_dir(f"{prefix}/run=r")
    write([7.0])
    tail.poll()
    assert tail.series("r", ENTROPY)[1].tolist() == [7.0] == Store(s3_root).series("r", ENTROPY)[1].tolist()
