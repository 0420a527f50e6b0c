"""The follow-and-analyse loop (``entropy_watch.monitor``): what ``entropy-watch watch`` and the app both run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert, RunSeries, analyze
from entropy_watch.monitor import Monitor
from entropy_watch.store import RunWriter, Store, TailReader
from entropy_watch.synthetic import generate, write_to_store


class Calls:
    def __init__(self) -> None:
        self.alerts: list[tuple[str, list[Alert], object]] = []
        self.waiting: list[tuple[str, str]] = []
        self.errors: list[tuple[str, str]] = []

    def monitor(self, reader: object, **kw: object) -> Monitor:
        return Monitor(
            reader,
            on_new_alerts=self.on_new_alerts,
            on_waiting=self.on_waiting,  # type: ignore[arg-type]
            on_error=self.on_error,
            **kw,
        )  # type: ignore[arg-type]

    def on_new_alerts(self, run: str, alerts: list[Alert], verdict: object) -> None:
        self.alerts.append((run, alerts, verdict))

    def on_waiting(self, run: str, reason: str) -> None:
        self.waiting.append((run, reason))

    def on_error(self, run: str, message: str) -> None:
        self.errors.append((run, message))


def _write_prefix(w: RunWriter, steps: np.ndarray, h: np.ndarray) -> None:
    w.write("scalars", {"step": steps.tolist(), "name": [M.ENTROPY_MEAN] * steps.size, "value": h.tolist()})


@pytest.mark.parametrize("in_process", [False, True], ids=["thread", "worker-process"])
def test_live_alerts_arrive_once_and_match_the_whole_run_analysis(tmp_path: Path, in_process: bool) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    sr = generate("fast_collapse", seed=1, n_steps=400)
    w = RunWriter(tmp_path, "live")
    calls = Calls()
    reader = TailReader(tmp_path)
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) if in_process else None
    mon = calls.monitor(reader, pool=pool)
    for lo in range(0, 400, 100):
        _write_prefix(w, sr.steps[lo : lo + 100], sr.entropy[lo : lo + 100])
        states = mon.poll()
        assert [s.run for s in states] == ["live"], "only a run whose data changed is analysed"
        assert mon.poll() == [], "nothing new, nothing analysed"
    got = [a for _, batch, _ in calls.alerts for a in batch]
    assert len({a.key for a in got}) == len(got), "each alert is reported once"
    post_hoc = analyze(sr.to_series("live")).alerts
    assert [a.key for a in got] == [a.key for a in post_hoc]
    assert any(a.kind == "collapse" for a in got)
    st = mon.state("live")
    assert st is not None and st.version == (400, 399) and st.result is not None and st.error is None
    assert not mon.pending("live", reader.versions()["live"])
    if pool is not None:
        pool.shutdown()


def test_a_run_without_entropy_waits_and_a_named_missing_run_is_reported(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "no-entropy")
    w.write("scalars", {"step": [0, 1], "name": ["reward/mean"] * 2, "value": [0.1, 0.2]})
    calls = Calls()
    mon = calls.monitor(TailReader(tmp_path, runs=["no-entropy", "later"]), runs=["no-entropy", "later"])
    mon.poll()
    mon.poll()
    assert sorted(r for r, _ in calls.waiting) == ["later", "no-entropy"], "each said once"
    assert "no entropy" in dict(calls.waiting)["no-entropy"]
    assert calls.alerts == [] and calls.errors == []
    write_to_store(tmp_path, "later", "fast_collapse", seed=1, n_steps=300)
    mon.poll()
    assert calls.alerts and calls.alerts[0][0] == "later"


def test_a_failing_callback_is_reported_and_the_loop_goes_on(tmp_path: Path) -> None:
    write_to_store(tmp_path, "a", "fast_collapse", seed=1, n_steps=300)
    errors: list[str] = []

    def boom(run: str, alerts: list[Alert], verdict: object) -> None:
        raise RuntimeError("webhook down")

    mon = Monitor(Store(tmp_path), on_new_alerts=boom, on_error=lambda r, m: errors.append(m))
    assert mon.follow(interval_s=0.01, iterations=2) == 2
    assert len(errors) == 1 and "webhook down" in errors[0]
    assert mon.state("a") is not None and mon.state("a").result is not None  # type: ignore[union-attr]


def test_background_loop_and_refresh(tmp_path: Path) -> None:
    write_to_store(tmp_path, "a", "healthy", seed=2, n_steps=200)
    reader = TailReader(tmp_path)
    reader.poll()
    mon = Monitor(reader)
    st = mon.refresh("a", wait_s=30.0)
    assert st is not None and st.version == (reader.versions()["a"])
    mon.start(interval_s=0.05)
    try:
        w = RunWriter(tmp_path, "a")
        _write_prefix(w, np.arange(200, 210), np.full(10, 0.5))
        deadline = time.monotonic() + 60
        while mon.state("a").version[1] != 209:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the background loop picks up new steps"
            time.sleep(0.05)
    finally:
        mon.stop()
    assert not mon.running


@pytest.mark.parametrize("once", [True, False])
def test_watch_command_is_the_monitor(tmp_path: Path, once: bool) -> None:
    import json

    import typer.testing

    from entropy_watch.cli import app

    write_to_store(tmp_path, "c", "fast_collapse", seed=1, n_steps=300)
    args = ["--store", str(tmp_path), "watch", "--json", "--min-severity", "info"]
    args += ["--once"] if once else ["--iterations", "2", "--interval", "0.01"]
    r = typer.testing.CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    want = analyze(RunSeries.from_reader(Store(tmp_path), "c")).alerts
    assert [(x["step"], x["detector"]) for x in lines] == [(a.step, a.detector) for a in want]


WORKER_PARENT = """
import os, sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from entropy_watch.monitor import exit_with_parent

if __name__ == "__main__":
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=exit_with_parent)
    print(pool.submit(os.getpid).result(), flush=True)
    sys.stdin.read()  # until the test kills this process
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie still answers kill(0): look at its state
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def test_analysis_worker_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    # The app's analysis worker (a ProcessPoolExecutor process) used to outlive a killed or stopped server.
    script = tmp_path / "parent.py"
    script.write_text(WORKER_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.kill()
        parent.wait(30)
        deadline = time.monotonic() + 60
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        parent.kill()
