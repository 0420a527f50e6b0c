"""The clip low/high split of verl's ``ew_<mode>`` policy losses, by the rule each registered loss itself clips with.

``clip/low_frac`` and ``clip/high_frac`` mean binding clips: the share of response tokens whose gradient the loss's
clip removes on the A<0 side (raises entropy) and on the A>0 side (lowers it) (``entropy_watch.metrics``). verl's
registry holds losses that clip differently, or not at all, so the split of ``loss_mode=ew_<mode>`` is computed by
the rule of ``<mode>`` as verl 0.9.1's ``core_algos.py`` computes it (:data:`SPLITS`):

* ``vanilla`` (PPO with dual-clip; ``ew_repo_r`` runs it): the token ratio, its log clamped to ±20, A<0 and
  ratio < 1-clip_ratio_low / A>0 and ratio > 1+clip_ratio_high; low + high is verl's ``pg_clipfrac``;
* ``clip_cov``: the same token clip on the unclamped ratio (its ``clip_by_origin``); verl's ``pg_clipfrac`` there is
  the share of the covariance tokens it detaches instead, recorded as ``clip/region_frac``, not low + high;
* ``gspo``: the sequence ratio (masked mean log-ratio of each row, clamped to 10 above) against the same bounds, as
  the OpenRLHF hook splits GSPO; low + high is verl's ``pg_clipfrac``;
* ``geo_mean`` (GMPO): the token log-ratio clipped in log space, A<0 and log-ratio < -clip_ratio_low / A>0 and
  log-ratio > clip_ratio_high (what binds in its ``min``; verl's two fractions count every token outside the range);
* ``dppo_tv`` / ``dppo_kl``: the tokens its trust-region mask drops, A<0 (probability fell past clip_ratio_low, in TV
  or binary KL) / A>0 (rose past clip_ratio_high); verl's ``pg_clipfrac`` also counts A=0 tokens, which carry no
  gradient.

No split (:data:`NO_SPLIT` says why, in the one warning :func:`no_split_warning` writes): ``cispo`` bounds an
importance weight of every token whatever its advantage and never removes a gradient; ``sapo`` gates smoothly; ``gpg``,
``dro`` and ``kl_cov`` do not clip; ``bypass_mode`` drops rejected tokens from the mask and may run REINFORCE. A mode
not listed (a later verl's, a recipe's) gets no split either: the rule is never guessed. verl's own
``actor/pg_clipfrac``, where the loss logs one, is still recorded as ``clip/region_frac``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from entropy_watch.hooks.stats import clip_masks  # the one implementation of PPO's clip rule

# (log_prob, old_log_prob, advantages, valid, eps_low, eps_high) -> boolean (low, high) masks, shapes (B, L)
Rule = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float, float], tuple[torch.Tensor, ...]]


def _ppo(new: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, valid: torch.Tensor, lo: float, hi: float) -> Any:
    """vanilla: ``negative_approx_kl`` clamped to ±20, then PPO's rule (``pg_losses2 > pg_losses1``)."""
    return clip_masks(torch.clamp(new - old, min=-20.0, max=20.0), adv, valid, lo, hi)[:2]


def _ppo_unclamped(new: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, valid: torch.Tensor, lo: float,
                   hi: float) -> Any:  # fmt: skip
    """clip_cov: ``ratio = exp(log_prob - old_log_prob)`` without the clamp, PPO's rule (``clip_by_origin``)."""
    return clip_masks(new - old, adv, valid, lo, hi)[:2]


def _gspo(new: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, valid: torch.Tensor, lo: float, hi: float) -> Any:
    """gspo: ``sum((log_prob - old) * mask, -1) / mask.sum(-1).clamp(min=1)``, clamped to 10 above, per row."""
    m = valid.to(new.dtype)
    seq = ((new - old) * m).sum(-1) / m.sum(-1).clamp(min=1)
    return clip_masks(torch.clamp(seq, max=10.0).unsqueeze(-1).expand_as(new), adv, valid, lo, hi)[:2]


def _geo_mean(new: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, valid: torch.Tensor, lo: float,
              hi: float) -> Any:  # fmt: skip
    """geo_mean: ``sgn(A) * min(sgn(A) * x, sgn(A) * clamp(x, -lo, hi))`` binds where A<0, x < -lo or A>0, x > hi."""
    x = new - old
    return valid & (adv < 0) & (x < -lo), valid & (adv > 0) & (x > hi)


def _dppo(divergence: str) -> Rule:
    """dppo_tv / dppo_kl: the tokens ``valid_mask`` drops, ``torch.where(A > 0, valid_positive, valid_negative)``."""

    def rule(new: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, valid: torch.Tensor, lo: float,
             hi: float) -> Any:  # fmt: skip
        prob, old_prob = torch.exp(new), torch.exp(old)
        if divergence == "tv":
            keep_pos, keep_neg = (prob - old_prob) <= hi, (prob - old_prob) >= -lo
        else:
            kl = old_prob * (old - new) + (1 - old_prob) * torch.log((1.0 - old_prob + 1e-8) / (1.0 - prob + 1e-8))
            keep_pos, keep_neg = (kl <= hi) | (prob <= old_prob), (kl <= lo) | (prob >= old_prob)
        return valid & (adv < 0) & ~keep_neg, valid & (adv > 0) & ~keep_pos

    return rule


SPLITS: dict[str, Rule] = {
    "vanilla": _ppo,
    "clip_cov": _ppo_unclamped,
    "gspo": _gspo,
    "geo_mean": _geo_mean,
    "dppo_tv": _dppo("tv"),
    "dppo_kl": _dppo("kl"),
}

NO_SPLIT = {
    "cispo": "CISPO clips an importance weight of every token, whatever its advantage's sign, and removes no gradient",
    "sapo": "SAPO gates the ratio smoothly and clips nothing",
    "gpg": "GPG's loss has no ratio and clips nothing",
    "dro": "DRO penalises the log-ratio and clips nothing",
    "kl_cov": "KL-Cov penalises high-covariance tokens and clips nothing",
    "bypass_mode": "bypass mode drops rejected tokens from the mask and may run REINFORCE",
}


def clip_params(config: Any) -> tuple[float, float]:
    """``(clip_ratio_low, clip_ratio_high)`` as verl's losses read them: each falls back to ``clip_ratio``."""
    get = (lambda k, d=None: config.get(k, d)) if hasattr(config, "get") else (lambda k, d=None: getattr(config, k, d))
    base = get("clip_ratio", 0.2)
    low, high = get("clip_ratio_low", None), get("clip_ratio_high", None)
    return float(base if low is None else low), float(base if high is None else high)


def clip_split(
    mode: str,
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    config: Any,
) -> tuple[float, float] | None:
    """Binding clip-low and clip-high shares over response tokens by ``mode``'s own rule; None where it has none.

    Shapes ``(B, L)``; the shares are over ``response_mask``'s tokens, as verl's ``masked_mean``."""
    rule = SPLITS.get(mode)
    if rule is None:
        return None
    with torch.no_grad():
        valid = response_mask.bool()
        new, old = log_prob.detach(), old_log_prob.detach()
        low, high = rule(new, old, advantages.detach(), valid, *clip_params(config))
        n = valid.sum().clamp(min=1).float()
        return float(low.sum() / n), float(high.sum() / n)


def no_split_warning(name: str, mode: str, metrics: dict[str, Any]) -> str:
    """The one warning of ``loss_mode=name`` whose base loss ``mode`` has no low/high split; ``metrics``: its return."""
    why = NO_SPLIT.get(mode, f"entropy_watch does not know how verl's {mode!r} loss clips")
    kept = (
        "verl's own actor/pg_clipfrac still stands as clip/region_frac"
        if "actor/pg_clipfrac" in metrics
        else "this loss logs no actor/pg_clipfrac, so no clip fraction is recorded"
    )
    return (
        f"entropy_watch: loss_mode={name}: {why}, so no clip low/high split (clip/low_frac, clip/high_frac) is "
        f"recorded; {kept}"
    )
