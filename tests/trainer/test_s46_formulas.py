"""ALGORITHMS.md lines the other naive-reference tests leave open, each against Python written out here on the same
inputs: REPO's clamp of L (after centring), the DAPO clip-higher masks low and high one by one, REPO-D's decorrelation
coefficient on random tensors, and the check ``train`` makes before any work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from entropy_watch.errors import ConfigError
from entropy_watch.trainer import algorithms as alg

torch.set_num_threads(1)


def test_repo_l_is_clamped_after_centring() -> None:
    """ALGORITHMS.md: L = logp + H, "detached and clamped at -20". Clamping logp first read an in-range L = -15
    (logp -25, H 10: a rare token in a high-entropy LLM state) as -10, and never let L reach the bound."""
    logp = torch.tensor([[-25.0, -21.0, -3.0, float("-inf"), -0.1]])
    ent = torch.tensor([[10.0, 0.5, 1.0, 2.0, 0.3]])
    got = alg.centred_logp(logp, ent, "exact")
    ref = [max(lp + h, alg.L_CLAMP) for lp, h in zip(logp.view(-1).tolist(), ent.view(-1).tolist(), strict=True)]
    assert got.view(-1).tolist() == pytest.approx(ref)
    assert got[0, 0] == pytest.approx(-15.0) and got[0, 1] == alg.L_CLAMP  # -20.5: at the bound
    raw = alg.centred_logp(logp, ent, "raw")  # L = logp: one clamp, as SkyRL's
    assert raw.view(-1).tolist() == pytest.approx([max(x, alg.L_CLAMP) for x in logp.view(-1).tolist()])


def test_centred_logp_is_detached() -> None:
    logp = torch.tensor([[-1.0, -30.0]], requires_grad=True)
    ent = torch.tensor([[0.5, 3.0]], requires_grad=True)
    assert not alg.centred_logp(logp, ent, "exact").requires_grad
    assert not alg.centred_logp(logp, None, "raw").requires_grad


@pytest.mark.parametrize(("eps_low", "eps_high"), [(0.2, 0.28), (0.1, 0.5), (0.3, 0.0)])
def test_clip_higher_masks_match_each_bound_separately(eps_low: float, eps_high: float) -> None:
    """DAPO's clip-higher: the low mask is A < 0 with rho < 1 - eps_low, the high mask A > 0 with rho > 1 + eps_high,
    each on its own bound (a swap of the two widths would pass a test of ``low | high``)."""
    gen = torch.Generator().manual_seed(7)
    logp = torch.randn(8, 9, generator=gen) * 0.3 - 1.0
    old = logp + torch.randn(8, 9, generator=gen) * 0.4
    adv = torch.randn(8, 9, generator=gen)
    loss, low, high = alg.clipped_surrogate(logp, old, adv, eps_low, eps_high)
    n_low = n_high = 0
    for i in range(8):
        for t in range(9):
            rho, a = math.exp(float(logp[i, t]) - float(old[i, t])), float(adv[i, t])
            want_low, want_high = a < 0 and rho < 1 - eps_low, a > 0 and rho > 1 + eps_high
            assert (bool(low[i, t]), bool(high[i, t])) == (want_low, want_high), (i, t, rho, a)
            n_low, n_high = n_low + want_low, n_high + want_high
            clipped = min(max(rho, 1 - eps_low), 1 + eps_high)
            assert float(loss[i, t]) == pytest.approx(-min(rho * a, clipped * a), rel=1e-5, abs=1e-6)
    assert n_low and n_high  # both bounds bind somewhere on these inputs


def test_repo_d_beta_matches_the_formula_on_random_tensors() -> None:
    """beta* = mean_t(pi L A) / mean_t(pi L^2) over valid tokens (padding ignored), pi = exp(logp)."""
    gen = torch.Generator().manual_seed(11)
    logp = -torch.rand(5, 6, generator=gen) * 4
    ent = torch.rand(5, 6, generator=gen) * 2
    adv = torch.randn(5, 1, generator=gen).expand(5, 6).contiguous()
    mask = (torch.rand(5, 6, generator=gen) > 0.3).float()
    mask[2] = 0.0  # an all-padding row
    L = alg.centred_logp(logp, ent, "exact")
    num = den = 0.0
    for i in range(5):
        for t in range(6):
            if mask[i, t] > 0:
                pi, lv, a = math.exp(float(logp[i, t])), float(L[i, t]), float(adv[i, t])
                num, den = num + pi * lv * a, den + pi * lv * lv
    beta = alg.repo_d_beta(adv, logp, L, mask)
    assert beta == pytest.approx(num / den, rel=1e-5)
    zeta = 0.7
    out = alg.repo_d_advantages(adv, L, zeta, beta)
    ref = [float(adv[i, t]) - zeta * beta * float(L[i, t]) for i in range(5) for t in range(6)]
    assert out.view(-1).tolist() == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_check_start_refuses_init_with_resume_and_a_missing_policy(tmp_path: Path) -> None:
    """The library's own pre-flight (``train`` calls it first; the CLI before its progress bar): nothing written."""
    from entropy_watch.trainer.checkpoint import CheckpointError
    from entropy_watch.trainer.config import preset
    from entropy_watch.trainer.loop import check_start, train

    cfg = preset("tiny", run="r")
    cfg.device = "cpu"
    with pytest.raises(ConfigError, match="init starts a new run .* resume continues"):
        train(cfg, store=tmp_path, init=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="no model at"):
        check_start(cfg, store=tmp_path, init=tmp_path / "missing")
    cfg.model.path = str(tmp_path / "missing-too")
    with pytest.raises(CheckpointError, match="missing-too"):
        check_start(cfg, store=tmp_path)
    assert not any(tmp_path.iterdir())
    start = check_start(preset("tiny", run="fresh"), store=tmp_path)
    assert start.state is None and start.root == tmp_path and start.ckpt_dir.parent.name == "run=fresh"
