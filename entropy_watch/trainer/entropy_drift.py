"""Predicted vs observed entropy change of one iteration's update, measured on that iteration's rollout batch.

    probe = begin_probe(model, ro, precision, temperature, chunks)    # before the optimizer steps
    ...                                                                # the iteration's updates
    predicted, observed = finish_probe(probe, model, ro, precision, temperature, chunks)

``H(θ)`` is the masked mean token entropy (nats/token) of the policy on the batch's completions, at the sampling
temperature, from :func:`entropy_watch.hooks.token_entropy` (with autograd for the gradient). ``begin_probe`` records
``H(θ_before)``, ``g_H = ∇_θ H(θ_before)`` and ``θ_before``; ``finish_probe`` returns the first-order prediction
``g_H · (θ_after − θ_before)`` and the observed ``H(θ_after) − H(θ_before)`` on the same batch. Neither consumes a
random number nor touches ``param.grad``, so a run's trajectory is the same with or without the probe.

Cost: one forward + backward and one no-grad forward over the batch, in ``chunks`` pieces (the update's mini-batch
size, so peak memory is that of an update step), plus two parameter-sized copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entropy_watch.hooks import token_entropy
from entropy_watch.trainer.rollout import Rollout, completion_forward


@dataclass
class DriftProbe:
    """What ``begin_probe`` measured before the update: ``H`` (nats/token), ``g_H`` and ``θ`` per parameter."""

    entropy: float
    grad: list[torch.Tensor]
    theta: list[torch.Tensor]


def _params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _pieces(batch: Rollout, chunks: int) -> list[Rollout]:
    """``batch`` in ``chunks`` contiguous pieces (deterministic: no shuffle, no random numbers)."""
    n = batch.completion.shape[0]
    idx = torch.arange(n, device=batch.completion.device)
    return [batch.select(i) for i in idx.tensor_split(max(1, min(chunks, n)))]


def _n_tokens(batch: Rollout) -> float:
    return max(float(batch.mask.sum()), 1.0)


def masked_mean_entropy(
    model: torch.nn.Module, batch: Rollout, precision: str, temperature: float, chunks: int
) -> float:
    """Mean token entropy (nats) of ``model`` over the valid completion tokens of ``batch``; no gradient."""
    total = 0.0
    with torch.no_grad():
        for mb in _pieces(batch, chunks):
            logits, mask = completion_forward(model, mb, precision, temperature)  # (B, C, V), (B, C)
            total += float((token_entropy(logits).double() * mask).sum())
    return total / _n_tokens(batch)


def begin_probe(model: torch.nn.Module, batch: Rollout, precision: str, temperature: float, chunks: int) -> DriftProbe:
    """``H``, ``g_H = ∇_θ H`` (summed over pieces, each weighted by 1 / total valid tokens) and a copy of ``θ``."""
    params = _params(model)
    grad = [torch.zeros_like(p) for p in params]
    n_tok, total = _n_tokens(batch), 0.0
    for mb in _pieces(batch, chunks):
        logits, mask = completion_forward(model, mb, precision, temperature)
        # contiguous: the completion slice is not viewable as (B*C, V), so token_entropy would checkpoint each row
        # block separately; one copy of the (B, C, V) slice halves the probe's time on the tiny preset
        logits = logits.contiguous()
        h_sum = (token_entropy(logits) * mask).sum()  # scalar, nats; the gradient flows through token_entropy
        # H itself from the no-grad path, as in masked_mean_entropy, so observed ΔH compares like with like
        total += float((token_entropy(logits.detach()).double() * mask).sum())
        parts = torch.autograd.grad(h_sum / n_tok, params, allow_unused=True)
        for g, part in zip(grad, parts, strict=True):
            if part is not None:
                g.add_(part)
    return DriftProbe(entropy=total / n_tok, grad=grad, theta=[p.detach().clone() for p in params])


def finish_probe(
    probe: DriftProbe, model: torch.nn.Module, batch: Rollout, precision: str, temperature: float, chunks: int
) -> tuple[float, float]:
    """``(predicted ΔH, observed ΔH)`` in nats/token for the update made since ``begin_probe``.

    Predicted: ``g_H · Δθ``, the first-order Taylor term of the network's entropy change. For a softmax policy
    updated by natural PG with step η it reduces to ``−η Cov(log π, A)`` (Cui et al. 2025, arXiv 2505.22617, eq. 2-3);
    here it is exact to first order for any optimizer, because ``Δθ`` is the step actually taken.
    """
    terms = zip(_params(model), probe.grad, probe.theta, strict=True)
    predicted = sum((g.double() * (p.detach().double() - before.double())).sum() for p, g, before in terms)
    observed = masked_mean_entropy(model, batch, precision, temperature, chunks) - probe.entropy
    return float(predicted), observed
