"""Every algorithm function on small tensors whose expected values are worked out by hand in the test."""

from __future__ import annotations

import math

import pytest
import torch

from entropy_watch.trainer import algorithms as alg

torch.set_num_threads(1)


def close(a: torch.Tensor, b: list | float, tol: float = 1e-5) -> None:
    assert torch.allclose(a.float(), torch.as_tensor(b, dtype=torch.float32), atol=tol), (a, b)


# ---- advantages ----------------------------------------------------------------------------------------------------
def test_grpo_advantages_by_hand() -> None:
    # group [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3) = 0.57735 -> +-0.5/0.57735 = +-0.866025
    # group [1, 1, 1, 1]: all equal -> 0
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    s = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    close(alg.grpo_advantages(r, 4), [s, -s, -s, s, 0, 0, 0, 0])


def test_dr_grpo_and_rloo_by_hand() -> None:
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    close(alg.dr_grpo_advantages(r, 4), [0.75, -0.25, -0.25, -0.25])  # r - 0.25
    # RLOO: r_i - mean of the other three: 1 - 0 = 1; 0 - 1/3 = -1/3
    close(alg.rloo_advantages(r, 4), [1.0, -1 / 3, -1 / 3, -1 / 3])
    assert set(alg.ADVANTAGES) == {"grpo", "dr_grpo", "rloo"}


def test_informative_groups_drops_equal_reward_groups() -> None:
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    assert alg.informative_groups(r, 2).tolist() == [False, False, True, True, False, False]


# ---- aggregation ---------------------------------------------------------------------------------------------------
def test_token_mean_and_seq_mean_token_mean_by_hand() -> None:
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    close(alg.token_mean(loss, mask), (1 + 2 + 3 + 4) / 4)  # 2.5
    close(alg.seq_mean_token_mean(loss, mask), (2.0 + 4.0) / 2)  # 3.0


# ---- surrogate -----------------------------------------------------------------------------------------------------
def test_clipped_surrogate_by_hand() -> None:
    # ratios 1.5 (A=+1: clipped at 1.2 -> loss -1.2, binding high), 0.5 (A=-1: min(-0.5, -0.8) = -0.8 -> loss 0.8,
    # binding low), 1.1 (A=+2: unclipped -> -2.2), 0.5 (A=+1: min(0.5, 0.8) = 0.5 -> -0.5, not binding)
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.5]])
    old = torch.zeros_like(ratio)
    adv = torch.tensor([[1.0, -1.0, 2.0, 1.0]])
    loss, low, high = alg.clipped_surrogate(ratio.log(), old, adv, 0.2, 0.2)
    close(loss, [[-1.2, 0.8, -2.2, -0.5]])
    assert low.tolist() == [[False, True, False, False]]
    assert high.tolist() == [[True, False, False, False]]
    # asymmetric (DAPO clip-higher 0.28): the 1.5 ratio now clips at 1.28
    loss, _, _ = alg.clipped_surrogate(ratio.log(), old, adv, 0.2, 0.28)
    close(loss[0, 0], -1.28)
    # no upper clip (the "no-upper-clip" algorithm, the far end of ADAPO's lever): the 1.5 ratio counts in full and
    # never binds high; the lower clip is unchanged
    loss, low, high = alg.clipped_surrogate(ratio.log(), old, adv, 0.2, math.inf)
    close(loss, [[-1.5, 0.8, -2.2, -0.5]])
    assert low.tolist() == [[False, True, False, False]] and not high.any()


def test_clipped_surrogate_gradient_is_zero_when_clip_binds() -> None:
    logp = torch.tensor([[math.log(1.5), math.log(1.1)]], requires_grad=True)
    loss, _, _ = alg.clipped_surrogate(logp, torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]), 0.2, 0.2)
    loss.sum().backward()
    close(logp.grad, [[0.0, -1.1]])  # d(-rho*A)/dlogp = -rho*A where unclipped


def test_k3_kl_by_hand() -> None:
    # d = ref - logp = log 2: exp(d) - d - 1 = 2 - 0.693147 - 1 = 0.306853; equal log-probs -> 0
    close(alg.k3_kl(torch.tensor([0.0, -1.0]), torch.tensor([math.log(2), -1.0])), [0.306853, 0.0])


# ---- Cui et al.: covariance selection --------------------------------------------------------------------------------
def test_token_covariance_by_hand() -> None:
    adv = torch.tensor([[1.0, -1.0, 3.0]])
    logp = torch.tensor([[-1.0, -3.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is padding: excluded from the means, cov 0
    # means over valid: A 0, logp -2 -> c = (1)(1) = 1, (-1)(-1) = 1, 0
    close(alg.token_covariance(adv, logp, mask), [[1.0, 1.0, 0.0]])


def test_clip_cov_selects_only_candidates_in_window() -> None:
    cov = torch.tensor([[0.5, 2.0, 3.0, 6.0, 2.5]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    clipped = torch.tensor([[False, False, True, False, False]])
    # candidates: valid, not clipped, 1 < c < 5 -> only index 1; ratio tiny -> max(1, floor) = 1 pick
    pick = alg.clip_cov_select(cov, mask, clipped, 2e-4, (1.0, 5.0), torch.Generator().manual_seed(0))
    assert pick.tolist() == [[False, True, False, False, False]]
    none = alg.clip_cov_select(cov, mask, torch.ones_like(clipped), 2e-4, (1.0, 5.0))
    assert not none.any()


def test_kl_cov_penalises_top_covariance_tokens() -> None:
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    logp = torch.tensor([[-0.5, -3.0, -2.0, -1.0]])
    old = torch.tensor([[-1.0, -3.0, -2.0, -1.0]])
    mask = torch.ones(1, 4)
    # means: A 0, logp -1.625 -> c = 1*1.125, -1*-1.375, 1*-0.375, -1*0.625 -> top-1 is index 1 (1.375)
    # loss = -A*rho (+ |logp - old| on index 1, which is 0 there): rho = [e^0.5, 1, 1, 1]
    loss, pen = alg.kl_cov_loss(logp, old, adv, mask, frac=0.25, coef=1.0)
    assert pen.tolist() == [[False, True, False, False]]
    close(loss, [[-math.exp(0.5), 1.0, -1.0, 1.0]])
    # with frac 0.5 the top-2 adds index 0 (1.125): + |(-0.5) - (-1.0)| = 0.5
    loss2, pen2 = alg.kl_cov_loss(logp, old, adv, mask, frac=0.5, coef=1.0)
    assert pen2.tolist() == [[True, True, False, False]]
    close(loss2[0, 0], -math.exp(0.5) + 0.5)


def test_top_entropy_mask_keeps_top_fraction_of_valid_tokens() -> None:
    ent = torch.tensor([[0.1, 0.9, 0.5, 2.0], [0.7, 0.2, 3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])  # 3.0 is padding: never selected
    # 6 valid tokens, ceil(0.2*6) = 2 -> the two highest valid entropies: 2.0 and 0.9
    keep = alg.top_entropy_mask(ent, mask, 0.2)
    assert keep.tolist() == [[False, True, False, True], [False, False, False, False]]


# ---- REPO ----------------------------------------------------------------------------------------------------------
def test_centred_logp_exact_raw_and_clamp() -> None:
    logp = torch.tensor([[-0.5, -30.0]])
    ent = torch.tensor([[0.7, 0.2]])
    close(alg.centred_logp(logp, ent, "exact"), [[0.2, -20.0]])  # clamp L = logp + H at -20, after centring
    close(alg.centred_logp(logp, ent, "raw"), [[-0.5, -20.0]])
    with pytest.raises(ValueError):
        alg.centred_logp(logp, None, "exact")


def test_repo_r_by_hand() -> None:
    adv = torch.tensor([[2.0, 2.0, -1.0, -1.0, 0.0, 1.0, -1.0]])
    L = torch.tensor([[-1.0, 0.5, -1.0, 0.5, -3.0, 30.0, -30.0]])
    # zeta 0.1: A>0: A(1 - zeta L): 2*1.1 = 2.2; 2*0.95 = 1.9. A<0: A(1 + zeta L): -1*0.9 = -0.9; -1*1.05 = -1.05.
    # A = 0 -> 0. Sign kept: 1*(1 - 3) = -2 -> 0; -1*(1 - 3) = 2 -> 0.
    close(alg.repo_r_advantages(adv, L, 0.1), [[2.2, 1.9, -0.9, -1.05, 0.0, 0.0, 0.0]])
    # negative zeta reverses the push: A>0 and L<0 -> 2*(1 - 0.1) = 1.8
    close(alg.repo_r_advantages(adv[:, :1], L[:, :1], -0.1), [[1.8]])


def test_repo_r_raises_entropy_direction() -> None:
    # with zeta > 0 a rare good token (L < 0) gets more weight than a likely good token (L > 0)
    out = alg.repo_r_advantages(torch.tensor([1.0, 1.0]), torch.tensor([-2.0, 0.5]), 0.2)
    assert out[0] > 1.0 > out[1]


def test_repo_d_beta_and_advantages_by_hand() -> None:
    logp = torch.tensor([[0.0, math.log(0.5)]])  # pi = 1, 0.5
    L = torch.tensor([[1.0, -2.0]])
    adv = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2)
    # num = 1*1*1 + 0.5*(-2)*1 = 0; den = 1*1 + 0.5*4 = 3 -> beta 0
    assert alg.repo_d_beta(adv, logp, L, mask) == pytest.approx(0.0)
    adv2 = torch.tensor([[2.0, 1.0]])  # num = 2 - 1 = 1 -> beta = 1/3
    assert alg.repo_d_beta(adv2, logp, L, mask) == pytest.approx(1 / 3)
    assert alg.repo_d_beta(adv2, logp, torch.zeros(1, 2), mask) == 0.0  # vanishing denominator
    # A~ = A - zeta*beta*L = [2 - 0.5*(1/3)*1, 1 - 0.5*(1/3)*(-2)]
    close(alg.repo_d_advantages(adv2, L, 0.5, 1 / 3), [[2 - 1 / 6, 1 + 1 / 3]])


# ---- controllers ---------------------------------------------------------------------------------------------------
def test_zeta_controller_low_entropy() -> None:
    up = lambda z: alg.zeta_update(z, entropy=0.5, target=1.0, zeta_min=1e-4, zeta_max=0.05)  # noqa: E731
    assert up(1e-3) == pytest.approx(2e-3)  # doubles
    assert up(0.04) == pytest.approx(0.05)  # capped at zeta_max
    assert up(0.0) == pytest.approx(1e-4)  # 0 starts at +zeta_min
    assert up(-1e-3) == pytest.approx(-5e-4)  # a negative zeta halves toward 0
    assert up(-1.5e-4) == pytest.approx(1e-4)  # |-0.75e-4| < zeta_min -> flips to +zeta_min


def test_zeta_controller_high_entropy_mirror() -> None:
    down = lambda z: alg.zeta_update(z, entropy=1.5, target=1.0, zeta_min=1e-4, zeta_max=0.05)  # noqa: E731
    assert down(1e-3) == pytest.approx(5e-4)  # halves
    assert down(1.5e-4) == pytest.approx(-1e-4)  # would fall below zeta_min -> flips to -zeta_min
    assert down(-1e-3) == pytest.approx(-2e-3)  # doubles in magnitude
    assert down(-0.04) == pytest.approx(-0.05)  # capped at -zeta_max
    assert alg.zeta_update(0.01, 1.0, 1.0, 1e-4, 0.05) == 0.01  # at target: unchanged


def test_zeta_controller_sequence() -> None:
    z, seen = 1e-3, []
    for h in [0.5] * 8:  # entropy stays low: 2e-3, 4e-3, ... capped at 0.05
        z = alg.zeta_update(z, h, 1.0, 1e-4, 0.05)
        seen.append(z)
    assert seen[:3] == pytest.approx([2e-3, 4e-3, 8e-3]) and seen[-1] == pytest.approx(0.05)


def test_adapo_controller_multiplicative_with_bounds() -> None:
    assert alg.adapo_update(0.28, 0.5, 1.0, 1.25, 0.2, 1.0) == pytest.approx(0.35)  # 0.28 * 1.25
    assert alg.adapo_update(0.9, 0.5, 1.0, 1.25, 0.2, 1.0) == pytest.approx(1.0)  # capped at eps_max
    assert alg.adapo_update(0.28, 1.5, 1.0, 1.25, 0.2, 1.0) == pytest.approx(0.224)  # 0.28 / 1.25
    assert alg.adapo_update(0.22, 1.5, 1.0, 1.25, 0.2, 1.0) == pytest.approx(0.2)  # floored at eps_min
    assert alg.adapo_update(0.3, 1.0, 1.0, 1.25, 0.2, 1.0) == 0.3


def test_adaptive_entropy_coefficient() -> None:
    assert alg.entropy_coef_update(0.0, 0.5, 1.0, 0.005, 1.0) == pytest.approx(0.005)  # below target: +delta
    assert alg.entropy_coef_update(0.003, 1.5, 1.0, 0.005, 1.0) == 0.0  # above: -delta, clipped at 0
    assert alg.entropy_coef_update(0.998, 0.5, 1.0, 0.005, 1.0) == 1.0  # clipped at max
    assert alg.entropy_coef_update(0.5, 1.0, 1.0, 0.005, 1.0) == pytest.approx(0.495)  # at target: -delta


def test_band_target_steers_only_outside_the_band() -> None:
    assert alg.band_target(0.3, 0.4, 0.6) == 0.4  # below: aim at the lower edge
    assert alg.band_target(0.9, 0.4, 0.6) == 0.6  # above: aim at the upper edge
    assert alg.band_target(0.5, 0.4, 0.6) == 0.5  # inside: the entropy itself, so every controller holds
    # through the controllers: zeta doubles below the band, halves above it, holds inside
    assert alg.zeta_update(0.01, 0.3, alg.band_target(0.3, 0.4, 0.6), 1e-4, 0.5) == pytest.approx(0.02)
    assert alg.zeta_update(0.01, 0.9, alg.band_target(0.9, 0.4, 0.6), 1e-4, 0.5) == pytest.approx(0.005)
    assert alg.zeta_update(0.01, 0.5, alg.band_target(0.5, 0.4, 0.6), 1e-4, 0.5) == 0.01
    assert alg.adapo_update(0.3, 0.5, alg.band_target(0.5, 0.4, 0.6), 1.25, 0.2, 1.0) == 0.3


def test_clip_high_lever_by_hand() -> None:
    # ratios 1.5 (A>0: binds, L = -1 + 0.5 = -0.5), 1.5 (A>0: binds, L = -0.2 + 0.9 = 0.7), 1.5 (A<0: no),
    # 1.1 (A>0: under 1.2, no), 1.5 (A>0, masked out) -> mean L over the two binding tokens = (-0.5 + 0.7) / 2 = 0.1
    logp = torch.tensor([[-1.0, -0.2, -1.0, -1.0, -1.0]])
    old = logp - torch.tensor([[math.log(1.5), math.log(1.5), math.log(1.5), math.log(1.1), math.log(1.5)]])
    ent = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.5]])
    adv = torch.tensor([[1.0, 1.0, -1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    assert alg.clip_high_lever(logp, old, ent, adv, mask, 0.2) == pytest.approx(0.1)
    assert math.isnan(alg.clip_high_lever(logp, old, ent, adv, mask, 0.6))  # binds nowhere
