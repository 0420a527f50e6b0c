"""The algorithm functions against naive references written out here (Python loops over scalars, ALGORITHMS.md read
literally), on random tensors with the awkward cases mixed in: groups whose rewards are all equal, all-padding rows,
ratios on both sides of both clip bounds, zeta at and across its bounds. No number is pinned: each side is computed
here, on the same inputs."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from entropy_watch.hooks import token_entropy
from entropy_watch.trainer import algorithms as alg

torch.set_num_threads(1)


def _rewards(groups: int, g: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    r = torch.randint(0, 2, (groups, g), generator=gen).float()
    r[0] = 1.0  # all correct: zero advantage
    r[1] = 0.0  # all wrong: zero advantage
    return r.view(-1)


@pytest.mark.parametrize("seed", [0, 1])
def test_advantages_match_the_formulas(seed: int) -> None:
    g, r = 5, _rewards(6, 5, seed)
    grpo, dr, rloo = [], [], []
    for k in range(0, len(r), g):
        grp = [float(x) for x in r[k : k + g]]
        mean, std = statistics.fmean(grp), statistics.stdev(grp)  # unbiased, as verl
        grpo += [(x - mean) / (std + 1e-6) for x in grp]
        dr += [x - mean for x in grp]
        rloo += [x - (sum(grp) - x) / (g - 1) for x in grp]
    for fn, ref in ((alg.grpo_advantages, grpo), (alg.dr_grpo_advantages, dr), (alg.rloo_advantages, rloo)):
        out = fn(r, g)
        assert torch.allclose(out, torch.tensor(ref), atol=1e-5), fn.__name__
        assert (out[: 2 * g] == 0).all(), fn.__name__  # equal rewards: exactly zero, not 1e-6-scaled noise
    keep = alg.informative_groups(r, g).tolist()
    assert keep == [max(r[k : k + g]) > min(r[k : k + g]) for k in range(0, len(r), g) for _ in range(g)]


def test_surrogate_loss_gradient_and_clip_masks_match_the_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    logp = (torch.randn(6, 7, generator=gen) * 0.3 - 1.0).requires_grad_(True)
    old = logp.detach() + torch.randn(6, 7, generator=gen) * 0.3  # ratios ~ e^{+-0.6}: both bounds bind somewhere
    adv = torch.randn(6, 7, generator=gen)
    adv[0] = 0.0
    eps_low, eps_high = 0.2, 0.28
    loss, low, high = alg.clipped_surrogate(logp, old, adv, eps_low, eps_high)
    loss.sum().backward()
    assert low.any() and high.any()
    for i in range(6):
        for t in range(7):
            rho, a = math.exp(float(logp.detach()[i, t]) - float(old[i, t])), float(adv[i, t])
            clipped = min(max(rho, 1 - eps_low), 1 + eps_high)
            assert float(loss.detach()[i, t]) == pytest.approx(-min(rho * a, clipped * a), rel=1e-5, abs=1e-6)
            binds = (a < 0 and rho < 1 - eps_low) or (a > 0 and rho > 1 + eps_high)
            assert bool(low[i, t] or high[i, t]) == binds
            # d(-rho*A)/dlogp = -rho*A where the unclipped term is the min; 0 where the clip binds
            assert float(logp.grad[i, t]) == pytest.approx(0.0 if binds else -rho * a, rel=1e-5, abs=1e-6)


def test_aggregations_with_an_all_padding_row() -> None:
    gen = torch.Generator().manual_seed(0)
    loss = torch.randn(4, 5, generator=gen)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float32)
    valid = [(i, t) for i in range(4) for t in range(5) if mask[i, t] > 0]
    assert float(alg.token_mean(loss, mask)) == pytest.approx(sum(float(loss[i, t]) for i, t in valid) / len(valid))
    per_seq = [statistics.fmean(float(loss[i, t]) for t in range(5) if mask[i, t] > 0) if mask[i].sum() else 0.0
               for i in range(4)]  # fmt: skip
    assert float(alg.seq_mean_token_mean(loss, mask)) == pytest.approx(statistics.fmean(per_seq))  # documented: 0
    nothing = torch.zeros_like(mask)
    assert float(alg.token_mean(loss, nothing)) == 0.0 and float(alg.seq_mean_token_mean(loss, nothing)) == 0.0
    assert not alg.top_entropy_mask(loss, nothing, 0.2).any()
    assert alg.repo_d_beta(loss, -loss.abs(), loss, nothing) == 0.0


@pytest.mark.parametrize("zeta", [0.3, -0.3, 0.0])
def test_repo_r_matches_the_case_by_case_formula(zeta: float) -> None:
    gen = torch.Generator().manual_seed(1)
    adv, L = torch.randn(5, 6, generator=gen), torch.randn(5, 6, generator=gen) * 3
    adv[0, :3] = 0.0
    out = alg.repo_r_advantages(adv, L, zeta)
    for a, lv, o in zip(adv.view(-1).tolist(), L.view(-1).tolist(), out.view(-1).tolist(), strict=True):
        if a > 0:
            ref = max(a * (1 - zeta * lv), 0.0)
        elif a < 0:
            ref = min(a * (1 + zeta * lv), 0.0)
        else:
            ref = 0.0
        assert o == pytest.approx(ref, rel=1e-6, abs=1e-7)


def _zeta_naive(zeta: float, h: float, target: float, zmin: float, zmax: float) -> float:
    """ALGORITHMS.md's controller, sentence by sentence."""
    if h < target:  # entropy too low
        if zeta > 0:
            return min(2 * zeta, zmax)  # double it (cap zeta_max)
        if abs(zeta / 2) < zmin:  # its magnitude would fall below zeta_min: flip to +zeta_min (0 included)
            return zmin
        return zeta / 2  # halve a negative one
    if h > target:  # the mirror image
        if zeta < 0:
            return max(2 * zeta, -zmax)
        if zeta / 2 < zmin:
            return -zmin
        return zeta / 2
    return zeta


def test_zeta_and_adapo_controllers_follow_the_spec_along_a_trajectory() -> None:
    gen = torch.Generator().manual_seed(3)
    target, zmin, zmax = 1.0, 1e-4, 0.25
    entropies = (1.0 + 0.3 * torch.randn(400, generator=gen)).tolist() + [0.5] * 40 + [1.5] * 40  # both caps reached
    z = z_ref = 1e-3
    eps, kappa = 0.28, 1.25
    seen_caps = set()
    for h in entropies:
        z, z_ref = alg.zeta_update(z, h, target, zmin, zmax), _zeta_naive(z_ref, h, target, zmin, zmax)
        assert z == z_ref and zmin <= abs(z) <= zmax
        seen_caps |= {z} & {zmax, -zmax}
        ref_eps = min(1.0, eps * kappa) if h < target else max(0.2, eps / kappa) if h > target else eps
        eps = alg.adapo_update(eps, h, target, kappa, 0.2, 1.0)
        assert eps == ref_eps and 0.2 <= eps <= 1.0
    assert seen_caps == {zmax, -zmax}


def test_exact_centring_turns_the_score_function_into_the_entropy_gradient() -> None:
    """REPO's premise (ALGORITHMS.md): with L = log pi + H detached, ``E_a~pi[grad log pi(a) * L(a)] = -grad H``, so
    A - beta*L adds beta*grad H in expectation. Checked exactly (sum over the vocabulary) on random logits."""
    gen = torch.Generator().manual_seed(0)
    z = (torch.randn(3, 11, generator=gen) * 2).requires_grad_(True)  # (states, V)
    logp_all = torch.log_softmax(z, -1)
    H = token_entropy(z.detach())  # (states,)
    L = alg.centred_logp(logp_all.detach(), H.unsqueeze(-1).expand_as(logp_all), "exact")
    assert torch.allclose((logp_all.detach().exp() * L).sum(-1), torch.zeros(3), atol=1e-5)  # zero mean under pi
    (score,) = torch.autograd.grad((logp_all.detach().exp() * logp_all * L).sum(), z)
    (grad_h,) = torch.autograd.grad(token_entropy(z).sum(), z)
    assert torch.allclose(score, -grad_h, atol=1e-5)
