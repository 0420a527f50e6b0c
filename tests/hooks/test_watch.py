"""Watch and its recorder: what a plain PyTorch loop records, and that nothing it does can break training."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.errors import StoreUnwritable
from entropy_watch.hooks import Watch
from entropy_watch.store import Store
from entropy_watch.store.layout import status_path


def _batch(seed: int = 0, B: int = 4, T: int = 6, V: int = 11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 2
    mask = torch.ones(B, T)
    mask[0, 4:] = 0
    mask[2, 1:] = 0
    token_ids = torch.randint(0, V, (B, T), generator=g)
    logp = torch.log_softmax(logits, -1).gather(-1, token_ids[..., None]).squeeze(-1)
    old_logp = logp + 0.3 * torch.randn(B, T, generator=g)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    return logits, mask, token_ids, logp, old_logp, adv


def _naive_entropy(logits: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits.double(), -1)
    return -(p * torch.log(p)).sum(-1)


def test_records_entropy_hist_and_meta(tmp_path: Path) -> None:
    logits, mask, token_ids, logp, old_logp, adv = _batch()
    with Watch("w1", store=tmp_path, config={"lr": 1e-3, "seed": 7}, strict=True) as w:
        for step in range(3):
            w.log_tokens(
                step, logits=logits, mask=mask, logp=logp, old_logp=old_logp, advantages=adv, token_ids=token_ids
            )
            w.log(step, **{"reward/mean": 0.5 + step, "loss": torch.tensor(0.25)})
        w.event(2, "lr_schedule", lr=1e-4)
    store = Store(tmp_path)
    steps, ent = store.series("w1", M.ENTROPY_MEAN)
    expected = float(_naive_entropy(logits)[mask.bool()].mean())
    assert steps.tolist() == [0, 1, 2]
    np.testing.assert_allclose(ent, expected, rtol=1e-5)
    _, reward = store.series("w1", M.REWARD_MEAN)
    assert reward.tolist() == [0.5, 1.5, 2.5]
    hist = store.sql("SELECT step, sum(count) AS n FROM hist WHERE run = ? GROUP BY step ORDER BY step", ["w1"])
    assert hist.column("n").to_pylist() == [int(mask.sum())] * 3
    meta = store.run_meta("w1")
    assert meta["config"]["lr"] == 1e-3 and meta["seed"] == 7
    assert meta["vocab_size"] == 11 and len(meta["hist_edges"]) > 10
    assert "torch" in meta["versions"] and meta["world_size"] == 1
    events = store.sql("SELECT kind, payload FROM events WHERE run = ?", ["w1"]).to_pylist()
    assert events == [{"kind": "lr_schedule", "payload": json.dumps({"lr": 1e-4})}]
    tokens = store.sql("SELECT count(*) AS n FROM tokens WHERE run = ?", ["w1"]).to_pylist()[0]["n"]
    assert tokens > 0
    info = next(i for i in store.runs() if i.name == "w1")
    assert info.state == "finished"


def test_entropy_passed_in_equals_logits_path(tmp_path: Path) -> None:
    logits, mask, token_ids, logp, old_logp, adv = _batch(1)
    with Watch("a", store=tmp_path, strict=True, vocab_size=11) as w:
        from_logits = w.log_tokens(0, logits=logits, mask=mask, logp=logp, old_logp=old_logp, advantages=adv)
        passed = w.log_tokens(
            1, entropy=_naive_entropy(logits).float(), mask=mask, logp=logp, old_logp=old_logp, advantages=adv
        )
    assert from_logits.keys() == passed.keys()
    for k in from_logits:
        assert from_logits[k] == pytest.approx(passed[k], rel=1e-5, abs=1e-6), k


def test_bad_input_is_counted_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logits, mask, *_ = _batch()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"), Watch("bad", store=tmp_path) as w:
        for step in range(3):
            out = w.log_tokens(step, logits=logits, mask=mask[:, :2])  # wrong mask shape
            assert out == {}
        w.log_tokens(3)  # neither logits nor entropy
        w.log(4, **{"reward/mean": "not a number"})
        assert w.log_tokens(5, logits=logits, mask=mask) == {}  # async statistics: the scalars go to the store
        assert w.errors == 5
    warnings = [r for r in caplog.records if "log_tokens failed" in r.getMessage()]
    assert len(warnings) == 1, "the first failure of a hook is warned once, later ones only counted"
    _, errs = Store(tmp_path).series("bad", M.HOOKS_ERRORS)
    assert errs[-1] == 5
    steps, count = Store(tmp_path).series("bad", M.TOKENS_COUNT)
    assert steps.tolist() == [5] and count.tolist() == [mask.sum().item()]


def test_strict_reraises(tmp_path: Path) -> None:
    logits, mask, *_ = _batch()
    with Watch("strict", store=tmp_path, strict=True) as w, pytest.raises(ValueError):
        w.log_tokens(0, logits=logits, mask=mask[:, :2])


def test_nan_logits_are_counted_not_written(tmp_path: Path) -> None:
    logits, mask, *_ = _batch()
    logits[1, 0, 3] = float("nan")
    logits[3, 2, :] = float("inf")
    with Watch("nan", store=tmp_path, strict=True) as w:
        out = w.log_tokens(0, logits=logits, mask=mask)
    valid = int(mask.sum())
    assert out[M.ENTROPY_NONFINITE_FRAC] == pytest.approx(2 / valid)
    assert math.isfinite(out[M.ENTROPY_MEAN])
    store = Store(tmp_path)
    rows = store.scalars("nan").to_pylist()
    assert all(math.isfinite(r["value"]) for r in rows if r["name"].startswith("entropy/"))


def test_unwritable_store_reported_at_creation(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnwritable):
        Watch("x", store=blocker / "store")


def test_full_disk_keeps_rows_and_training_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logits, mask, *_ = _batch()
    w = Watch("disk", store=tmp_path, flush_secs=3600)
    real_write = w._writer.write
    failing = {"on": True}

    def write(table, rows, **kwargs):
        if failing["on"]:
            raise OSError(28, "No space left on device")
        return real_write(table, rows, **kwargs)

    monkeypatch.setattr(w._writer, "write", write)
    for step in range(4):
        w.log_tokens(step, logits=logits, mask=mask)
    w.flush()  # fails: counted, rows kept
    assert w.errors >= 1
    assert Store(tmp_path).series("disk", M.ENTROPY_MEAN)[0].size == 0
    failing["on"] = False  # space freed
    w.close()
    steps, _ = Store(tmp_path).series("disk", M.ENTROPY_MEAN)
    assert steps.tolist() == [0, 1, 2, 3], "no scalar row is lost by a failed publish"


def test_token_rows_dropped_first_and_counted(tmp_path: Path) -> None:
    logits, mask, token_ids, *_ = _batch()
    w = Watch("drop", store=tmp_path, flush_secs=3600, sample_tokens=8, token_every=1)
    w.log_tokens(0, logits=logits, mask=mask, token_ids=token_ids)
    w.flush()  # the session's first rows are published at once anyway; the cap applies to what waits after them
    first = Store(tmp_path).sql("SELECT count(*) AS n FROM tokens").to_pylist()[0]["n"]
    w._recorder.max_token_rows = 10
    for step in range(1, 6):
        w.log_tokens(step, logits=logits, mask=mask, token_ids=token_ids)
    dropped = w.dropped_token_rows
    w.close()
    store = Store(tmp_path)
    assert dropped > 0
    assert store.series("drop", M.ENTROPY_MEAN)[0].tolist() == [0, 1, 2, 3, 4, 5]
    n_tok = store.sql("SELECT count(*) AS n, min(step) AS lo FROM tokens WHERE step > 0").to_pylist()[0]
    assert n_tok["n"] == 10 and n_tok["lo"] > 1, "the oldest token rows go first"
    assert first > 0
    assert store.series("drop", M.HOOKS_DROPPED_TOKENS)[1][-1] == dropped


_CHILD = textwrap.dedent(
    """
    import sys, time, torch
    from entropy_watch.hooks import Watch
    w = Watch("child", store=sys.argv[1], flush_secs=0.2)
    for step in range(10_000):
        w.log_tokens(step, logits=torch.randn(2, 3, 7), mask=torch.ones(2, 3))
        if step == 5:
            print("ready", flush=True)
        if sys.argv[2] == "exit" and step == 20:
            sys.exit(0)  # no close(): atexit must flush
        if sys.argv[2] == "ctrl-c" and step == 20:
            raise KeyboardInterrupt  # unhandled, no close(): as a TRL run stopped with Ctrl-C (no with block)
        if sys.argv[2] == "crash" and step == 20:
            raise RuntimeError("boom")
        time.sleep(0.01)
    """
)


def _spawn(root: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(root), mode], stdout=subprocess.PIPE, text=True)


def test_sigterm_flushes_and_marks_terminated(tmp_path: Path) -> None:
    proc = _spawn(tmp_path, "loop")
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0  # the default SIGTERM action still ends the process
    store = Store(tmp_path)
    steps, _ = store.series("child", M.ENTROPY_MEAN)
    assert steps.size >= 6 and steps.tolist() == list(range(steps.size))
    status = json.loads(status_path(tmp_path, "child", 0).read_text())
    assert status["state"] == "terminated"
    assert status["last_step"] == steps[-1]


@pytest.mark.parametrize(
    ("raised", "state"), [(None, "finished"), (KeyboardInterrupt, "interrupted"), (RuntimeError, "failed")]
)
def test_leaving_the_with_block_sets_the_run_state(tmp_path: Path, raised: type | None, state: str) -> None:
    """Ctrl-C inside ``with Watch(...)`` is a stop, not a finish and not a crash; what was logged is kept."""
    with pytest.raises(raised) if raised else contextlib.nullcontext():  # the exception still reaches the caller
        with Watch("w", store=tmp_path) as w:
            w.log(0, **{"reward/mean": 0.5})
            if raised is not None:
                raise raised
    info = Store(tmp_path).run_info("w")
    assert (info.state, info.last_step) == (state, 0)
    assert [(i.name, i.state) for i in Store(tmp_path).runs()] == [("w", state)]


@pytest.mark.parametrize(("mode", "state"), [("exit", "finished"), ("ctrl-c", "interrupted"), ("crash", "failed")])
def test_exit_without_close_flushes_and_says_how_the_process_ended(tmp_path: Path, mode: str, state: str) -> None:
    """A run never closed (the HF/TRL callbacks have no with block) is closed at exit: a process ended by an unhandled
    Ctrl-C reads interrupted, by any other unhandled exception failed, and not finished."""
    proc = _spawn(tmp_path, mode)
    assert (proc.wait(timeout=60) == 0) == (mode == "exit")
    steps, _ = Store(tmp_path).series("child", M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(21))
    assert Store(tmp_path).run_info("child").state == state


def test_sigkill_leaves_a_readable_store(tmp_path: Path) -> None:
    proc = _spawn(tmp_path, "loop")
    assert proc.stdout.readline().strip() == "ready"
    seg_dir = tmp_path / "run=child" / "table=scalars" / "rank=0"
    deadline = time.monotonic() + 60
    while not list(seg_dir.glob("seg-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the background thread has published something
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    steps, values = Store(tmp_path).series("child", M.ENTROPY_MEAN)
    assert steps.size >= 1, "segments published before the kill are readable"
    assert steps.tolist() == list(range(steps.size)) and np.isfinite(values).all()
    # a restarted writer on the same run never overwrites what is there
    with Watch("child", store=tmp_path) as w:
        w.log(10_000, **{M.ENTROPY_MEAN: 0.1})
    steps2, _ = Store(tmp_path).series("child", M.ENTROPY_MEAN)
    assert steps2.tolist() == steps.tolist() + [10_000]
