"""A real TRL GRPOTrainer run with ``attach``: every per-token statistic the hooks store is recomputed naively from the
tensors of TRL's own loss forwards (captured by a spy on the same calls), not from TRL's logged numbers alone.

``entropy/mean`` and ``clip/*_frac`` follow TRL's rule (token mean per micro-batch, mean over the step's
micro-batches); the advantage and covariance statistics are token-weighted over all the step's tokens, population
moments (CONTRACTS, "Token statistics"). Off-policy passes (``num_iterations=2``), gradient accumulation and a
reward that makes completions end early (padding-heavy, unequal token counts per micro-batch) are all in the run.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store

pytestmark = pytest.mark.slow


def _short(completions, **kwargs):
    """Prefer short completions (most rows end early: padding), ties broken by position."""
    return [-len(c.split()) + 0.01 * i for i, c in enumerate(completions)]


def _spy(trainer) -> list[dict]:
    """Capture (step, log-probs, entropies, mask, advantages, old log-probs) of every training loss forward."""
    rec: list[dict] = []
    inside: dict = {"inputs": None}
    loss, logps = trainer._compute_loss, trainer._get_per_token_logps_and_entropies

    def compute_loss(model, inputs):
        inside["inputs"] = inputs if trainer.model.training else None
        try:
            return loss(model, inputs)
        finally:
            inside["inputs"] = None

    def per_token(*a, **k):
        out = logps(*a, **k)
        inputs, inside["inputs"] = inside["inputs"], None
        if inputs is not None and k.get("compute_entropy") and out[1] is not None:
            old = inputs.get("old_per_token_logps")
            rec.append(
                {
                    "step": trainer.state.global_step + 1,
                    "logp": out[0].detach().double(),
                    "ent": out[1].detach().double(),
                    "mask": inputs["completion_mask"].double(),
                    "adv": inputs["advantages"].double(),
                    "old": None if old is None else old.double(),
                }
            )
        else:
            inside["inputs"] = inputs
        return out

    trainer._compute_loss = compute_loss
    trainer._get_per_token_logps_and_entropies = per_token
    return rec


def _reference(micro: list[dict], eps_low: float, eps_high: float) -> dict[str, float]:
    def tmean(x, m):
        return float((x * m).sum() / m.sum().clamp(min=1.0))

    ref = {M.ENTROPY_MEAN: float(np.mean([tmean(m["ent"], m["mask"]) for m in micro]))}
    if all(m["old"] is not None for m in micro):
        low, high = [], []
        for m in micro:
            ratio, adv = torch.exp(m["logp"] - m["old"]).float(), m["adv"][:, None]
            low.append(tmean(((ratio < 1 - eps_low) & (adv < 0)).double(), m["mask"]))
            high.append(tmean(((ratio > 1 + eps_high) & (adv > 0)).double(), m["mask"]))
        ref[M.CLIP_LOW_FRAC], ref[M.CLIP_HIGH_FRAC] = float(np.mean(low)), float(np.mean(high))
    keep = [m["mask"].bool() for m in micro]
    a = torch.cat([m["adv"][:, None].expand_as(m["mask"])[k] for m, k in zip(micro, keep, strict=True)])
    lp = torch.cat([m["logp"][k] for m, k in zip(micro, keep, strict=True)])
    ref[M.TOKENS_COUNT] = float(a.numel())
    ref[M.ADV_MEAN], ref[M.ADV_STD] = float(a.mean()), float(a.std(unbiased=False))
    ref[M.ADV_MIN], ref[M.ADV_MAX] = float(a.min()), float(a.max())
    ref[M.COV_LOGP_ADV] = float(((lp - lp.mean()) * (a - a.mean())).mean())  # naive two-pass covariance
    return ref


def test_stored_statistics_equal_a_naive_recomputation_from_trls_tensors(tiny_trl, tmp_path):
    from entropy_watch.hooks.trl import attach

    trainer = tiny_trl.build_trainer(
        str(tmp_path / "out"), reward=_short, max_steps=4, num_iterations=2, gradient_accumulation_steps=2,
        loss_type="dapo", learning_rate=0.5, max_completion_length=16,
    )  # fmt: skip
    handle = attach(trainer, run="audit", store=tmp_path / "store", strict=True, flush_secs=0.05)
    rec = _spy(trainer)
    trainer.train()
    handle.close()
    assert handle.watch.errors == 0 and handle.mode == "per-token"

    store = Store(tmp_path / "store")
    by_step: dict[int, list[dict]] = defaultdict(list)
    for m in rec:
        by_step[m["step"]].append(m)
    assert sorted(by_step) == [1, 2, 3, 4] == [h["step"] for h in trainer.state.log_history if "entropy" in h]
    counts = {s: sum(int(m["mask"].sum()) for m in ms) for s, ms in by_step.items()}
    assert min(counts.values()) < 0.8 * 4 * 4 * 16  # padding: fewer tokens than rows x max length
    clipped = 0.0
    for step, micro in by_step.items():
        ref = _reference(micro, trainer.epsilon_low, trainer.epsilon_high)
        for name, want in ref.items():
            steps, values = store.series("audit", name)
            got = dict(zip(steps.tolist(), values.tolist(), strict=True))
            assert got[step] == pytest.approx(want, rel=1e-6, abs=1e-6), (step, name)
        clipped += ref.get(M.CLIP_LOW_FRAC, 0.0) + ref.get(M.CLIP_HIGH_FRAC, 0.0)
    assert clipped > 0  # the clip fractions were compared where they bind, not only at 0
