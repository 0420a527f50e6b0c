"""Many runs in one process (a sweep's trials, a notebook cell run again): what each run leaves behind once it ends
(threads, exit hooks, SIGTERM handlers, the Watch itself), a run opened again while its earlier Watch is still open,
and the state a ``with`` block leaves on ``sys.exit``."""

from __future__ import annotations

import atexit
import gc
import logging
import signal
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.store import Store
from entropy_watch.store.meta import rank_status


def _collapse(n: int = 90) -> np.ndarray:
    """Entropy at 1 nat for 30 steps, then an exponential fall to the floor (the detector alerts on it)."""
    t = np.arange(n)
    return np.where(t < 30, 1.0, np.maximum(np.exp(-(t - 30) / 8.0), 0.01))


def _log(w: Watch, h: np.ndarray) -> None:
    for s, x in enumerate(h):
        w.log(s, **{M.ENTROPY_MEAN: float(x), M.REWARD_MEAN: 0.5})


def _sigterm_depth() -> int:
    handler, depth = signal.getsignal(signal.SIGTERM), 0
    while hasattr(handler, "ew_prev"):
        handler, depth = handler.ew_prev, depth + 1
    return depth


def _ended(threads: list[threading.Thread], timeout_s: float = 20.0) -> list[str]:
    """Names of ``threads`` still alive after waiting at most ``timeout_s`` in all."""
    for th in threads:
        th.join(timeout_s)
    return [th.name for th in threads if th.is_alive()]


def _closing_threads() -> None:
    for th in threading.enumerate():
        if th.name == "entropy_watch-close":
            th.join(30)


# ---- what a closed run leaves behind -------------------------------------------------------------------------------
def test_a_closed_run_whose_callback_fired_leaves_no_callback_thread(tmp_path: Path) -> None:
    """The on_alert worker ended with its run: it waited on its queue forever, one thread (and the whole Watch it
    held) per trial of a sweep whose callback fired."""
    seen: list = []
    workers = []
    for i in range(3):
        with Watch(f"t{i}", store=tmp_path, on_alert={"warning": seen.append}) as w:
            _log(w, _collapse())
            w.live.flush()
            workers.append(w.live.actions._worker)
    assert len(seen) >= 3 and all(th is not None for th in workers)
    assert _ended(workers, 10.0) == []


def test_runs_register_one_exit_hook_in_all(tmp_path: Path) -> None:
    """One atexit entry per process, not one more per run (a 200-trial sweep left 200)."""
    Watch("first", store=tmp_path).close()
    before = atexit._ncallbacks()
    for i in range(5):
        with Watch(f"r{i}", store=tmp_path) as w:
            w.log(0, x=1.0)
    assert atexit._ncallbacks() == before


# ---- a Watch nobody closed -----------------------------------------------------------------------------------------
def test_an_unreferenced_watch_is_closed_and_its_threads_end(tmp_path: Path) -> None:
    """A trial that drops its Watch unclosed (an exception outside a with-block, a trainer dropped after attach): its
    rows are published, the run reads finished, and neither the Watch nor a thread of it outlives it. Before, four or
    five threads and the Watch stayed per run, beating "running" until the process ended."""
    depth = _sigterm_depth()
    refs, threads = [], []
    for i in range(4):
        w = Watch(f"a{i}", store=tmp_path, on_alert={"critical": "stop", "warning": lambda a: None}, flush_secs=60)
        _log(w, _collapse(60))
        w.log_tokens(60, logits=torch.randn(2, 4, 11))
        w.live.flush()
        refs.append(weakref.ref(w))
        threads += [w._recorder._thread, w.live.analyzer._thread, w._stats._thread, w.live.actions._worker]
        del w
        gc.collect()
    _closing_threads()
    gc.collect()
    assert [r() for r in refs] == [None] * 4
    assert _ended(threads) == []
    store = Store(tmp_path)
    for i in range(4):
        assert rank_status(tmp_path, f"a{i}", 0)["state"] == "finished"
        assert store.series(f"a{i}", M.ENTROPY_MEAN)[0].tolist() == list(range(61))  # the last step's too
    assert _sigterm_depth() <= depth + 2  # the handlers of closed runs are not kept in the chain


# ---- the same run opened again in the process ----------------------------------------------------------------------
def test_a_run_opened_again_closes_the_earlier_watch_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A notebook cell run twice: the Watch of the first run is closed (its rows published) and says so; it no longer
    beats the earlier session's state over this one's, so the run reads as the second Watch left it."""
    first = Watch("nb", store=tmp_path, flush_secs=60)
    for s in range(6):
        first.log(s, x=1.0)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        second = Watch("nb", store=tmp_path, flush_secs=60)
    (said,) = [r.getMessage() for r in caplog.records if "already has a live writer" in r.getMessage()]
    assert "run 'nb' already has a live writer on rank 0" in said and "still open in this process" in said
    assert "It is closed now, its rows published" in said
    assert first.closed and _ended([first._recorder._thread]) == []
    assert second.earlier_last_step == 5  # the first one's rows were published before this one started
    for s in range(3):
        second.log(s, x=2.0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        first.log(6, x=1.0)  # the first cell's loop, still going: refused, and told why
    assert any("is closed (a newer Watch opened its run in this process)" in r.getMessage() for r in caplog.records)
    second.close()
    status = rank_status(tmp_path, "nb", 0)
    assert (status["state"], status["session"]) == ("finished", second._writer.session)
    steps, values = Store(tmp_path).series("nb", "x")
    assert steps.tolist() == list(range(6)) and values.tolist() == [2.0] * 3 + [1.0] * 3


def test_two_runs_side_by_side_leave_each_other_open(tmp_path: Path) -> None:
    """Two models trained at once: two run names, or one name in two stores; neither closes the other."""
    pairs = [(tmp_path / "s", "model-a"), (tmp_path / "s", "model-b"), (tmp_path / "t", "model-a")]
    watches = [Watch(run, store=root) for root, run in pairs]
    for s in range(3):
        for i, w in enumerate(watches):
            w.log(s, x=float(i))
    assert not any(w.closed for w in watches)
    for w in reversed(watches):
        w.close()
    for i, (root, run) in enumerate(pairs):
        assert Store(root).series(run, "x")[1].tolist() == [float(i)] * 3


# ---- how a with-block ends -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "state"),
    [
        (SystemExit(0), "finished"),
        (SystemExit(None), "finished"),
        (SystemExit(3), "failed"),
        (SystemExit("bad config"), "failed"),
        (KeyboardInterrupt(), "interrupted"),
        (RuntimeError("boom"), "failed"),
    ],
)
def test_the_state_a_with_block_leaves(tmp_path: Path, exc: BaseException, state: str) -> None:
    """``sys.exit()`` / ``sys.exit(0)`` inside the block is a clean end (it read failed); the exception is re-raised
    as it was, and the last step is published."""
    with pytest.raises(type(exc)) as raised, Watch("w", store=tmp_path, flush_secs=60) as w:
        for s in range(4):
            w.log(s, x=float(s))
        raise exc
    assert raised.value is exc
    assert rank_status(tmp_path, "w", 0)["state"] == state
    assert Store(tmp_path).series("w", "x")[0].tolist() == [0, 1, 2, 3]
