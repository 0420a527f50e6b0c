"""An unclosed ``Watch`` or ``Recorder`` that the cyclic garbage collector finds (a trainer object referencing itself
holds it): its queued steps are still written, the collection never waits for its close, and the process' exit
still waits for that close. CPython clears an unreachable object's weak references *before* its ``__del__``."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.recorder import Recorder
from entropy_watch.store import RunWriter, Store


class _Trainer:  # holds itself: a reference cycle, as bound-method hooks make
    pass


def _join_closers(timeout: float = 20.0) -> None:
    for th in threading.enumerate():
        if th.name == "entropy_watch-close" and th.is_alive():
            th.join(timeout)


def test_queued_steps_of_a_watch_collected_in_a_cycle_are_written(tmp_path: Path) -> None:
    w = Watch("r", store=tmp_path, flush_secs=0.05)
    assert w._stats is not None  # the background statistics worker (the default)
    gate = threading.Event()
    w._stats.submit(lambda: gate.wait(10))  # the worker is busy with a job that does not hold the Watch
    for step in (1, 2, 3):
        w.log_tokens(step, logits=torch.randn(2, 8, 64))  # queued behind it
    t = _Trainer()
    t.watch, t.me = w, t
    del w, t
    gc.collect()  # before: the cycle was garbage, its weakrefs cleared, and the queued jobs found no Watch
    gate.set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Store(tmp_path).run_info("r").state == "running":
        gc.collect()  # the worker, idle, dropped its last job: the cycle is garbage now, and closed
        time.sleep(0.05)
    _join_closers()
    assert Store(tmp_path).run_info("r").state == "finished"
    assert sorted(Store(tmp_path).series("r", M.ENTROPY_MEAN)[0].tolist()) == [1, 2, 3]


def _recorder_in_cycle(root: Path, wait: float | threading.Event, marker: Path) -> None:
    """A recorder in a reference cycle whose close drains for ``wait`` seconds, or until ``wait`` is set."""
    rec = Recorder(RunWriter(root, "r"), flush_secs=0.05)
    rec.scalars(1, {"loss": 1.0})

    def slow() -> None:  # a busy statistics worker's drain, the live analysis' last pass
        if isinstance(wait, threading.Event):
            wait.wait(60)
        else:
            time.sleep(wait)
        marker.write_text("drained")

    rec.before_close = slow
    t = _Trainer()
    t.rec, t.me = rec, t


def test_collecting_an_unclosed_recorder_does_not_wait_for_its_close(tmp_path: Path) -> None:
    # A condition, not a duration: the close cannot finish before the test lets it, so gc.collect() returning while
    # the marker is unwritten is the proof it did not wait (before the fix it blocked for the whole drain).
    release = threading.Event()
    _recorder_in_cycle(tmp_path, release, tmp_path / "marker")
    gc.collect()
    drained_meanwhile = (tmp_path / "marker").exists()
    release.set()
    _join_closers()
    assert not drained_meanwhile, "gc.collect() waited for the recorder's close"
    assert (tmp_path / "marker").read_text() == "drained"
    assert Store(tmp_path).run_info("r").state == "finished"
    assert Store(tmp_path).series("r", "loss")[0].tolist() == [1]


def test_exit_waits_for_the_close_of_a_collected_recorder(tmp_path: Path) -> None:
    code = (
        "import gc, sys; from pathlib import Path; sys.path.insert(0, sys.argv[2]);"
        "from test_s48_review_gc import _recorder_in_cycle as f;"
        "f(Path(sys.argv[1]), 0.5, Path(sys.argv[1]) / 'marker'); gc.collect()"  # and exit at once
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path), str(Path(__file__).parent)], check=True, timeout=60)
    assert (tmp_path / "marker").read_text() == "drained"
    assert Store(tmp_path).run_info("r").state == "finished"
    assert Store(tmp_path).series("r", "loss")[0].tolist() == [1]
