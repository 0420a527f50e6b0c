"""The algorithms as small pure functions: tensors in, advantages, masks or per-token losses out.

Shapes: ``N`` sequences of a rollout batch (``N = prompts * G``, groups contiguous), ``(B, T)`` per-token tensors of
a mini-batch, ``mask (B, T)`` 1.0 on valid completion tokens. Log-probs and entropies are in nats. ALGORITHMS.md
states every formula; ``docs/papers.md`` maps each to its paper or says "our choice". Controllers are pure update
functions ``state -> state`` called once per iteration by the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# REPO-R and the zeta / eps_high controllers are shared with attach(trainer, control=...): they live one tier down.
from entropy_watch.hooks.levers import (  # noqa: F401 - part of this module's algorithm set
    L_CLAMP,
    adapo_update,
    band_target,
    centred_logp,
    repo_r_advantages,
    zeta_update,
)
from entropy_watch.hooks.stats import clip_masks  # the one implementation of the binding-clip rule


# ---- advantages: rewards (N,) -> advantages (N,) ---------------------------------------------------------------
def grpo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """GRPO (DeepSeekMath eq. 3): ``(r - mean_g r) / (std_g r + 1e-6)``, unbiased std as in verl."""
    r = rewards.view(-1, group_size)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-6)).view(-1)


def dr_grpo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025): ``r - mean_g r``, no std division."""
    r = rewards.view(-1, group_size)
    return (r - r.mean(1, keepdim=True)).view(-1)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO / LOOP: ``r_i - mean_{j != i} r_j``, no std scaling."""
    r = rewards.view(-1, group_size)
    others = (r.sum(1, keepdim=True) - r) / (group_size - 1)
    return (r - others).view(-1)


ADVANTAGES: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
}


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO dynamic sampling: ``(N,) -> (N,)`` bool, False for every member of a group whose rewards are all equal."""
    r = rewards.view(-1, group_size)
    keep = (r.max(1).values - r.min(1).values) > 0
    return keep.repeat_interleave(group_size)


# ---- aggregation: per-token loss (B, T) -> scalar ----------------------------------------------------------------
def token_mean(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DAPO's token-mean: sum over valid tokens / their count."""
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def seq_mean_token_mean(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Original GRPO: mean over sequences of each sequence's token mean (empty sequences count as 0)."""
    per_seq = (loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return per_seq.mean()


AGGREGATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "token-mean": token_mean,
    "seq-mean-token-mean": seq_mean_token_mean,
}


# ---- the clipped surrogate -----------------------------------------------------------------------------------------
def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO/GRPO per-token loss ``-min(rho*A, clip(rho, 1-eps_low, 1+eps_high)*A)`` ``(B, T)``.

    Returns ``(loss, clipped_low, clipped_high)``; the masks mark *binding* clips (Park et al. 2025): A < 0 with
    rho < 1 - eps_low, and A > 0 with rho > 1 + eps_high. Their gradient is zero.
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    with torch.no_grad():
        everywhere = torch.ones_like(adv, dtype=torch.bool)
        low, high, _ = clip_masks((logp - old_logp).detach(), adv.detach(), everywhere, eps_low, eps_high)
    return loss, low, high


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per token: ``exp(ref - logp) - (ref - logp) - 1`` (>= 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


# ---- Cui et al. 2025: covariance-based token selection ----------------------------------------------------------
def token_covariance(adv: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``c_t = (A_t - mean A)(logp_t - mean logp)`` ``(B, T)``, means over valid tokens, all detached."""
    m = mask > 0
    a, lp = adv.detach(), logp.detach()
    n = m.sum().clamp(min=1)
    a_mean = (a * m).sum() / n
    lp_mean = (lp * m).sum() / n
    return (a - a_mean) * (lp - lp_mean) * m


def clip_cov_select(
    cov: torch.Tensor,
    mask: torch.Tensor,
    already_clipped: torch.Tensor,
    ratio: float,
    bounds: tuple[float, float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Clip-Cov: among valid, unclipped tokens with ``lb < c_t < ub``, pick ``max(1, floor(ratio*N))`` at random.

    Returns a bool ``(B, T)`` mask of the tokens whose policy-gradient term is detached (none if no candidates).
    """
    cand = (mask > 0) & ~already_clipped & (cov > bounds[0]) & (cov < bounds[1])
    idx = cand.view(-1).nonzero().squeeze(-1)
    out = torch.zeros_like(cand)
    if idx.numel() == 0:
        return out
    k = min(idx.numel(), max(1, math.floor(ratio * int((mask > 0).sum()))))
    perm = torch.randperm(idx.numel(), generator=generator, device="cpu")[:k].to(idx.device)
    out.view(-1)[idx[perm]] = True
    return out


def kl_cov_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, frac: float, coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """KL-Cov per-token loss ``(B, T)``: ``-A*rho`` (unclipped) everywhere, plus ``coef*|logp - old_logp|`` on the
    top ``max(1, floor(frac*N))`` valid tokens by ``c_t``. ``frac`` is a fraction (2e-3), not a percentage.

    Returns ``(loss, penalised)``.
    """
    ratio = torch.exp(logp - old_logp)
    loss = -adv * ratio
    cov = token_covariance(adv, logp, mask).masked_fill(mask <= 0, float("-inf"))
    n = int((mask > 0).sum())
    pen = torch.zeros_like(mask, dtype=torch.bool)
    if n > 0:
        k = min(n, max(1, math.floor(frac * n)))
        pen.view(-1)[cov.view(-1).topk(k).indices] = True
    return loss + coef * (logp - old_logp).abs() * pen, pen


def top_entropy_mask(entropy: torch.Tensor, mask: torch.Tensor, frac: float) -> torch.Tensor:
    """80/20 rule (Wang et al. 2025): bool ``(B, T)``, True on the ``ceil(frac*N)`` highest-entropy valid tokens."""
    m = mask > 0
    n = int(m.sum())
    out = torch.zeros_like(m)
    if n == 0:
        return out
    k = max(1, math.ceil(frac * n))
    h = entropy.detach().masked_fill(~m, float("-inf"))
    out.view(-1)[h.view(-1).topk(k).indices] = True
    return out


def clip_high_lever(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    entropy: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    eps_high: float,
) -> float:
    """Mean centred log-prob ``L = logp + H`` (nats) of the tokens whose upper clip binds (A > 0, ratio > 1+eps_high).

    The sign of ADAPO's lever, from the softmax entropy identity ``dH/dz_a = -pi(a) L(a)`` (Cui et al. 2025): widening
    eps_high lets these tokens' log-probs keep rising, which raises entropy where ``L < 0`` (rare tokens, the LLM
    case DAPO's clip-higher relies on) and lowers it where ``L > 0``. NaN when the clip binds nowhere. ``(B, T)``.
    """
    _, high, _ = clip_masks((logp - old_logp).detach(), adv.detach(), mask > 0, 0.0, eps_high)
    if not bool(high.any()):
        return float("nan")
    return float((logp.detach() + entropy.detach())[high].mean())


# ---- REPO-D (Petrenko et al. 2026; REPO-R is in hooks/levers.py): A~ = A - beta*L ---------------------------------
def repo_d_beta(adv: torch.Tensor, logp: torch.Tensor, L: torch.Tensor, mask: torch.Tensor) -> float:
    """REPO-D's decorrelation coefficient (our choice): ``mean_t(pi L A) / mean_t(pi L^2)`` over valid tokens, the beta
    that cancels the first-order entropy drift ``dH ~ -E[pi L A] + beta E[pi L^2]``; 0 when the denominator vanishes.
    """
    m = mask > 0
    pi = logp.detach().exp()
    num = (pi * L * adv)[m].sum()
    den = (pi * L * L)[m].sum()
    return float(num / den) if float(den) > 1e-12 else 0.0


def repo_d_advantages(adv: torch.Tensor, L: torch.Tensor, zeta: float, beta_hat: float) -> torch.Tensor:
    """REPO-D (our choice; the paper's form is not public): ``A~ = A - zeta*beta_hat*L``, no sign clamp."""
    return adv - zeta * beta_hat * L


# ---- controllers: pure per-iteration updates -----------------------------------------------------------------------
def entropy_coef_update(coef: float, entropy: float, target: float, delta: float, coef_max: float) -> float:
    """Adaptive entropy bonus (Skywork-OR1, as in TRL): ``+delta`` below target, ``-delta`` otherwise, in [0, max]."""
    coef = coef + delta if entropy < target else coef - delta
    return min(max(coef, 0.0), coef_max)
