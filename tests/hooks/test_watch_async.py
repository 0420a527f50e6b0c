"""Watch's background statistics worker: same numbers as the synchronous path, in order, drained on every exit."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import entropy_watch.hooks.stats as stats_mod
from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.hooks.async_stats import StatsWorker
from entropy_watch.store import Store
from entropy_watch.store.layout import status_path


def _step_inputs(step: int, B: int = 4, T: int = 6, V: int = 11) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    logits = torch.randn(B, T, V, generator=g) * 2
    mask = torch.ones(B, T)
    mask[0, 4:] = 0
    token_ids = torch.randint(0, V, (B, T), generator=g)
    logp = torch.log_softmax(logits, -1).gather(-1, token_ids[..., None]).squeeze(-1)
    old_logp = logp + 0.3 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    return {"logits": logits, "mask": mask, "token_ids": token_ids, "logp": logp, "old_logp": old_logp,
            "advantages": adv, "group_ids": torch.tensor([0, 0, 1, 1])}  # fmt: skip


def _stored(root: Path, run: str) -> dict[str, list]:
    store = Store(root)
    scalars = store.sql(
        "SELECT step, name, value FROM scalars WHERE run = ? AND name NOT LIKE 'hooks/%' ORDER BY step, name", [run]
    ).to_pylist()
    hist = store.sql("SELECT step, bin, count FROM hist WHERE run = ? ORDER BY step, bin", [run]).to_pylist()
    tokens = store.sql("SELECT count(*) AS n FROM tokens WHERE run = ?", [run]).to_pylist()[0]["n"]
    return {"scalars": scalars, "hist": hist, "tokens": [tokens]}


def _slow_step_stats(monkeypatch: pytest.MonkeyPatch, seconds: float, calls: list[int]) -> None:
    real = stats_mod.step_stats

    def slow(*args, **kwargs):
        time.sleep(seconds)
        calls.append(kwargs["step"])
        return real(*args, **kwargs)

    monkeypatch.setattr(stats_mod, "step_stats", slow)


def test_async_and_sync_store_identical_rows(tmp_path: Path) -> None:
    for run, use_async in (("sync", False), ("async", True)):
        with Watch(run, store=tmp_path, async_stats=use_async, token_every=1, vocab_size=11) as w:
            assert (w._stats is not None) == use_async
            for step in range(6):
                x = _step_inputs(step)
                if step % 2:  # both paths: entropy from logits and entropy passed in
                    out = w.log_tokens(step, **x)
                else:
                    ent = -(torch.softmax(x["logits"], -1) * torch.log_softmax(x["logits"], -1)).sum(-1)
                    out = w.log_tokens(step, entropy=ent, **{k: v for k, v in x.items() if k != "logits"})
                assert (out == {}) == use_async
    sync, asyn = _stored(tmp_path, "sync"), _stored(tmp_path, "async")
    assert len(sync["scalars"]) > 6 * 10 and sync["tokens"][0] > 0
    assert asyn == sync


def test_slow_worker_keeps_order_and_close_drains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    _slow_step_stats(monkeypatch, 0.03, calls)
    w = Watch("slow", store=tmp_path, flush_secs=3600, max_pending_stats=2)
    for step in range(10):
        w.log_tokens(step, **_step_inputs(step))
        assert w._stats.pending <= 2, "back-pressure bounds the queue"
    w.flush()  # drains, then publishes
    assert Store(tmp_path).series("slow", M.ENTROPY_MEAN)[0].tolist() == list(range(10))
    for step in range(10, 16):
        w.log_tokens(step, **_step_inputs(step))
    w.close()
    assert calls == list(range(16)), "one FIFO worker: steps are computed in the order they were logged"
    steps, _ = Store(tmp_path).series("slow", M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(16))
    hist = Store(tmp_path).sql("SELECT DISTINCT step FROM hist WHERE run = ? ORDER BY step", ["slow"])
    assert hist.column("step").to_pylist() == list(range(16))
    w.log_tokens(16, **_step_inputs(16))  # after close: refused at once and counted, never waits on a dead thread
    assert calls[-1] == 15 and w.errors == 1


def test_caller_mutating_inputs_after_return_does_not_change_stats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _step_inputs(3)
    ent = -(torch.softmax(x["logits"], -1) * torch.log_softmax(x["logits"], -1)).sum(-1)
    with Watch("ref", store=tmp_path, async_stats=False, vocab_size=11) as w:
        expected = w.log_tokens(0, entropy=ent, mask=x["mask"], logp=x["logp"], advantages=x["advantages"])
    _slow_step_stats(monkeypatch, 0.1, [])
    with Watch("mut", store=tmp_path, vocab_size=11) as w:
        e, m, lp, a = ent.clone(), x["mask"].clone(), x["logp"].clone(), x["advantages"].clone()
        w.log_tokens(0, entropy=e, mask=m, logp=lp, advantages=a)
        for t in (e, m, lp, a):  # a reused buffer, refilled for the next step while the worker is still busy
            t.fill_(0.0)
    store = Store(tmp_path)
    got = {r["name"]: r["value"] for r in store.scalars("mut").to_pylist() if not r["name"].startswith("hooks/")}
    assert got == pytest.approx(expected, rel=1e-12)


def test_worker_failure_is_counted_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(stats_mod, "step_stats", broken)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"), Watch("fail", store=tmp_path) as w:
        for step in range(3):
            assert w.log_tokens(step, **_step_inputs(step)) == {}
        w.log(3, **{M.REWARD_MEAN: 1.0})
        assert w.errors == 3
    warnings = [r for r in caplog.records if "log_tokens failed (RuntimeError: boom)" in r.getMessage()]
    assert len(warnings) == 1
    _, errs = Store(tmp_path).series("fail", M.HOOKS_ERRORS)
    assert errs[-1] == 3
    assert Store(tmp_path).series("fail", M.REWARD_MEAN)[1].tolist() == [1.0]


def test_strict_and_reduce_modes_stay_synchronous(tmp_path: Path) -> None:
    with Watch("strict", store=tmp_path, strict=True) as w:
        assert w._stats is None
        assert w.log_tokens(0, **_step_inputs(0))[M.TOKENS_COUNT] == 22
    with Watch("off", store=tmp_path, async_stats=False) as w:
        assert w._stats is None
        assert w.log_tokens(0, **_step_inputs(0))[M.TOKENS_COUNT] == 22


def test_stats_worker_runs_in_order_and_survives_a_broken_error_handler() -> None:
    seen: list[int] = []

    def on_error(exc: BaseException) -> None:
        raise RuntimeError("the handler itself fails")

    worker = StatsWorker(on_error, max_pending=3)

    def job(i: int) -> None:
        time.sleep(0.002)
        seen.append(i)
        if i == 2:
            raise ValueError("job fails")

    for i in range(12):
        worker.submit(lambda i=i: job(i))
        assert worker.pending <= 3
    assert worker.drain(timeout=30)
    assert seen == list(range(12))
    worker.close()
    with pytest.raises(ValueError):
        StatsWorker(on_error, max_pending=0)


_CHILD = textwrap.dedent(
    """
    import sys, time, torch
    import entropy_watch.hooks.stats as stats_mod
    from entropy_watch.hooks import Watch
    real = stats_mod.step_stats
    def slow(*a, **k):
        time.sleep(0.1)
        return real(*a, **k)
    stats_mod.step_stats = slow  # a worker far behind the training thread
    w = Watch("child", store=sys.argv[1], flush_secs=3600)
    for step in range(6):
        w.log_tokens(step, logits=torch.randn(2, 3, 7), mask=torch.ones(2, 3))
    print("ready", flush=True)
    if sys.argv[2] == "exit":
        sys.exit(0)  # no close(): atexit must drain the worker, then publish
    time.sleep(60)
    """
)


def _child(root: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(root), mode], stdout=subprocess.PIPE, text=True)


def test_exit_without_close_drains_pending_steps(tmp_path: Path) -> None:
    proc = _child(tmp_path, "exit")
    assert proc.wait(timeout=60) == 0
    steps, _ = Store(tmp_path).series("child", M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(6))
    status = json.loads(status_path(tmp_path, "child", 0).read_text())
    assert status["state"] == "finished" and status["last_step"] == 5


def test_sigterm_drains_pending_steps(tmp_path: Path) -> None:
    proc = _child(tmp_path, "loop")
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)  # the worker still has steps queued
    assert proc.wait(timeout=60) != 0
    steps, _ = Store(tmp_path).series("child", M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(6))
    status = json.loads(status_path(tmp_path, "child", 0).read_text())
    assert status["state"] == "terminated" and status["last_step"] == 5
