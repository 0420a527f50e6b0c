"""Collect the micro-batches of one optimizer step and record them as one step of a :class:`Watch`.

Trainers run several loss forwards per optimizer step (gradient accumulation, TRL's ``steps_per_generation``,
OpenRLHF's micro-batches). The adapters feed each one to :meth:`StepAccumulator.add` as it happens and call
:meth:`StepAccumulator.flush` once the optimizer step is done:

* per micro-batch, the token work runs on the device and ends as :class:`~entropy_watch.hooks.stats.TokenSums`,
  all-reduced over the data-parallel group right away (every rank runs every loss forward, so the collectives line
  up, as in TRL's own ``accelerator.reduce`` of the same numbers);
* at flush, the sums are merged: the histogram, token count, quantiles, extremes, advantage moments and covariance
  terms are those of all the step's tokens on all ranks;
* the quantities the trainer logs itself (``mirror``: TRL's ``entropy`` and ``clip_ratio/*``) are, like the trainer
  does, the mean over micro-batches of each micro-batch's token mean, so the recorded value equals the trainer's for
  the same step. With one micro-batch per step both rules give the same number.

Only O(bins + scalars) numbers leave the device, once per micro-batch when ``mirror`` is used with accumulation and
once per step otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from entropy_watch import metrics as M

# Quantities logged by TRL as a per-micro-batch token mean, then averaged over the micro-batches of the window.
TRL_MIRRORED: tuple[str, ...] = (M.ENTROPY_MEAN, M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.CLIP_REGION_FRAC)


class StepAccumulator:
    """Micro-batch statistics of the current optimizer step of ``watch``.

    Args:
        watch: the :class:`~entropy_watch.hooks.Watch` that records (its edges, reduction group and recorder).
        mirror: names whose step value is the mean of the micro-batch values instead of the token-weighted one.
        vocab_size: V for the histogram edges when ``watch`` has none yet.
    """

    def __init__(self, watch: Any, *, mirror: Iterable[str] = (), vocab_size: int | None = None) -> None:
        self.watch = watch
        self.mirror = tuple(mirror)
        if getattr(watch, "_edges", None) is None:
            watch._fix_edges(vocab_size)
        self.drop: set[str] = set()  # names that do not apply to this trainer's loss (e.g. clip under SAPO)
        self._sums: list[Any] = []
        self._extra: list[dict[str, float]] = []
        self._tokens: list[dict[str, Any]] = []
        self._n_steps = 0
        self._left_out: set[str] = set()  # inputs of this step's micro-batches left out on this rank (drop_unusable)
        self.last_left_out: frozenset[str] = frozenset()  # those of the step flush recorded last
        self.calls = 0  # add() calls: each takes part in one micro-batch's collectives, even when it refuses

    def join_refused(self, like: Any = None) -> None:
        """A micro-batch refused before :meth:`add` (the adapter failed reading its inputs): take part in its
        collectives with no tokens, as ``add`` does when it refuses, so the other ranks neither hang nor pair it
        with this rank's next micro-batch."""
        from entropy_watch.hooks.stats import join_refused

        w = self.watch
        join_refused(w._edges, w.process_group if w.reduce else False, like)

    @property
    def pending(self) -> int:
        """Micro-batches added since the last flush."""
        return len(self._sums)

    def add(
        self,
        entropy: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        step: int,
        logp: torch.Tensor | None = None,
        old_logp: torch.Tensor | None = None,
        advantages: torch.Tensor | None = None,
        eps_low: float = 0.2,
        eps_high: float = 0.2,
        dual_clip: float | None = None,
        token_ids: torch.Tensor | None = None,
        tokenizer: Any = None,
        extra: dict[str, float] | None = None,
    ) -> None:
        """Reduce one micro-batch. Shapes as :func:`~entropy_watch.hooks.stats.step_stats` (``(B, T)``, adv ``(B,)``).

        ``extra``: per-micro-batch values of mirrored names computed by the adapter (e.g. sequence-level clip
        fractions), which replace the token-level ones of this micro-batch; ``clip/onpolicy`` in it replaces the
        token-level verdict (the step is on-policy only if every micro-batch of every rank is).

        An optional input that does not fit the entropy (``logp``, ``old_logp``, ``advantages``, ``token_ids``:
        ``token_batch.drop_unusable``, as ``Watch.log_tokens``) is left out alone: the micro-batch is recorded without
        it (and without ``extra``, computed from the same inputs) and one failure is counted (``LeftOut``, raised
        after recording under strict). A step with ``old_logp`` left out of a micro-batch, on any rank, is never
        "on-policy": its ``clip/onpolicy`` is 0 when another micro-batch is off-policy, else not recorded.
        :attr:`last_left_out` names the inputs this rank left out of the step :meth:`flush` recorded last.
        """
        from entropy_watch.hooks.stats import note_verdicts, reduce_sums, sample_token_rows, stamp_step, token_sums
        from entropy_watch.hooks.token_batch import OPTIONAL, LeftOut, drop_unusable, prepare_batch

        w = self.watch
        w._check_group(int(step))  # after destroy_process_group: this rank's tokens alone are not the step's
        self.calls += 1
        with torch.no_grad():
            d = lambda t: None if t is None else t.detach()  # noqa: E731
            group = w.process_group if w.reduce else False
            try:
                given = {"logp": d(logp), "old_logp": d(old_logp), "advantages": d(advantages), "group_ids": None}
                given["token_ids"] = d(token_ids)
                left_out = drop_unusable(entropy, given)
                batch = prepare_batch(d(entropy), d(mask), *(given[k] for k in OPTIONAL))
                sums = token_sums(batch, w._edges, eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip)
                passed = {"logp": logp, "old_logp": old_logp, "advantages": advantages}
                lost = {k for k, t in passed.items() if t is not None and given[k] is None}  # extra is computed from
                extra = {} if lost else dict(extra or {})  # these: not this micro-batch's when one was left out
                # verdicts ride in the sums: the writing rank must see another rank's unknown or off-policy one
                note_verdicts(sums, unknown="old_logp" in lost, onpolicy=extra.get(M.CLIP_ONPOLICY))
                stamp_step(sums, int(step))
            except Exception:
                self.join_refused(entropy)  # the other ranks are in this micro-batch's collectives
                raise
            self._sums.append(reduce_sums(sums, group))
            self._extra.append(extra)
            self._left_out |= lost
            if not self._tokens and w.sample_tokens and self._n_steps % w.token_every == 0:
                self._tokens = sample_token_rows(
                    batch,
                    w.sample_tokens,
                    step=int(step),
                    tokenizer=tokenizer,
                    eps_low=float(eps_low),
                    eps_high=float(eps_high),
                    dual_clip=dual_clip,
                )
        if left_out:
            w.failure(
                "StepAccumulator.add", LeftOut(f"step {step}: {'; '.join(left_out)}; left out, the rest recorded")
            )

    def flush(self, step: int) -> dict[str, float]:
        """Record the step's statistics under ``step`` and reset; returns the scalars (empty when nothing pending)."""
        from entropy_watch.hooks.stats import finalize

        if not self._sums:
            return {}
        sums, extras, tokens, self.last_left_out = self._sums, self._extra, self._tokens, frozenset(self._left_out)
        self._sums, self._extra, self._tokens, self._left_out = [], [], [], set()
        self._n_steps += 1
        edges = self.watch._edges
        merged = sums[0]
        for s in sums[1:]:
            merged = merged.merge(s)
        scalars, hist = finalize(merged, edges)  # clip/onpolicy: every rank's verdicts, known or not (note_verdicts)
        if self.mirror:
            per_micro = [finalize(s, edges)[0] if len(sums) > 1 else dict(scalars) for s in sums]
            for micro, extra in zip(per_micro, extras, strict=True):
                micro.update({k: v for k, v in extra.items() if k != M.CLIP_ONPOLICY})
            scalars.update(_mean_over_micro(per_micro, self.mirror))
        for name in self.drop:
            scalars.pop(name, None)
        rec = getattr(self.watch, "_recorder", None)
        if rec is not None:
            rec.scalars(step, scalars)
            if int(np.sum(hist)):
                rec.hist(step, hist)
            if tokens:
                rec.tokens(tokens)
        return scalars


def _mean_over_micro(per_micro: list[dict[str, float]], names: tuple[str, ...]) -> dict[str, float]:
    """Arithmetic mean of each name over the micro-batches that have it (as TRL's ``log`` averages its lists)."""
    out: dict[str, float] = {}
    for name in names:
        vals = [m[name] for m in per_micro if name in m]
        if vals:
            out[name] = float(sum(vals) / len(vals))
    return out
