"""A step written twice before a publish is stored as one write, the latest: the recorder replaces the step's
``hist``/``tokens`` rows still buffered, so one segment never holds two writes of a step (readers, which keep each
rank's latest write of a step, cannot tell apart two writes inside one segment; test_s46_repeat_steps.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from entropy_watch.histogram import entropy_bin_edges, n_bins
from entropy_watch.hooks import Watch
from entropy_watch.recorder import Recorder
from entropy_watch.store import RunWriter, Store

V = 16
NB = n_bins(entropy_bin_edges(V))


def _tokens(step: int, entropies: list[float]) -> list[dict[str, object]]:
    return [{"step": step, "seq": 0, "pos": p, "entropy": e} for p, e in enumerate(entropies)]


def test_log_tokens_twice_for_one_step_keeps_the_second_call(root: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    w = Watch("rep", store=root, flush_secs=3600, async_stats=False, sample_tokens=64, token_every=1, vocab_size=V)
    w.log_tokens(0, logits=torch.randn(2, 4, V, generator=gen))
    w.flush()  # the session's first rows are published at once; step 1's two calls then share one buffer
    w.log_tokens(1, logits=torch.randn(2, 4, V, generator=gen))
    second = torch.rand(3, 5, generator=gen) * 2.0  # distinct entropies (nats), 15 tokens
    w.log_tokens(1, entropy=second)
    w.close()
    store = Store(root)
    steps, counts = store.hist_matrix("rep", NB)
    assert steps.tolist() == [0, 1]
    assert counts.sum(1).tolist() == [8, 15]  # the second call's 15 tokens, not 8 + 15
    tok = store.sql("SELECT entropy FROM tokens WHERE step = 1").column("entropy").to_pylist()
    want = set(np.asarray(second, dtype=np.float32).ravel().tolist())
    assert tok and set(np.asarray(tok, dtype=np.float32).tolist()) <= want


def test_recorder_replaces_a_buffered_step_and_keeps_the_others(root: Path) -> None:
    rec = Recorder(RunWriter(root, "r"), flush_secs=3600, handle_sigterm=False)
    rec.hist(0, [1, 1])
    rec.flush()
    rec.hist(1, [2, 0, 3])
    rec.hist(2, [0, 4])
    rec.hist(1, [0, 1])  # replaces step 1's buffered histogram, not step 2's
    rec.tokens(_tokens(1, [0.1, 0.2]) + _tokens(2, [0.3]))
    rec.tokens(_tokens(1, [0.5]))  # replaces step 1's sample only
    rec.close()
    store = Store(root)
    steps, counts = store.hist_matrix("r", 3)
    assert steps.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [0, 4, 0]])
    tok = store.sql("SELECT step, entropy FROM tokens ORDER BY step, entropy").to_pylist()
    assert [(r["step"], round(r["entropy"], 3)) for r in tok] == [(1, 0.5), (2, 0.3)]
    assert rec._pending == 0 and rec.errors == 0


def test_batches_merged_during_an_outage_keep_one_write_per_step(
    root: Path, monkeypatch: pytest.MonkeyPatch, full_disk: dict
) -> None:
    """During a full disk the untried batches of a table merge into one (one write per table and round): two writes
    of a step taken in two rounds became one segment holding both."""
    rec = Recorder(RunWriter(root, "r"), flush_secs=3600, handle_sigterm=False)
    state = full_disk
    rec.hist(0, [1, 1])
    rec.tokens(_tokens(0, [0.9]))
    rec.flush()  # fails: this batch keeps its segment number
    rec.hist(3, [5, 5])
    rec.tokens(_tokens(3, [0.1, 0.2]))
    rec.flush()  # the table failed: untried, kept
    rec.hist(3, [0, 2])
    rec.tokens(_tokens(3, [0.7]))
    rec.flush()  # untried again: merged into the kept one
    state["full"] = False
    rec.close()
    store = Store(root)
    steps, counts = store.hist_matrix("r", 2)
    assert steps.tolist() == [0, 3]
    np.testing.assert_array_equal(counts, [[1, 1], [0, 2]])
    tok = store.sql("SELECT step, entropy FROM tokens ORDER BY step").to_pylist()
    assert [(r["step"], round(r["entropy"], 3)) for r in tok] == [(0, 0.9), (3, 0.7)]
