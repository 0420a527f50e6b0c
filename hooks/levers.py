"""The entropy levers as small pure functions, shared by the reference trainer and ``attach(trainer, control=...)``.

REPO (Petrenko et al. 2026, arXiv 2603.11682) replaces the advantage by ``A~ = A - beta*L`` with the centred
log-prob ``L = log pi + H``; REPO-R takes ``beta = zeta*|A|``. The controllers are pure per-step updates
``state -> state`` on floats: REPO's zeta (paper App. D.2 as in SkyRL PR #1896), ADAPO's eps_high (our choice; the
paper's form is not public) and the band target that turns either into "keep entropy in [low, high]". Shapes:
``(B, T)`` per-token tensors; log-probs and entropies in nats. ALGORITHMS.md states every formula; ``docs/papers.md``
maps each to its source. ``entropy_watch.trainer.algorithms`` re-exports them next to the other algorithms.
"""

from __future__ import annotations

import torch

L_CLAMP = -20.0  # REPO: L is detached and clamped at -20 (SkyRL PR #1896, ppo_utils.py)


# ---- REPO-R: advantage modification ---------------------------------------------------------------------------------
def centred_logp(logp: torch.Tensor, entropy: torch.Tensor | None, centering: str) -> torch.Tensor:
    """REPO's ``L`` ``(B, T)``, detached, clamped at -20: ``logp + H`` (exact, zero mean under pi) or ``logp`` (raw).

    The clamp applies to ``L`` itself, once, after centring (ALGORITHMS.md): it bounds how far one improbable token can
    move its advantage. Clamping ``logp`` before adding ``H`` moved an ``L`` that was inside the bound (``logp = -25``,
    ``H = 10``: ``L = -15``, read as ``-10``); in raw mode ``L = logp`` and the two orders agree (SkyRL's clamp).
    """
    lp = logp.detach()
    if centering == "raw":
        return lp.clamp(min=L_CLAMP)
    if entropy is None:
        raise ValueError("exact centring needs the per-token entropy")
    return (lp + entropy.detach()).clamp(min=L_CLAMP)


def repo_r_advantages(adv: torch.Tensor, L: torch.Tensor, zeta: float) -> torch.Tensor:
    """REPO-R: ``A~ = A - zeta*|A|*L``, i.e. ``A(1 - zeta L)`` for A > 0 and ``A(1 + zeta L)`` for A < 0, clamped so
    A~ keeps the sign of A; A~ = 0 where A = 0. ``adv`` and ``L`` are ``(B, T)``.
    """
    out = adv - zeta * adv.abs() * L
    return torch.where(adv > 0, out.clamp(min=0.0), torch.where(adv < 0, out.clamp(max=0.0), torch.zeros_like(out)))


# ---- controllers: pure per-step updates ------------------------------------------------------------------------------
def zeta_update(zeta: float, entropy: float, target: float, zeta_min: float, zeta_max: float) -> float:
    """REPO's zeta controller (paper App. D.2 as in SkyRL PR #1896).

    Entropy below target: double a positive zeta (cap zeta_max), halve a negative one and flip it to +zeta_min once
    its magnitude would fall below zeta_min (0 becomes +zeta_min). Above target: the mirror image.
    """
    if entropy < target:
        if zeta > 0:
            return min(2.0 * zeta, zeta_max)
        half = zeta / 2.0
        return half if -half >= zeta_min else zeta_min
    if entropy > target:
        if zeta < 0:
            return max(2.0 * zeta, -zeta_max)
        half = zeta / 2.0
        return half if half >= zeta_min else -zeta_min
    return zeta


def adapo_update(eps_high: float, entropy: float, target: float, kappa: float, eps_min: float, eps_max: float) -> float:
    """ADAPO's eps_high controller (our choice, multiplicative): below target ``min(eps_max, eps*kappa)``, above
    target ``max(eps_min, eps/kappa)``, unchanged at the target."""
    if entropy < target:
        return min(eps_max, eps_high * kappa)
    if entropy > target:
        return max(eps_min, eps_high / kappa)
    return eps_high


def band_target(entropy: float, low: float, high: float) -> float:
    """The target a controller steers to when entropy should stay inside ``[low, high]`` (a target with tolerance):
    ``low`` below the band, ``high`` above it, and ``entropy`` itself inside, so the update leaves the lever as it is
    (``zeta_update`` and ``adapo_update`` hold their state at the target). Our choice: no dead-band controller is
    published for REPO or ADAPO; this one reuses theirs unchanged."""
    if entropy < low:
        return low
    if entropy > high:
        return high
    return entropy
