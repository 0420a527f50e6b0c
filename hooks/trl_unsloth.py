"""Unsloth's GRPO trainer under :func:`entropy_watch.hooks.trl.attach`: what its fused loss leaves to record.

Read from ``unsloth`` 2026.10.9 and ``unsloth_zoo`` 2026.10.9 (PyPI; they take TRL 0.18.2 to 1.15). ``unsloth``
replaces TRL's ``GRPOTrainer`` by a generated ``UnslothGRPOTrainer`` (``unsloth/models/rl.py``,
``_patch_trl_rl_trainers``): a copy of TRL's class, not a subclass, whose ``compute_loss`` and
``_get_per_token_logps_and_entropies`` are Unsloth's (``unsloth/models/rl_replacements.py``,
``grpo_trainer_compute_loss`` and ``grpo_trainer__get_per_token_logps_and_entropies``):

* ``compute_loss`` calls the log-prob method with ``compute_efficient=True``, which returns ``(None, None)`` without a
  forward, and runs the loss forward inside ``unsloth_zoo.rl_replacements.grpo_accumulated_loss`` (a fused
  autograd function); it computes entropies there only for ``top_entropy_quantile < 1`` or an entropy bonus, and hands
  none back;
* the log-prob method computes no entropy on any path (the old and reference passes: ``entropies = None``);
* Unsloth logs TRL's ``clip_ratio/*`` (from the fused loss's ratio), ``kl`` and ``completion_length``, and no
  ``entropy``.

So there is no full-vocabulary entropy to record, and the usual seam (the first log-prob call inside
``compute_loss`` that carries entropy) never fires. What the batch still shows is read from ``compute_loss``'s
inputs, per micro-batch: the advantages (``adv/*``) and, where TRL computed log-probs of the sampled tokens before
the update (``old_per_token_logps``: ``num_iterations > 1``, a generation batch spanning optimizer steps, or vLLM's
importance-sampling correction; else vLLM's own ``sampling_per_token_logps``), their negative mean,
``entropy/sampled_nll``: an unbiased estimate of the sampling policy's entropy at the sampling temperature
(``E_{a~pi}[-log pi(a)] = H(pi)``), the series the analysis reads when ``entropy/mean`` is absent. The sums are
reduced over the data-parallel group at each optimizer step's end (every rank calls :meth:`InputStats.flush` there), by
the rules of ``hooks.stats`` (one implementation of the token math).

The trainer is told by its seam, not its name: a log-prob method that takes ``compute_efficient`` (:func:`fused_loss`).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from entropy_watch import metrics as M
from entropy_watch.histogram import entropy_bin_edges
from entropy_watch.hooks.distributed import collective_device, reduction_group
from entropy_watch.hooks.stats import empty_sums, finalize, reduce_sums, stamp_step, token_sums
from entropy_watch.hooks.token_batch import LeftOut, drop_unusable, prepare_batch

FUSED_PARAM = "compute_efficient"  # Unsloth's log-prob methods take it; TRL's never did (0.20 -> 1.16)
LOGPS_METHODS = ("_get_per_token_logps_and_entropies", "_get_per_token_logps")  # the second: TRL < 0.18's name
# what the inputs give: the sampled tokens' NLL (from log-probs before the update) and the advantages
RECORDED = (M.TOKENS_COUNT, M.ENTROPY_SAMPLED_NLL, M.ADV_MEAN, M.ADV_STD, M.ADV_MIN, M.ADV_MAX)
ENTROPY_DEFINITION = (
    "sampled-token NLL of pi_old (TRL's old log-probs); no full-vocabulary entropy (Unsloth's fused loss)"
)


def fused_loss(trainer: Any) -> bool:
    """Whether ``trainer`` computes its loss in Unsloth's fused GRPO kernel: a log-prob method taking
    ``compute_efficient``."""
    for name in LOGPS_METHODS:
        method = getattr(trainer, name, None)
        if callable(method):
            try:
                if FUSED_PARAM in inspect.signature(method).parameters:
                    return True
            except (TypeError, ValueError):  # a builtin or C callable: no signature to read
                continue
    return False


def old_logps_expected(trainer: Any) -> bool:
    """Whether TRL computes log-probs of the sampled tokens before the update for ``trainer``'s config (TRL 0.24-1.16
    ``_generate_and_score_completions``; Unsloth keeps the gate): ``gradient_accumulation_steps`` not a multiple of
    ``steps_per_generation x num_iterations``, or vLLM with its importance-sampling correction."""
    args = trainer.args
    accum = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
    per_generation = int(getattr(args, "steps_per_generation", None) or accum)
    passes = int(getattr(trainer, "num_iterations", getattr(args, "num_iterations", 1)) or 1)
    correction = bool(
        getattr(trainer, "vllm_importance_sampling_correction", getattr(args, "vllm_importance_sampling_correction", 0))
    )
    return accum % (per_generation * passes) != 0 or (uses_vllm(trainer) and correction)


def uses_vllm(trainer: Any) -> bool:
    """Whether ``trainer`` generates with vLLM (``use_vllm``)."""
    return bool(getattr(trainer, "use_vllm", getattr(trainer.args, "use_vllm", False)))


def note(trainer: Any) -> str:
    """The one warning ``attach`` gives for a fused trainer: what is recorded and what is not. Under vLLM without its
    importance-sampling correction the inputs carry vLLM's sampling log-probs from TRL 0.27 on (its
    ``_generate_and_score_completions`` keeps them whenever vLLM returned them), never before; TRL's version is not
    sniffed here, so the warning names both."""
    if old_logps_expected(trainer):
        where = "from the sampled tokens' log-probs before the update (TRL's old log-probs, else vLLM's)"
    elif uses_vllm(trainer):
        where = (
            "from vLLM's sampling log-probs, which TRL >= 0.27 passes to the loss whenever it generates with vLLM "
            "(TRL < 0.27 only with vllm_importance_sampling_correction, off here: then no entropy series is recorded)"
        )
    else:
        where = (
            "where TRL passes the sampled tokens' log-probs before the update, which this config does not compute "
            "(gradient_accumulation_steps a multiple of steps_per_generation x num_iterations, no vLLM): no entropy "
            "series is recorded"
        )
    return (
        f"{type(trainer).__name__} computes its loss in Unsloth's fused kernel (unsloth_zoo grpo_accumulated_loss), "
        "which hands back no log-probs or entropies and logs no entropy: entropy/mean, its histogram and quantiles, "
        "recomputed clip fractions and cov/* are not recorded; recorded: Unsloth's logged scalars (clip_ratio/* as "
        f"clip/*, kl, lengths, rewards), adv/* from the loss's inputs, and entropy/sampled_nll {where}"
    )


class InputStats:
    """One optimizer step's statistics of what a fused loss's inputs show: the advantages and the sampled tokens'
    log-probs before the update, by the rules of ``hooks.stats`` (``token_sums``: token means over the valid, finite
    tokens), the entropy slots left empty (zeros, never recorded), as OpenRLHF's loss without entropy does.

    :meth:`add` per micro-batch (on its device, no host read); :meth:`flush` at every optimizer step's end on every
    rank: under a reducing ``watch`` it all-reduces the step's sums (``reduce_sums``), then the writer records them.
    """

    def __init__(self, watch: Any) -> None:
        self.watch = watch
        self.pending = 0  # micro-batches added since the last flush
        self._sums: Any = None  # hooks.stats.TokenSums of those micro-batches, merged
        self._device: torch.device | None = None  # where this rank's collectives run (the inputs' device)

    def add(self, inputs: Any) -> None:
        """One micro-batch: ``completion_mask (B, T)`` (times ``tool_mask``), ``advantages (B,) | (B, T)`` and
        ``old_per_token_logps (B, T)`` (else ``sampling_per_token_logps``), each optional but the mask. An input that
        does not fit the mask is left out alone (``LeftOut`` raised after the rest is added)."""
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        logps = inputs.get("old_per_token_logps")
        logps = inputs.get("sampling_per_token_logps") if logps is None else logps
        with torch.no_grad():
            d = lambda t: t.detach() if isinstance(t, torch.Tensor) else None  # noqa: E731
            given = {"logp": d(logps), "advantages": d(inputs.get("advantages"))}
            zeros = torch.zeros(tuple(mask.shape), dtype=torch.float32, device=mask.device)  # no entropy: empty slots
            left_out = drop_unusable(zeros, given)
            batch = prepare_batch(zeros, mask.detach(), logp=given["logp"], advantages=given["advantages"])
            sums = token_sums(batch, self._edges())
            self._sums = sums if self._sums is None else self._sums.merge(sums)
            self._device = zeros.device
            self.pending += 1
        if left_out:
            raise LeftOut(f"{'; '.join(left_out)}; the micro-batch's other inputs were recorded")

    def reset(self) -> int:
        """Drop what was added since the last flush; returns how many micro-batches that was."""
        dropped, self.pending, self._sums = self.pending, 0, None
        return dropped

    def flush(self, step: int) -> dict[str, float]:
        """Record the step's scalars under ``step`` and reset; returns them (empty when nothing was added on any
        rank). Call it on every rank at every optimizer step's end: under a reducing ``watch`` it is a collective."""
        sums = self._sums
        self.reset()
        process_group = self.watch.process_group if self.watch.reduce else False
        group = reduction_group(process_group)
        if sums is None and group is None:
            return {}
        edges = self._edges()
        if sums is None:  # this rank saw no micro-batch: it still joins the others' reduction
            sums = empty_sums(edges, self._device or collective_device(group))
        scalars, _ = finalize(reduce_sums(stamp_step(sums, int(step)), process_group), edges)
        out = {k: scalars[k] for k in RECORDED if k in scalars}
        if out.get(M.TOKENS_COUNT):
            self.watch.log_dict(step, out)
        return out

    def _edges(self) -> Any:
        edges = getattr(self.watch, "_edges", None)
        return edges if edges is not None else entropy_bin_edges()
