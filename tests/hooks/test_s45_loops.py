"""What hand-written PyTorch loops and HF ``Trainer`` scripts do around ``Watch`` that the other hook tests do not:
fork worker processes (reward pools), hold two watches closed out of order, log per-sequence advantages as
``(B, 1)`` or the micro-batches of one step one by one, call ``trainer.train()`` twice in one process."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

# Forks a child from a process holding a Watch whose last rows are still buffered (flush_secs=60), lets the child end
# the way ``mode`` says, then reports what the store reads while the parent still trains, and after it closes.
_FORK_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time, weakref
    import torch
    from entropy_watch import recorder as R
    from entropy_watch.hooks import Watch
    from entropy_watch.store import Store

    root, mode = sys.argv[1], sys.argv[2]
    w = Watch("fork", store=root, flush_secs=60)
    for step in range(3):
        w.log_tokens(step, logits=torch.randn(2, 3, 7))
        w.log(step, loss=float(step))
    w.flush()
    w.log(3, loss=3.0)  # buffered in the parent, so the child's memory holds a copy
    rec = w._recorder
    held, release = threading.Event(), threading.Event()
    if mode == "lock_held":  # the parent's publisher is mid-publish at the fork (it holds the I/O lock)
        def hold():
            with rec._io_lock:
                held.set()
                release.wait()
        threading.Thread(target=hold, daemon=True).start()
        held.wait()
    if mode == "child_logs":  # the statistics worker is mid-job at the fork (it holds its queue's lock)
        def hold_stats():
            with w._stats._cond:
                held.set()
                release.wait()
        threading.Thread(target=hold_stats, daemon=True).start()
        held.wait()
    pid = os.fork()
    if pid == 0:  # the child: a multiprocessing worker ending by SIGTERM (Pool.terminate), or at exit
        try:
            if mode == "exit":
                R._close_at_exit(weakref.ref(rec))
            elif mode == "child_logs":  # a worker that logs through the inherited Watch: dropped, never waits
                w.log_tokens(9, logits=torch.randn(2, 3, 7))
                w.log(9, loss=9.0)
                w.close()
            else:
                signal.raise_signal(signal.SIGTERM)
        finally:
            os._exit(0)
    release.set()
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        status = "hung"
    info = Store(root).run_info("fork")
    during = {"state": info.state, "last_step": info.last_step}
    w.log(4, loss=4.0)
    w.close()
    rows = Store(root).scalars("fork", ["loss"]).to_pylist()
    child = "hung" if status == "hung" else (os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    print(json.dumps({"child": child, "during": during, "final": Store(root).run_info("fork").state,
                      "loss_steps": [r["step"] for r in rows]}))
    """
)


def _fork_run(tmp_path: Path, mode: str) -> dict:
    script = tmp_path / "fork_loop.py"
    script.write_text(_FORK_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store"), mode],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_forked_child_sigterm_leaves_the_parents_run_alone(tmp_path: Path) -> None:
    """A fork-started worker (``with multiprocessing.Pool() as p``: its exit sends the workers SIGTERM) inherits the
    recorder's SIGTERM handler: it used to publish the parent's buffered rows and mark the run ``terminated`` while
    the parent trained on. The child now dies of SIGTERM as it would without entropy_watch, writing nothing."""
    got = _fork_run(tmp_path, "sigterm")
    assert got["child"] == 15  # the signal is passed on: the worker ends as it would without a recorder
    assert got["during"] == {"state": "running", "last_step": 2}  # step 3 is the parent's to publish
    assert got["final"] == "finished"
    assert got["loss_steps"] == [0, 1, 2, 3, 4]


def test_forked_child_exit_does_not_close_the_parents_run(tmp_path: Path) -> None:
    """A forked child that exits through ``sys.exit`` runs the inherited atexit hook: it used to mark the parent's
    run ``finished`` mid-training and publish a copy of its buffer."""
    got = _fork_run(tmp_path, "exit")
    assert got["during"] == {"state": "running", "last_step": 2}
    assert got["loss_steps"] == [0, 1, 2, 3, 4]


def test_forked_child_sigterm_does_not_hang_on_a_lock_held_at_the_fork(tmp_path: Path) -> None:
    """A fork taken while the publisher thread holds the recorder's lock: the child's SIGTERM handler waited forever
    on it, so ``Pool.__exit__`` (terminate, then join) hung the training. The child must end."""
    got = _fork_run(tmp_path, "lock_held")
    assert got["child"] == 15
    assert got["during"]["state"] == "running"
    assert got["loss_steps"] == [0, 1, 2, 3, 4]


def test_forked_child_logging_through_the_watch_neither_hangs_nor_writes(tmp_path: Path) -> None:
    """A child that logs through the Watch it inherited, forked while the statistics worker held its queue's lock:
    ``log_tokens`` waited forever on that lock. Now the child's rows are dropped (the run is the parent's) and it
    ends; its ``close()`` does not close the parent's run."""
    got = _fork_run(tmp_path, "child_logs")
    assert got["child"] == 0
    assert got["during"] == {"state": "running", "last_step": 2}
    assert got["loss_steps"] == [0, 1, 2, 3, 4]


def test_hf_train_called_again_from_step_0_in_one_process_is_warned_about(tmp_path: Path, caplog) -> None:
    """``trainer.train()`` run a second time in a notebook (same ``Trainer``, same callback): its steps from 1 on
    replaced the first training's and the later ones stayed, with no warning (only a new process was warned about).
    Stand-in ``Trainer`` state, as in tests/hooks/test_trainer_resume.py."""
    import logging
    from types import SimpleNamespace

    from entropy_watch.hooks.hf import EntropyWatchCallback

    cb = EntropyWatchCallback(run="nb", store=tmp_path / "store", strict=True)
    args, control = SimpleNamespace(output_dir=str(tmp_path / "out"), run_name=None, world_size=1), SimpleNamespace()

    def train(max_steps: int) -> list[str]:
        state = SimpleNamespace(global_step=0, max_steps=max_steps, is_world_process_zero=True)
        with caplog.at_level(logging.WARNING, logger="entropy_watch"):
            cb.on_train_begin(args, state, control)
            for step in range(1, max_steps + 1):
                state.global_step = step
                cb.on_log(args, state, control, logs={"loss": float(max_steps)})
            cb.on_train_end(args, state, control)
        return [r.getMessage() for r in caplog.records if "already holds an earlier training" in r.getMessage()]

    assert train(4) == []
    (warned,) = train(2)
    assert "run 'nb' already holds an earlier training (its last session reached step 4)" in warned
    assert "resume_from_checkpoint" in warned
    cb.watch.close()


_TWO_WATCHES_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from entropy_watch.hooks import Watch

    root = sys.argv[1]
    seen = []
    signal.signal(signal.SIGTERM, lambda s, f: (seen.append(s), print(json.dumps(seen), flush=True), os._exit(3)))
    first = Watch("first", store=root, flush_secs=60)
    second = Watch("second", store=root, flush_secs=60)
    first.log(0, x=0.0)
    first.close()  # closed before the watch opened after it: not in reverse order
    for step in range(4):
        second.log(step, y=float(step))  # buffered (flush_secs=60): only the SIGTERM handler can publish them
    signal.raise_signal(signal.SIGTERM)
    """
)


def test_sigterm_still_flushes_a_watch_after_an_earlier_one_closed(tmp_path: Path) -> None:
    """Two Watches in one process, the first closed while the second records: closing the first put back the handler
    it had replaced, dropping the second's, so a SIGTERM ended the process with the second's buffered steps lost and
    its run left ``running``. Now the second is flushed and marked ``terminated``, and the user's own handler, first
    in the chain, still runs once."""
    from entropy_watch.store import Store

    script = tmp_path / "two_watches.py"
    script.write_text(_TWO_WATCHES_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 3, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [15]  # the user's handler, once
    store = Store(tmp_path / "store")
    second = store.run_info("second")
    assert (second.state, second.last_step) == ("terminated", 3)
    assert store.run_info("first").state == "finished"


def test_per_sequence_advantages_shaped_b_by_1_are_read_as_per_sequence(tmp_path: Path) -> None:
    """``advantages`` of shape ``(B, 1)``, the broadcastable form a hand-written GRPO loss keeps (a ``(B, 1)`` reward
    normalised, then ``adv * ratio`` against ``(B, T)``): the whole step was refused (entropy included) as a shape
    error. It now reads as ``(B,)``; numbers against a float64 reference."""
    import torch

    from entropy_watch import metrics as M
    from entropy_watch.hooks import Watch

    g = torch.Generator().manual_seed(3)
    logits, adv = torch.randn(4, 6, 11, generator=g), torch.tensor([[1.5], [-1.0], [0.25], [-0.5]])
    mask = torch.ones(4, 6)
    mask[1, 2:] = 0
    with Watch("adv-col", store=tmp_path / "store", async_stats=False, strict=True) as w:
        got = w.log_tokens(0, logits=logits, mask=mask, advantages=adv, group_ids=torch.tensor([0, 0, 1, 1]))
        flat = w.log_tokens(1, logits=logits, mask=mask, advantages=adv[:, 0], group_ids=torch.tensor([0, 0, 1, 1]))
    lp = torch.log_softmax(logits.double(), -1)
    valid = mask != 0
    assert math.isclose(got[M.ENTROPY_MEAN], float(-(lp.exp() * lp).sum(-1)[valid].mean()), abs_tol=1e-6)
    assert math.isclose(got[M.ADV_MEAN], float(adv.double().expand(4, 6)[valid].mean()), abs_tol=1e-12)
    assert got == flat


def test_micro_batches_logged_under_one_step_are_warned_about(tmp_path: Path, caplog) -> None:
    """A gradient-accumulation loop calling ``log_tokens(step, ...)`` once per micro-batch: the run silently kept the
    last micro-batch's ``entropy/mean`` and ``tokens/count`` while the step's histogram added up all of them. One
    warning now says so and what to do; steps that differ never warn."""
    import logging

    import torch

    from entropy_watch.hooks import Watch

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if "twice in a row" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        with Watch("micro", store=tmp_path / "store", async_stats=False) as w:
            for step in range(3):
                w.log_tokens(step, logits=torch.zeros(2, 3, 5))
            assert warned() == []
            for _ in range(3):  # three micro-batches of step 3
                w.log_tokens(3, logits=torch.zeros(2, 3, 5))
            assert w.errors == 0
    (message,) = warned()
    assert "step 3" in message and "one call" in message


_DISPOSITION_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from entropy_watch.hooks import Watch

    def child_disposition():
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            h = signal.getsignal(signal.SIGTERM)
            os.write(w, b"default" if h is signal.SIG_DFL else (b"user" if h is user else b"other"))
            os._exit(0)
        os.waitpid(pid, 0)
        return os.read(r, 16).decode()

    def user(signum, frame):
        pass

    watch = Watch("disp", store=sys.argv[1])
    seen = [child_disposition()]  # a Pool worker forked now
    signal.signal(signal.SIGTERM, user)  # the user's own handler, installed after the Watch
    seen.append(child_disposition())
    watch.close()
    print(json.dumps(seen))
    """
)


def test_forked_child_gets_the_sigterm_disposition_it_had_before_the_watch(tmp_path: Path) -> None:
    """A ``Pool`` worker forked after ``Watch`` inherited its Python-level SIGTERM handler; such a handler runs only
    between bytecodes, so a worker blocked on its task queue when ``Pool.__exit__`` terminated it could miss the
    signal and never exit: the training hung in ``Pool.__exit__`` (3 of 14 runs of a 3-step loop with
    ``with Pool(2)`` per step, before). The child now starts with the disposition the Watch replaced (here the
    default, which the kernel carries out); a handler the user installed above the Watch's is left to the child."""
    script = tmp_path / "disposition.py"
    script.write_text(_DISPOSITION_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["default", "user"]


def test_recorders_closed_in_the_order_they_opened_leave_the_default_sigterm(tmp_path: Path) -> None:
    """Watch A, then Watch B, A closed first, then B: the process ends with the SIGTERM action it had before either
    (it kept A's closed handler, which runs only between bytecodes, and the CLI will not install over it)."""
    from entropy_watch.recorder import Recorder
    from entropy_watch.store import RunWriter

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        a = Recorder(RunWriter(tmp_path, "a"))
        b = Recorder(RunWriter(tmp_path, "b"))
        a.close()
        b.close()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)
