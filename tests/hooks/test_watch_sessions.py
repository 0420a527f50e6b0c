"""Watch across sessions of one run: calls after ``close()``, a second live writer on the run, the earlier session's
last step after a kill, and what a strict failure says."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.store import Store

LIVE = "already has a live writer"


def _messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


# ---- after close() -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("async_stats", [True, False])
def test_calls_after_close_record_nothing_warn_once_and_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, async_stats: bool
) -> None:
    logits = torch.randn(2, 3, 5)
    w = Watch("ac", store=tmp_path, async_stats=async_stats)
    for s in range(3):
        w.log_tokens(s, logits=logits)
        w.log(s, a=float(s))
    w.close()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        for s in range(3, 6):
            assert w.log_tokens(s, logits=logits) == {}
            w.log(s, a=float(s))
            w.event(s, "lr_change")
        w.flush()  # publishes nothing: nothing was buffered
        w.close()
    assert w.closed and w.errors == 9
    warned = _messages(caplog, "is closed")
    assert warned == [
        "entropy_watch: Watch 'ac' is closed; step 3 not recorded (log_tokens after close()); training continues, "
        "later calls after close() are counted (Watch.errors); to record more, open a new Watch on the run"
    ]
    store = Store(tmp_path)
    assert store.series("ac", "a")[0].tolist() == [0, 1, 2]
    assert store.series("ac", M.ENTROPY_MEAN)[0].tolist() == [0, 1, 2]
    assert len(store.table("ac", "events")) == 0
    assert (store.run_info("ac").state, store.run_info("ac").last_step) == ("finished", 2)


def test_the_with_block_records_everything_logged_inside_it(tmp_path: Path) -> None:
    """Pending statistics drained by close() are recorded: only calls made after it are refused."""
    with Watch("inside", store=tmp_path, max_pending_stats=2) as w:
        for s in range(6):
            w.log_tokens(s, logits=torch.randn(2, 3, 5))
    assert w.errors == 0
    assert Store(tmp_path).series("inside", M.ENTROPY_MEAN)[0].tolist() == list(range(6))


def test_a_call_after_close_raises_under_strict(tmp_path: Path) -> None:
    w = Watch("ac-strict", store=tmp_path, strict=True)
    w.log(0, a=1.0)
    w.close()
    with pytest.raises(RuntimeError, match=r"Watch 'ac-strict' is closed; step 1 not recorded \(log after close\(\)\)"):
        w.log(1, a=2.0)
    with pytest.raises(RuntimeError, match="event after close"):
        w.event(1, "resume")
    with pytest.raises(RuntimeError, match="log_tokens after close"):
        w.log_tokens(1, logits=torch.randn(2, 3, 5))
    assert Store(tmp_path).series("ac-strict", "a")[0].tolist() == [0]


def test_a_strict_failure_does_not_say_training_continues(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="entropy_watch"), Watch("st", store=tmp_path, strict=True) as w:
        with pytest.raises(ValueError):
            w.log(0, a="x")
        assert w.errors == 1
    said = _messages(caplog, "log failed")
    assert len(said) == 1 and "strict=True, so it is raised" in said[0], said
    assert not _messages(caplog, "training continues")


# ---- a second live writer ------------------------------------------------------------------------------------------
def test_a_second_live_session_on_the_run_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = Watch("same", store=tmp_path)
    first.log(0, a=0.0)
    first.flush()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        second = Watch("same", store=tmp_path)
        for s in range(3):
            second.log(s, a=1.0)
        second.close()
    first.close()
    (warned,) = _messages(caplog, LIVE)
    assert f"run 'same' already has a live writer on rank 0 (pid {os.getpid()} on " in warned
    assert "another run name" in warned and "reduce=True" in warned and "reduce=False" in warned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):  # both closed: a continuation, not a clash
        Watch("same", store=tmp_path).close()
    assert not _messages(caplog, LIVE)


def test_ranks_of_one_job_are_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """reduce=False under torch.distributed: each rank writes its own rank= folder, live at the same time."""
    rank = {"now": 0}
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: rank["now"])
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        watches = []
        for r in (0, 1):
            rank["now"] = r
            watches.append(Watch("ddp", store=tmp_path, reduce=False))
            watches[-1].log(0, a=float(r))
            watches[-1].flush()
        for w in watches:
            w.close()
    assert not _messages(caplog, LIVE)
    assert Store(tmp_path).run_info("ddp").ranks == [0, 1]


GLOO_RANK = textwrap.dedent(
    """
    import logging, os, sys, time
    import torch.distributed as dist
    from entropy_watch.hooks import Watch

    logging.basicConfig(level=logging.WARNING)
    rank, out = int(os.environ["RANK"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=2)
    if rank == 1:
        time.sleep(0.5)  # rank 0's session is live (heartbeat written) when rank 1 starts
    w = Watch("ddp", store=os.path.join(out, "store"), reduce=False, flush_secs=0.05)
    for step in range(3):
        w.log(step, **{"reward/mean": float(rank)})
    dist.barrier()
    w.close()
    dist.destroy_process_group()
    """
)


@pytest.mark.dist
def test_two_gloo_ranks_writing_their_own_folders_are_not_warned_about(tmp_path: Path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(GLOO_RANK)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)], env={**env, "RANK": str(r)}, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for r in (0, 1)
    ]
    try:
        errs = [p.communicate(timeout=180)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any(LIVE in e for e in errs), errs
    assert Store(tmp_path / "store").run_info("ddp").ranks == [0, 1]


# ---- the earlier session's last step -------------------------------------------------------------------------------
DIES_AFTER_FLUSH = textwrap.dedent(
    """
    import os, sys
    from entropy_watch.hooks import Watch

    w = Watch("r", store=sys.argv[1])
    for s in range(5):
        w.log(s, x=float(s))
    w.flush()
    os._exit(0)  # like a kill -9 right after the flush: no heartbeat after the publish
    """
)


def test_earlier_last_step_after_a_session_that_died_after_its_flush(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat of the dead session is still running and fresh (not stalled yet), but its process is gone: the
    new session reads the step it published (as ``ls`` does), and is not warned about a live writer."""
    subprocess.run([sys.executable, "-c", DIES_AFTER_FLUSH, str(tmp_path)], check=True, timeout=120)
    assert Store(tmp_path).run_info("r").last_step == 4
    with caplog.at_level(logging.WARNING, logger="entropy_watch"), Watch("r", store=tmp_path) as w:
        assert w.earlier_last_step == 4
    assert not _messages(caplog, LIVE)


def test_a_recorded_run_states_its_rewards_maximum(tmp_path) -> None:
    """The verdict's note said "state it with --reward-max ... or reward_max in run.json", and --reward-max is
    refused on a stored run: ``Watch(reward_max=...)`` is the route for a run being recorded (attach passes it on)."""
    from dataclasses import replace

    import pytest

    from entropy_watch import metrics as M
    from entropy_watch.analysis import RunSeries, analyze
    from entropy_watch.hooks import Watch
    from entropy_watch.store import Store
    from entropy_watch.synthetic import generate

    solved = generate("solved", seed=1, n_steps=100).to_series()
    doubled = replace(solved, scalars={**solved.scalars, M.REWARD_MEAN: (solved.steps, 2 * solved.reward())})
    for name, reward_max in (("unstated", None), ("stated", 2)):
        with Watch(name, store=tmp_path, reward_max=reward_max) as w:
            for s, h, r in zip(doubled.steps, doubled.entropy, doubled.reward(), strict=True):
                w.log(int(s), **{M.ENTROPY_MEAN: float(h), M.REWARD_MEAN: float(r)})
    kinds = {}
    for name in ("unstated", "stated"):
        res = analyze(RunSeries.from_reader(Store(tmp_path), name))
        kinds[name] = ({a.kind for a in res.alerts if a.kind in ("collapse", "saturation")}, res.notes)
    assert "collapse" in kinds["unstated"][0] and any("reward_max= on the Watch" in n for n in kinds["unstated"][1])
    assert kinds["stated"][0] == {"saturation"}
    with pytest.raises(ValueError, match="reward_max must be a positive finite number"):
        Watch("bad", store=tmp_path, reward_max=float("nan"))
