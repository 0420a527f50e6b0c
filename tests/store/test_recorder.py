"""The recorder under bad input and store faults: nothing invalid is buffered, nothing published is sent twice.

Each test injects one fault found by hostile probing (issue 11): a step beyond int64 that used to poison the scalars
buffer, a heartbeat that fails right after a segment was published (rows were re-sent), a store folder deleted
mid-run, a publish that lands and then raises, and the first rows of a session that waited a whole interval.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import StoreUnwritable
from entropy_watch.recorder import Recorder
from entropy_watch.store import RunWriter, Store
from entropy_watch.store import atomic as atomic_mod
from entropy_watch.store import writer as writer_mod
from entropy_watch.store.layout import table_dir
from entropy_watch.store.schema import check_step, check_value


def _recorder(root: Path, run: str = "r", **kwargs) -> Recorder:
    kwargs.setdefault("flush_secs", 3600)
    return Recorder(RunWriter(root, run), handle_sigterm=False, **kwargs)


def _counts(root: Path, run: str = "r") -> dict[tuple[int, str], int]:
    """How often each (step, name) is stored; the hooks/* counters (re-logged at the last step) are left out."""
    tbl = Store(root).scalars(run, ["x"])
    out: dict[tuple[int, str], int] = {}
    for r in tbl.to_pylist():
        out[(r["step"], r["name"])] = out.get((r["step"], r["name"]), 0) + 1
    return out


@pytest.mark.parametrize(
    "step", [2**70, 2**63, np.uint64(2**64 - 1), -1, float("nan"), float("inf"), 2.5, "3", True, None, 2.0**60]
)
def test_check_step_refuses_what_int64_cannot_hold(step: object) -> None:
    with pytest.raises(ValueError, match="step"):
        check_step(step)


@pytest.mark.parametrize("step", [0, 7, 2**63 - 1, np.int64(5), np.uint64(9), 3.0, np.float32(4.0)])
def test_check_step_accepts_integers(step: object) -> None:
    assert check_step(step) == int(step)


def test_check_value_keeps_nonfinite_and_refuses_non_numbers() -> None:
    assert np.isnan(check_value(float("nan"))) and check_value(np.float32(-np.inf)) == -np.inf
    for bad in ("0.5", b"1", 1j, 10**400, np.array([1.0, 2.0]), object()):
        with pytest.raises(ValueError):
            check_value(bad)


@pytest.mark.parametrize("bad_step", [2**70, np.uint64(2**64 - 1)])
def test_a_huge_step_is_refused_at_the_call_and_later_rows_are_stored(root: Path, bad_step: object) -> None:
    rec = _recorder(root)
    rec.scalars(0, {"x": 0.0})
    with pytest.raises(ValueError, match="out of range"):
        rec.scalars(bad_step, {"x": 1.0})
    for step in range(1, 195):
        rec.scalars(step, {"x": float(step)})
    with pytest.raises(ValueError, match="out of range"):
        rec.event(2**64, "k", "{}")
    rec.event(3, "k", "{}")
    rec.close()
    steps, values = Store(root).series("r", "x")
    assert steps.tolist() == list(range(195)) and values.tolist() == [float(s) for s in range(195)]
    assert Store(root).table("r", "events").column("step").to_pylist() == [3]


def test_bad_values_are_refused_alone(root: Path) -> None:
    rec = _recorder(root)
    with pytest.raises(ValueError, match="'b'.*must be a number"):
        rec.scalars(4, {"a": 1.0, "b": "x", "c": float("nan"), "d": 10**400})
    rec.close()
    rows = {r["name"]: r["value"] for r in Store(root).scalars("r").to_pylist()}
    assert rows["a"] == 1.0 and np.isnan(rows["c"]) and "b" not in rows and "d" not in rows


def test_an_unencodable_row_is_dropped_alone_and_counted(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Defence in depth: a row that bypassed the checks costs only itself, never its batch."""
    rec = _recorder(root)
    rec.scalars(1, {"x": 1.0})
    with rec._lock:  # bypass the call-site checks, as a future bug might
        rec._rows["scalars"].append({"step": 2**70, "name": "x", "value": 2.0, "wall_time": 0.0})
    rec.scalars(2, {"x": 3.0})
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        rec.flush()
        rec.scalars(3, {"x": 4.0})
        rec.close()
    assert Store(root).series("r", "x")[0].tolist() == [1, 2, 3]
    assert rec.errors == 1 and rec.dropped_rows == 1
    assert Store(root).series("r", M.HOOKS_ERRORS)[1][-1] == 1, "hooks/errors is stored"
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "cannot be stored" in text and "disk" not in text


def test_a_failing_heartbeat_never_resends_a_published_segment(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = RunWriter(root, "r", heartbeat_interval_s=0.0)  # every write owes a heartbeat
    rec = Recorder(writer, flush_secs=3600, handle_sigterm=False)

    def broken_heartbeat(*args, **kwargs):
        raise StoreUnwritable("cannot write heartbeat for run 'r' (Permission denied)")

    monkeypatch.setattr(writer, "heartbeat", broken_heartbeat)
    for step in range(685):
        rec.scalars(step, {"x": float(step)})
        if step % 50 == 0:
            rec.flush()
    rec.close()
    counts = _counts(root)
    assert sum(counts.values()) == 685
    assert max(counts.values()) == 1, "no row stored twice"


def test_a_publish_that_lands_then_raises_is_retried_in_place(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry reuses the batch's segment number, so a segment that did land is replaced, not duplicated."""
    rec = _recorder(root)
    real = writer_mod.write_parquet_atomic
    fails = {"n": 2}

    def lands_then_fails(path, table, **kwargs):
        real(path, table, **kwargs)
        if fails["n"] > 0:
            fails["n"] -= 1
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(writer_mod, "write_parquet_atomic", lands_then_fails)
    for step in range(10):
        rec.scalars(step, {"x": float(step)})
    rec.flush()
    rec.flush()
    rec.close()
    counts = _counts(root)
    assert [s for (s, _) in sorted(counts)] == list(range(10))
    assert max(counts.values()) == 1


def test_store_deleted_mid_run_stores_later_rows_once(root: Path) -> None:
    rec = _recorder(root)
    for step in range(100):
        rec.scalars(step, {"x": float(step)})
    rec.flush()
    shutil.rmtree(root, ignore_errors=True)  # the recorder's thread may write a heartbeat meanwhile: a real race
    for step in range(100, 354):
        rec.scalars(step, {"x": float(step)})
        if step % 40 == 0:
            rec.flush()
    rec.close()
    counts = _counts(root)
    assert [s for (s, _) in sorted(counts)] == list(range(100, 354))
    assert max(counts.values()) == 1
    assert Store(root).run_meta("r").get("name") == "r", "run.json is restored"
    assert Store(root).run_info("r").state == "finished"


def test_write_with_a_reserved_seq_replaces_its_segment(root: Path) -> None:
    w = RunWriter(root, "r")
    seq = w.next_seq("scalars")
    a = w.write("scalars", {"step": [1, 2], "name": ["x", "x"], "value": [1.0, 2.0]}, seq=seq)
    b = w.write("scalars", {"step": [1, 2], "name": ["x", "x"], "value": [1.0, 2.0]}, seq=seq)
    c = w.write("scalars", {"step": [3], "name": ["x"], "value": [3.0]})
    assert a == b != c
    assert Store(root).scalars("r").num_rows == 3


def test_heartbeat_failure_in_write_still_returns_the_path(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = RunWriter(root, "r", heartbeat_interval_s=0.0)
    real = atomic_mod.write_json_atomic

    def no_status(path, obj, **kwargs):
        if path.name.startswith("rank="):
            raise OSError(13, "Permission denied")
        real(path, obj, **kwargs)

    monkeypatch.setattr(writer_mod, "write_json_atomic", no_status)
    path = w.write("scalars", {"step": [1], "name": ["x"], "value": [1.0]})
    assert path is not None and path.exists()
    assert isinstance(w.heartbeat_error, StoreUnwritable) and "heartbeat" in str(w.heartbeat_error)


def test_failure_messages_say_what_failed(root: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """Issue 11 said "publishing scalars failed (… cannot write heartbeat)": the segment was published."""
    writer = RunWriter(root, "r", heartbeat_interval_s=0.0)  # every write owes a heartbeat
    rec = Recorder(writer, flush_secs=3600, handle_sigterm=False)

    def broken_heartbeat(*args, **kwargs):
        raise StoreUnwritable("cannot write heartbeat for run 'r' (Permission denied)")

    monkeypatch.setattr(writer, "heartbeat", broken_heartbeat)
    rec.scalars(0, {"x": 1.0})
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        rec.close()
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "heartbeat" in text and "publishing" not in text and "disk space" not in text
    assert Store(root).scalars("r").num_rows == 1


def test_first_rows_are_published_without_waiting_for_the_interval(root: Path) -> None:
    rec = _recorder(root)  # flush_secs = 1 h
    rec.scalars(0, {"x": 1.0})
    seg_dir = table_dir(root, "r", "scalars", 0)
    deadline = time.monotonic() + 60
    while not list(seg_dir.glob("seg-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(seg_dir.glob("seg-*.parquet")), "the first rows of a session are published at once"
    rec.scalars(1, {"x": 2.0})
    time.sleep(0.2)
    assert len(list(seg_dir.glob("seg-*.parquet"))) == 1, "later rows wait for the interval"
    rec.close()


def test_a_long_outage_costs_each_round_one_write_per_table(
    root: Path, monkeypatch: pytest.MonkeyPatch, full_disk: dict
) -> None:
    """A full disk for 60 rounds: each round tries one write per table (it tried every batch every earlier round had
    kept, so a long outage cost ever more writes and counted an error per batch), and every row lands once after."""
    rec = _recorder(root)
    state = full_disk
    tries: list[int] = []  # writes tried per publishing round (the recorder's own rounds too)
    publish = rec._publish

    def counted() -> int:
        with rec._io_lock:
            before = state["tries"]
            out = publish()
            tries.append(state["tries"] - before)
            return out

    monkeypatch.setattr(rec, "_publish", counted)
    for step in range(60):
        rec.scalars(step, {"x": float(step)})
        rec.event(step, "tick", "{}")
        rec.flush()
    assert len(tries) >= 60 and max(tries) <= 2, tries  # scalars, events: a write each, however long the outage
    assert rec.errors == state["tries"]  # one error per failed write, not one per batch kept
    state["full"] = False
    rec.close()
    counts = _counts(root)
    assert [s for (s, _) in sorted(counts)] == list(range(60)) and max(counts.values()) == 1
    assert [e["step"] for e in Store(root).events("r")] == list(range(60))


def test_an_outage_keeps_the_newest_token_rows_under_the_cap(
    root: Path, monkeypatch: pytest.MonkeyPatch, full_disk: dict
) -> None:
    rec = _recorder(root, max_token_rows=50)
    state = full_disk
    for step in range(20):
        rec.tokens([{"step": step, "seq": 0, "pos": p, "entropy": 1.0} for p in range(10)])
        rec.flush()
    state["full"] = False
    rec.close()
    assert rec.dropped_tokens == 150
    steps = Store(root).sql("SELECT DISTINCT step FROM tokens ORDER BY step").column("step").to_pylist()
    assert steps == list(range(15, 20))  # the newest rows, not whatever batch happened to be oldest
