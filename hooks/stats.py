"""Per-step token statistics: entropy distribution, clipping, advantages, covariance drivers (DESIGN §4), and the
token rows sampled for the ``tokens`` table (:func:`sample_token_rows`, which labels them with the same clip rule).

``step_stats(entropy, mask, ...)`` runs in three stages so that the numbers are those of the concatenated batch
whatever the number of ranks or micro-batches:

1. :func:`token_sums` — per-token work on the tensors' device, reduced there to a :class:`TokenSums`: a fixed-layout
   float64 vector of counts and sums plus the histogram, a vector of maxima, and one ``(id, min A, max A)`` row per
   advantage group. ``TokenSums.merge`` adds micro-batches.
2. :func:`reduce_sums` — SUM / MAX all-reduce, and a group all-gather when some rank has advantage groups
   (``entropy_watch.hooks.distributed``).
3. :func:`finalize` — one ``.cpu()`` of ``O(bins + scalars)`` numbers, then the canonical scalars.

Token sets: each statistic is over the masked-in tokens whose own inputs are finite — the entropy ones over finite
entropies, the advantage ones over finite advantages, the covariances over tokens where the log-prob, the advantage
and the entropy all are, the ratio and clip ones where both log-probs (and, for clipping, the advantage) are — so a
NaN advantage (a zero-variance group divided without an epsilon) never moves the entropy, and a NaN logit never
moves the advantages. The masked-in tokens whose entropy is not finite are counted in ``entropy/nonfinite_frac``;
when that is every one of them (the logits diverged) ``entropy/mean`` is written as NaN, which the analysis'
non-finite guard alerts on, and nothing else non-finite is ever written. All means are token-weighted (like TRL's
token-mean losses and clip metrics); ``adv/std`` and ``cov/*`` are population moments (divide by n).

Under ``torch.distributed`` every rank must make the same collectives in the same order: a rank whose input is
refused (a wrong shape, a bad step, negative entropies) takes part with the sums of no tokens (:func:`join_refused`,
:func:`reduce_sums`), so the others' statistics are of their own tokens at their own step and nobody waits forever.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from entropy_watch import metrics as M
from entropy_watch.errors import InvalidTensor
from entropy_watch.histogram import entropy_bin_edges, quantiles_from_hist
from entropy_watch.hooks.distributed import all_gather_padded, all_reduce_, collective_device, reduction_group
from entropy_watch.hooks.token_batch import TokenBatch, prepare_batch

# Slots of TokenSums.sums (float64; counts are exact up to 2**53). The histogram follows at index N_SLOTS.
SLOTS = (
    "n_valid", "n_ok", "h_sum", "n_low", "n_high",  # entropy
    "n_logp", "nll_sum",  # sampled-token log-probs
    "n_adv", "adv_sum", "adv_sq_sum",  # advantages
    "n_cov", "cov_logp_sum", "cov_adv_sum", "logp_adv_sum", "pg_drive_sum",  # logp x advantage
    "n_old", "n_offpolicy", "log_ratio_sum", "k3_sum",  # importance ratio
    "n_clip", "n_clip_low", "n_clip_high", "n_dual_base", "n_clip_dual",  # clipping
    "n_negative",  # tokens whose given entropy is below -NEGATIVE_TOL: not an entropy (the step is refused)
    # on-policy verdicts that are not the tokens': batches whose old_logp was left out (unknown: never "on-policy"),
    # and an adapter's own verdicts (StepAccumulator's extra) and how many of them read off-policy; summed like the
    # rest, so the writing rank sees every rank's (a verdict kept on the rank that made it was lost under reduce)
    "n_onpolicy_unknown", "n_verdict", "n_verdict_off",
    # valid tokens whose entropy was computed, not weighted (weigh): this / n_valid is the share a budget sampled
    "n_computed",
    # tokens whose log-probs exist only on a logit-budget sample (Watch): the batch's ratio/max is not known
    "n_ratio_unknown",
)  # fmt: skip
N_SLOTS = len(SLOTS)
# MAX-reduced; -inf when absent. step_max / neg_step_min: the step each rank logs these sums as (stamp_step), so that
# reduce_sums can tell when ranks paired different steps in one collective
MAX_SLOTS = ("adv_max", "neg_adv_min", "ratio_max", "step_max", "neg_step_min")
CLIP_LABELS = ("", "low", "high", "dual")  # the ``clipped`` column of a sampled row; index = code in sample_token_rows
NEGATIVE_TOL = 1e-4  # nats: an entropy computed in low precision may dip below 0 by rounding, not by this much
# nats: a step is on-policy (clip/onpolicy = 1) when |log pi - log pi_old| is at most this on every valid token (the
# rule of finalize, OpenRLHF's and TRL's sequence clip, and verl's ew_* losses: hooks.verl.on_policy). A
# recomputation of the same policy differs by ~1e-7 in fp32 (TRL's first pass over a generation batch), one optimizer
# step by more than 1e-3; a clip binds only past |log ratio| ~ eps (~0.2). bf16 recomputation noise can exceed it:
# such a step reads off-policy, with the same clip fractions.
ONPOLICY_LOG_RATIO_TOL = 1e-4


@dataclass
class StepStats:
    """One step's statistics, ready for the recorder.

    ``scalars``: canonical name -> value (finite; metrics that do not apply are absent, not 0 or NaN);
    ``hist``: int64 counts, shape ``(len(edges),)`` (bin 0 = exactly zero; all zero for a step without tokens);
    ``tokens``: sampled token rows of this rank (see :func:`sample_token_rows`);
    ``n_tokens``: ``tokens/count``, the valid tokens of all ranks; under a logit budget (``token_weight``) the
    weighted estimate of the batch's count, not the tokens computed (``hooks/entropy_sample_frac`` says the share).
    """

    scalars: dict[str, float]
    hist: np.ndarray
    tokens: list[dict[str, Any]] = field(default_factory=list)
    n_tokens: int = 0


@dataclass
class TokenSums:
    """Device-side sufficient statistics of a batch of tokens; adds across micro-batches and ranks.

    ``sums (N_SLOTS + n_bins,)`` float64 (SUM), ``maxes (len(MAX_SLOTS),)`` float64 (MAX), ``group_ids (G,)``
    int64 and ``group_minmax (G, 2)`` float64 (min and max advantage of each group over its valid tokens).
    """

    sums: torch.Tensor
    maxes: torch.Tensor
    group_ids: torch.Tensor
    group_minmax: torch.Tensor

    def merge(self, other: TokenSums) -> TokenSums:
        """Sufficient statistics of both batches together (e.g. the micro-batches of one optimizer step)."""
        ids, minmax = _merge_groups(
            torch.cat([self.group_ids, other.group_ids]), torch.cat([self.group_minmax, other.group_minmax])
        )
        return TokenSums(self.sums + other.sums, torch.maximum(self.maxes, other.maxes), ids, minmax)


def step_stats(
    entropy: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    logp: torch.Tensor | None = None,
    old_logp: torch.Tensor | None = None,
    advantages: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    token_ids: torch.Tensor | None = None,
    tokenizer: Any = None,
    edges: np.ndarray | None = None,
    sample_tokens: int = 8,
    step: int = 0,
    process_group: Any = None,
    onpolicy_unknown: bool = False,
    token_weight: float = 1.0,
    unsampled_mask: torch.Tensor | None = None,
    logp_sampled: bool = False,
) -> StepStats:
    """Statistics of one step's valid tokens, all-reduced over ``process_group``.

    Shapes: ``entropy`` ``(B, T)`` (or flat ``(N,)``) in nats; ``mask``, ``logp``, ``old_logp``, ``token_ids`` the
    same; ``advantages`` the same or ``(B,)`` per sequence; ``group_ids`` ``(B,)`` integer ids of each sequence's
    prompt group (``(N,)`` for flat input). Group ids must mean the same group on every rank (e.g. the prompt's
    index in the global batch): a group split across ranks is merged exactly by all-gathering one
    ``(id, min, max)`` row per local group. ``edges``: histogram edges (default ``entropy_bin_edges()``).
    ``process_group``: None -> the world group when ``torch.distributed`` is initialised; ``False`` -> local only
    (when not every rank calls this). Every rank must pass the same ``edges``, ``eps_*`` and ``dual_clip``.

    Clip fractions follow TRL (``grpo_trainer.py``): low = A<0 and ratio<1-eps_low, high = A>0 and
    ratio>1+eps_high, region = low or high, dual = A<0 and ratio>dual_clip, token means over the valid tokens.
    They exist whenever ``old_logp`` and ``advantages`` are given (0 when the ratio is 1, as TRL logs them), and are
    absent (N/A, not a healthy 0) without ``old_logp``. ``clip/onpolicy`` is 1 without ``old_logp`` (the caller's
    loss takes ``logp`` as its old log-probs: ratio 1) or when ``|logp - old_logp| <= ONPOLICY_LOG_RATIO_TOL`` on every
    valid token (nothing can clip), else 0. A caller whose log-probs are not the update's (verl's driver recomputes
    pi_old before the update) drops it: :attr:`Watch.update_pass`. ``onpolicy_unknown``: this rank's ``old_logp`` was
    given but left out (``token_batch.drop_unusable``): no rank then records ``clip/onpolicy`` = 1 for the step (0
    stays 0: another rank's tokens are off-policy).

    ``token_weight``: how many of this rank's tokens each valid token stands for, when they are a uniform sample of
    ``1 / token_weight`` of them (``Watch``'s logit budget): every token sum and histogram count is multiplied by it
    before the reduction (:func:`weigh`), so ranks that sampled different shares are pooled by their true token
    counts (Horvitz-Thompson), ``tokens/count`` is the estimated count of all of them (exact when every sampled
    entropy is finite) and ``hooks/entropy_sample_frac`` the share of the step's valid tokens computed.
    ``unsampled_mask``: then, the mask of the batch that sample (``mask``) was drawn from (all ones when it had
    none). Extremes and groups are not estimated from a sample: ``adv/min``, ``adv/max``, ``adv/frac_zero_groups``
    and ``ratio/max`` are those of the batch's valid tokens (before, a group with one sampled token read
    zero-variance). ``logp_sampled``: ``logp`` holds the sampled tokens' log-probs only (computed from the sampled
    logits), so the batch's ``ratio/max`` is unknown and absent.
    """
    edges = _check_edges(edges)
    try:
        if not (isinstance(sample_tokens, int) and sample_tokens >= 0):
            raise InvalidTensor(f"step_stats: sample_tokens must be an int >= 0, got {sample_tokens!r}")
        batch = prepare_batch(entropy, mask, logp, old_logp, advantages, group_ids, token_ids)
        whole = None
        if unsampled_mask is not None:  # the batch the sample was drawn from: its extremes and groups
            lp, old = (None, None) if logp_sampled else (logp, old_logp)
            whole = prepare_batch(entropy, unsampled_mask, lp, old, advantages, group_ids)
        sums = token_sums(batch, edges, eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip, whole=whole)
        sums = stamp_step(note_verdicts(weigh(sums, token_weight), unknown=onpolicy_unknown), step)
    except Exception:
        join_refused(edges, process_group, entropy)
        raise
    sums = reduce_sums(sums, process_group)
    scalars, hist = finalize(sums, edges)
    clip = _clip_args(eps_low, eps_high, dual_clip)
    rows = sample_token_rows(batch, sample_tokens, step=step, tokenizer=tokenizer, **clip)
    return StepStats(scalars=scalars, hist=hist, tokens=rows, n_tokens=int(scalars[M.TOKENS_COUNT]))


def token_sums(
    batch: TokenBatch,
    edges: np.ndarray,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    whole: TokenBatch | None = None,
) -> TokenSums:
    """Reduce one prepared batch to its :class:`TokenSums`, on the batch's device (no host sync but group ids).

    ``whole``: when ``batch`` is a sample of it (a logit budget), the batch whose advantage extremes, groups and
    ratio maximum are taken (the sums stay the sample's); without its ``logp`` the ratio maximum is unknown."""
    _clip_args(eps_low, eps_high, dual_clip)
    ok, dev, valid = batch.ok, batch.entropy.device, batch.valid
    n_ok = ok.sum(dtype=torch.float64)
    s: dict[str, torch.Tensor] = {"n_valid": valid.sum(dtype=torch.float64), "n_ok": n_ok}
    s["n_computed"] = s["n_valid"]
    x = {name: torch.tensor(-math.inf, dtype=torch.float64, device=dev) for name in MAX_SLOTS}
    h = torch.where(ok, batch.entropy, 0.0)
    s["h_sum"] = h.sum(dtype=torch.float64)
    s["n_low"] = (ok & (h < M.LOW_ENTROPY_NATS)).sum(dtype=torch.float64)
    s["n_high"] = (ok & (h > M.FORKING_ENTROPY_NATS)).sum(dtype=torch.float64)
    s["n_negative"] = (h < -NEGATIVE_TOL).sum(dtype=torch.float64)
    hist = _histogram(h, ok, edges)

    def finite(*xs: torch.Tensor | None) -> torch.Tensor:  # the valid tokens where every one of xs is finite
        out = valid
        for t in xs:
            out = out & torch.isfinite(t)
        return out

    lp_, adv_, old_ = batch.logp, batch.advantages, batch.old_logp
    if lp_ is not None:
        on = finite(lp_)
        s["n_logp"], s["nll_sum"] = on.sum(dtype=torch.float64), -torch.where(on, lp_, 0.0).sum(dtype=torch.float64)
    if adv_ is not None:
        on = finite(adv_)
        a = torch.where(on, adv_, 0.0).double()
        s["n_adv"], s["adv_sum"], s["adv_sq_sum"] = on.sum(dtype=torch.float64), a.sum(), a.square().sum()
        if on.numel():
            if whole is not None:  # the batch's, not the sample's
                on, a = _finite_adv(whole)
            x["adv_max"], x["neg_adv_min"] = torch.where(on, a, -math.inf).max(), torch.where(on, -a, -math.inf).max()
    if lp_ is not None and adv_ is not None:
        # Cov(logp, A) over tokens; pg_drive = mean pi*(log pi - E log pi)*A with E log pi = -H (Cui et al. 2025,
        # arXiv 2505.22617, eq. 3: the vanilla-PG entropy change is -eta * Cov_pi(log pi, pi*A))
        on = finite(lp_, adv_, batch.entropy)
        lp, a, hc = (torch.where(on, t, 0.0).double() for t in (lp_, adv_, batch.entropy))
        s["n_cov"], s["cov_logp_sum"], s["cov_adv_sum"] = on.sum(dtype=torch.float64), lp.sum(), a.sum()
        s["logp_adv_sum"] = (lp * a).sum()
        s["pg_drive_sum"] = (lp.exp() * (lp + hc) * a).sum()
    if lp_ is not None and old_ is not None:
        on = finite(lp_, old_)
        s["n_old"] = on.sum(dtype=torch.float64)
        log_ratio = torch.where(on, lp_.double() - old_.double(), 0.0)
        s["n_offpolicy"] = (log_ratio.abs() > ONPOLICY_LOG_RATIO_TOL).sum(dtype=torch.float64)
        s["log_ratio_sum"] = log_ratio.sum()
        s["k3_sum"] = (torch.expm1(log_ratio) - log_ratio).sum()  # k3 = rho - 1 - log rho >= 0: KL(pi_old || pi)
        if whole is not None and (whole.logp is None or whole.old_logp is None):  # log-probs of the sample only
            s["n_ratio_unknown"] = (whole.valid & ~valid).sum(dtype=torch.float64)  # valid tokens left out of it
            x["ratio_max"] = torch.where(on, log_ratio.exp(), -math.inf).max()  # the batch's when none was left out
        elif whole is not None:  # the batch's, not the sample's
            on_w = whole.valid & torch.isfinite(whole.logp) & torch.isfinite(whole.old_logp)
            ratio_w = torch.where(on_w, whole.logp.double() - whole.old_logp.double(), 0.0)
            x["ratio_max"] = torch.where(on_w, ratio_w.exp(), -math.inf).max()
        elif on.numel():
            x["ratio_max"] = torch.where(on, log_ratio.exp(), -math.inf).max()
        if adv_ is not None:
            on = finite(lp_, old_, adv_)
            ratio_in = torch.where(on, lp_ - old_, 0.0)  # in the inputs' dtype, as TRL's coef_1
            low, high, dual = clip_masks(ratio_in, torch.where(on, adv_, 0.0), on, eps_low, eps_high, dual_clip)
            s["n_clip"] = on.sum(dtype=torch.float64)
            s["n_clip_low"], s["n_clip_high"] = low.sum(dtype=torch.float64), high.sum(dtype=torch.float64)
            if dual is not None:
                s["n_dual_base"], s["n_clip_dual"] = s["n_clip"], dual.sum(dtype=torch.float64)

    zero = torch.zeros((), dtype=torch.float64, device=dev)
    vec = torch.stack([s.get(name, zero) for name in SLOTS])
    group_ids, group_minmax = _local_groups(batch if whole is None else whole)
    return TokenSums(torch.cat([vec, hist]), torch.stack([x[n] for n in MAX_SLOTS]), group_ids, group_minmax)


def weigh(sums: TokenSums, weight: float) -> TokenSums:
    """Scale ``sums`` (in place; returns ``sums``) as the sums of ``weight`` times as many tokens: those of a uniform
    sample of ``1 / weight`` of a batch's tokens, made estimates of the whole batch's (every token slot and histogram
    count; not ``n_computed``, the tokens really computed). Before :func:`note_verdicts` and :func:`reduce_sums`."""
    if isinstance(weight, bool) or not (isinstance(weight, int | float) and 1.0 <= float(weight) < math.inf):
        raise InvalidTensor(f"step_stats: token_weight must be a finite number >= 1, got {weight!r}")
    if weight != 1.0:
        i = SLOTS.index("n_computed")
        kept = sums.sums[i].clone()
        sums.sums.mul_(float(weight))
        sums.sums[i] = kept
    return sums


def note_verdicts(sums: TokenSums, *, unknown: bool = False, onpolicy: float | None = None) -> TokenSums:
    """Count, in ``sums`` (in place; returns ``sums``), an on-policy verdict that is not its tokens': ``unknown``, its
    ``old_logp`` was left out; ``onpolicy``, an adapter's own verdict (1.0 on-policy, 0.0 off; None: none). Before
    :func:`reduce_sums`, so that :func:`finalize` reads every rank's."""
    add = {"n_onpolicy_unknown": float(unknown)}
    if onpolicy is not None:
        add |= {"n_verdict": 1.0, "n_verdict_off": float(not onpolicy >= 1.0)}
    for name, value in add.items():
        if value:
            i = SLOTS.index(name)
            sums.sums[i : i + 1] += value
    return sums


def clip_masks(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    valid: torch.Tensor,
    eps_low: float,
    eps_high: float,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Boolean ``(low, high, dual)`` masks, shapes as ``log_ratio``; ``dual`` is None without ``dual_clip``.

    The ratio is ``exp(log_ratio)`` in fp32, as TRL's ``coef_1``. Binding clip-low (A<0, ratio<1-eps_low) raises
    entropy, binding clip-high (A>0, ratio>1+eps_high) lowers it (Park et al. 2025, arXiv 2509.26114); dual-clip
    (A<0, ratio>c) is Ye et al. 2020's bound, which verl logs as ``pg_clipfrac_lower``.
    """
    ratio = torch.exp(log_ratio.float())
    low = valid & (advantages < 0) & (ratio < 1.0 - eps_low)
    high = valid & (advantages > 0) & (ratio > 1.0 + eps_high)
    dual = None if dual_clip is None else valid & (advantages < 0) & (ratio > dual_clip)
    return low, high, dual


def sample_token_rows(
    batch: TokenBatch,
    k: int,
    *,
    step: int,
    tokenizer: Any = None,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
) -> list[dict[str, Any]]:
    """Up to ``k`` highest-entropy tokens, then up to ``k`` other random ones (seed = ``step``), from this rank.

    Each row: ``step, seq, pos, token_id`` (-1 without ``token_ids``), ``token_text`` (``tokenizer.decode([id])``,
    else ``convert_ids_to_tokens``, else ""), ``entropy``, ``logp`` and ``advantage`` (None when not given),
    ``clipped`` ("low" | "high" | "dual" | ""). Only tokens of the statistics' token set are sampled; ``seq`` is
    the local row index. One small device-to-host copy of ``(6, 2k)`` numbers.
    """
    n = batch.entropy.numel()
    k = min(int(k), n)
    if k <= 0:
        return []
    dev, ok = batch.entropy.device, batch.ok
    top_val, top_idx = torch.where(ok, batch.entropy, -math.inf).topk(k)
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(step) % 2**63)
    keys = torch.where(ok, torch.rand(n, generator=gen, device=dev, dtype=torch.float64), -1.0)
    keys.index_fill_(0, top_idx, -1.0)  # no token twice
    rand_val, rand_idx = keys.topk(k)
    idx = torch.cat([top_idx, rand_idx])
    keep = torch.cat([top_val > -math.inf, rand_val >= 0.0])

    nan = torch.full((n,), math.nan, dtype=torch.float64, device=dev)
    code = torch.zeros(n, dtype=torch.float64, device=dev)
    if batch.logp is not None and batch.old_logp is not None and batch.advantages is not None:
        low, high, dual = clip_masks(batch.logp - batch.old_logp, batch.advantages, ok, eps_low, eps_high, dual_clip)
        code = low.double() + 2.0 * high.double() + (0.0 if dual is None else 3.0 * dual.double())  # exclusive
    columns = [
        keep.double(),
        idx.double(),
        batch.entropy.double()[idx],
        (nan if batch.logp is None else batch.logp.double())[idx],
        (nan if batch.advantages is None else batch.advantages.double())[idx],
        (torch.full_like(nan, -1.0) if batch.token_ids is None else batch.token_ids.double())[idx],
        code[idx],
    ]
    host = torch.stack(columns).tolist()  # one copy; ids are exact in float64 below 2**53
    rows = []
    for keep_j, i, h, lp, a, tok, c in zip(*host, strict=True):
        if not keep_j:
            continue
        i, tok = int(i), int(tok)
        seq, pos = (i // batch.seq_len, i % batch.seq_len) if batch.seq_len else (0, i)
        rows.append(
            {
                "step": int(step),
                "seq": seq,
                "pos": pos,
                "token_id": tok,
                "token_text": _token_text(tokenizer, tok),
                "entropy": h,
                "logp": None if math.isnan(lp) else lp,
                "advantage": None if math.isnan(a) else a,
                "clipped": CLIP_LABELS[int(c)],
            }
        )
    return rows


def empty_sums(edges: np.ndarray, device: torch.device | str = "cpu") -> TokenSums:
    """The :class:`TokenSums` of no tokens (``len(edges)`` histogram bins) on ``device``."""
    return TokenSums(
        torch.zeros(N_SLOTS + len(edges), dtype=torch.float64, device=device),
        torch.full((len(MAX_SLOTS),), -math.inf, dtype=torch.float64, device=device),
        torch.zeros(0, dtype=torch.int64, device=device),
        torch.zeros(0, 2, dtype=torch.float64, device=device),
    )


def join_refused(edges: np.ndarray, process_group: Any = None, like: Any = None) -> None:
    """Take part in one step's collectives with no tokens: what a rank whose input was refused must do under a
    reducing group, or the others wait in their all-reduce forever (or pair it with this rank's next step).
    ``like``: a tensor of the refused input (the sums go to its device, as the other ranks' do); without one, the
    group backend's device. A no-op without a reducing group; a failure here is the caller's to count."""
    group = reduction_group(process_group)
    if group is None:
        return
    device = like.device if isinstance(like, torch.Tensor) else collective_device(group)
    reduce_sums(empty_sums(edges, device), process_group)


def stamp_step(sums: TokenSums, step: int) -> TokenSums:
    """Mark ``sums`` as this rank's statistics of ``step`` (in place; returns ``sums``), so that :func:`reduce_sums`
    refuses a collective in which the ranks logged different steps. Sums that are not stamped (e.g. those of a
    refused input, :func:`join_refused`) never disagree."""
    i = MAX_SLOTS.index("step_max")
    sums.maxes[i : i + 2] = sums.maxes.new_tensor([float(step), -float(step)])
    return sums


def reduce_sums(sums: TokenSums, process_group: Any = None) -> TokenSums:
    """All-reduce ``sums`` over the group (see :func:`entropy_watch.hooks.distributed.reduction_group`).

    Two collectives (a SUM and a MAX all-reduce, which also carry each rank's number of advantage groups), and a third
    (an all-gather of one ``(id, min, max)`` row per group) only when some rank has groups: every rank reads the same
    reduced totals, so all make the same calls, whatever inputs a rank had. Raises
    :class:`~entropy_watch.errors.InvalidTensor` after the collectives (so none waits):

    - on every rank, when the ranks' sums were stamped (:func:`stamp_step`) with different steps: one rank's step
      paired with another's;
    - on a rank whose entropies are negative (:func:`finalize`'s refusal) alone: that rank sends the sums of no
      tokens, so the other ranks' statistics of the step are those of their own tokens, as for any refused input.
    """
    group = reduction_group(process_group)
    if group is None:
        return sums
    dev = sums.sums.device
    i_neg, i_step = SLOTS.index("n_negative"), MAX_SLOTS.index("step_max")
    mine = sums.sums[i_neg : i_neg + 1]  # this rank's negative entropies (the others must not lose their step)
    refused = mine > 0
    count = sums.sums.new_tensor([float(sums.group_ids.shape[0])])  # a shape: no host sync
    stamps = torch.zeros(len(MAX_SLOTS), dtype=torch.bool, device=dev)
    stamps[i_step : i_step + 2] = True  # a refused rank keeps its step: a paired step is still caught
    total = torch.cat([torch.where(refused, 0.0, sums.sums), torch.where(refused, 0.0, count)])
    top = torch.cat([torch.where(refused & ~stamps, -math.inf, sums.maxes), torch.where(refused, 0.0, count)])
    all_reduce_(total, "sum", group)
    all_reduce_(top, "max", group)
    i_n, i_h = SLOTS.index("n_valid"), SLOTS.index("h_sum")
    own = torch.cat([sums.sums[i_n : i_n + 1], sums.sums[i_h : i_h + 1], total[i_n : i_n + 1], total[i_h : i_h + 1]])
    host = torch.cat([top[i_step : i_step + 2], top[-1:], total[-1:], mine, own]).tolist()  # the one host copy
    hi, lo, longest, n_groups, n_mine = host[:5]
    _warn_same_tokens(*host[5:], torch.distributed.get_world_size(group), hi)
    ids = torch.zeros(0, dtype=torch.int64, device=dev)
    minmax = torch.zeros(0, 2, dtype=torch.float64, device=dev)
    if n_groups > 0:  # the same on every rank: all of them gather, or none
        id_bits = sums.group_ids.contiguous().view(torch.float64).unsqueeze(1)  # int64 bits ride in a float64 column
        rows = torch.cat([id_bits, sums.group_minmax, torch.ones_like(id_bits)], dim=1)  # last column: a real row
        padded = rows.new_zeros((int(longest), 4))
        if n_mine == 0:
            padded[: rows.shape[0]] = rows
        packed = all_gather_padded(padded, group)
        packed = packed[packed[:, 3] > 0]
        ids, minmax = _merge_groups(packed[:, 0].contiguous().view(torch.int64), packed[:, 1:3])
    lo = -lo
    if math.isfinite(hi) and math.isfinite(lo) and hi != lo:
        raise InvalidTensor(
            f"step_stats: the ranks logged different steps in one reduction (steps {lo:.0f} to {hi:.0f}): under "
            "torch.distributed every rank must log every step, with the same step number, in the same order (or pass "
            "reduce=False / process_group=False); this step's statistics were not recorded"
        )
    if n_mine > 0:
        raise _negative_entropies(n_mine)
    return TokenSums(total[:-1], top[:-1], ids, minmax)


def finalize(sums: TokenSums, edges: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Canonical scalars and the int64 histogram from (reduced) sums: the step's one device-to-host copy."""
    n_zero = (sums.group_minmax[:, 0] == sums.group_minmax[:, 1]).sum(dtype=torch.float64).reshape(1)
    n_groups = torch.tensor([sums.group_ids.shape[0]], dtype=torch.float64, device=sums.sums.device)
    host = torch.cat([sums.sums, sums.maxes, n_zero, n_groups]).cpu().numpy()
    s = {name: float(host[i]) for i, name in enumerate(SLOTS)}
    hist = np.rint(host[N_SLOTS : N_SLOTS + len(edges)]).astype(np.int64)
    x = {name: float(host[N_SLOTS + len(edges) + i]) for i, name in enumerate(MAX_SLOTS)}
    zero_groups, groups = float(host[-2]), float(host[-1])

    if s["n_negative"] > 0:
        raise _negative_entropies(s["n_negative"])
    n = s["n_ok"]
    # weighted sums (a sampled rank's, weigh) make n an estimate; an integer count of tokens whatever the weights
    out: dict[str, float] = {M.TOKENS_COUNT: float(np.rint(n))}
    if s["n_valid"] > 0:
        out[M.ENTROPY_NONFINITE_FRAC] = (s["n_valid"] - n) / s["n_valid"]
        if s["n_computed"] < s["n_valid"] * (1.0 - 1e-9):  # some rank's tokens were sampled (weigh)
            out[M.HOOKS_ENTROPY_SAMPLE] = s["n_computed"] / s["n_valid"]
    if n <= 0:
        if s["n_valid"] > 0:  # every valid token's entropy is NaN/inf: the logits diverged, and the guard must see it
            out[M.ENTROPY_MEAN] = math.nan
        return out, hist  # all zero: no token reached the histogram
    out[M.ENTROPY_MEAN] = s["h_sum"] / n
    qs = quantiles_from_hist(hist, edges, list(M.ENTROPY_QUANTILES.values()))
    out.update({name: float(q) for name, q in zip(M.ENTROPY_QUANTILES, qs, strict=True)})
    out[M.ENTROPY_FRAC_LOW] = s["n_low"] / n
    out[M.ENTROPY_FRAC_HIGH] = s["n_high"] / n
    if s["n_logp"] > 0:
        out[M.ENTROPY_SAMPLED_NLL] = s["nll_sum"] / s["n_logp"]
    if s["n_adv"] > 0:
        mean = s["adv_sum"] / s["n_adv"]
        out[M.ADV_MEAN] = mean
        out[M.ADV_STD] = math.sqrt(max(0.0, s["adv_sq_sum"] / s["n_adv"] - mean * mean))
        out[M.ADV_MIN], out[M.ADV_MAX] = -x["neg_adv_min"], x["adv_max"]
    if groups > 0:
        out[M.ADV_FRAC_ZERO_GROUPS] = zero_groups / groups
    if s["n_cov"] > 0:
        nc = s["n_cov"]
        out[M.COV_LOGP_ADV] = s["logp_adv_sum"] / nc - (s["cov_logp_sum"] / nc) * (s["cov_adv_sum"] / nc)
        out[M.COV_PG_DRIVE] = s["pg_drive_sum"] / nc
    if s["n_old"] > 0:
        out[M.RATIO_LOG_MEAN] = s["log_ratio_sum"] / s["n_old"]
        if s["n_ratio_unknown"] == 0:  # a budget's sample alone had log-probs: the batch's maximum is unknown
            out[M.RATIO_MAX] = x["ratio_max"]
        out[M.KL_OLD] = s["k3_sum"] / s["n_old"]
    if s["n_verdict"] > 0:  # an adapter's own verdicts (e.g. TRL's sequence-level ratio) replace the tokens'
        out[M.CLIP_ONPOLICY] = 0.0 if s["n_verdict_off"] > 0 else 1.0
    else:
        out[M.CLIP_ONPOLICY] = 1.0 if s["n_old"] == 0 or s["n_offpolicy"] == 0 else 0.0
    if s["n_onpolicy_unknown"] > 0 and out[M.CLIP_ONPOLICY] == 1.0:  # old_logp left out somewhere: maybe off-policy
        del out[M.CLIP_ONPOLICY]
    if s["n_clip"] > 0:  # old log-probs given: measured, 0 when on-policy (TRL logs the same 0)
        out[M.CLIP_LOW_FRAC] = s["n_clip_low"] / s["n_clip"]
        out[M.CLIP_HIGH_FRAC] = s["n_clip_high"] / s["n_clip"]
        out[M.CLIP_REGION_FRAC] = (s["n_clip_low"] + s["n_clip_high"]) / s["n_clip"]
        if s["n_dual_base"] > 0:
            out[M.CLIP_DUAL_FRAC] = s["n_clip_dual"] / s["n_dual_base"]
    return {k: v for k, v in out.items() if math.isfinite(v)}, hist


_warned_same_tokens = False


def _warn_same_tokens(n: float, h: float, n_all: float, h_all: float, world: int, step: float) -> None:
    """Warn once per process when every rank of a reduction had the same tokens (as many, the same entropy sum):
    tensors gathered across ranks (``accelerator.gather``) before ``log_tokens``, so each token counts ``world`` times.
    Identical batches on every rank are otherwise a data-loading fault too; the statistics are still recorded."""
    global _warned_same_tokens
    if _warned_same_tokens or not (n > 0 and h > 0 and n_all == world * n and abs(h_all - world * h) <= 1e-9 * h_all):
        return
    _warned_same_tokens = True
    at = f" at step {step:.0f}" if math.isfinite(step) else ""
    logging.getLogger("entropy_watch").warning(
        "entropy_watch: all %d ranks reduced the same %d tokens%s (the same count and entropy sum on every rank): "
        "tensors gathered across ranks (accelerator.gather, all_gather) before log_tokens count every token %d "
        "times (tokens/count and the histogram; the means are unchanged). Pass each rank's own tensors (the "
        "statistics are all-reduced over the ranks for you), or log gathered ones from rank 0 alone in a "
        "Watch(..., reduce=False). Warned once",
        world,
        int(n),
        at,
        world,
    )


def _negative_entropies(n: float) -> InvalidTensor:
    return InvalidTensor(
        f"step_stats: {n:.0f} token entropies are negative (below -{NEGATIVE_TOL:g} nats): entropy= takes per-token "
        "entropies in nats (>= 0), not log-probs; this step's statistics were not recorded"
    )


def _histogram(h: torch.Tensor, ok: torch.Tensor, edges: np.ndarray) -> torch.Tensor:
    """Counts per bin as float64 ``(len(edges),)``; same rule as ``entropy_watch.histogram.bin_index``."""
    nb = len(edges)
    edges_t = torch.as_tensor(edges, dtype=torch.float64, device=h.device)
    h64 = h.double()
    idx = torch.bucketize(h64, edges_t, right=True).clamp_(1, nb - 1)  # edges[i-1] <= h < edges[i] -> i
    idx = torch.where(h64 <= 0.0, 0, idx)
    idx = torch.where(ok, idx, nb)  # tokens off the set go to an overflow bin (no boolean indexing, no sync)
    return torch.bincount(idx.reshape(-1), minlength=nb + 1)[:nb].double()


def _token_text(tokenizer: Any, token_id: int) -> str:
    if tokenizer is None or token_id < 0:
        return ""
    if hasattr(tokenizer, "decode"):
        return str(tokenizer.decode([token_id]))
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return str(tokenizer.convert_ids_to_tokens([token_id])[0])
    return ""


def _finite_adv(batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(on, A)``: the batch's valid tokens of finite advantage, and the advantages there (0 elsewhere, float64)."""
    adv = batch.advantages
    if adv is None:
        on = torch.zeros_like(batch.valid)
        return on, torch.zeros(on.shape, dtype=torch.float64, device=on.device)
    on = batch.valid & torch.isfinite(adv)
    return on, torch.where(on, adv, 0.0).double()


def _local_groups(batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(id, min A, max A)`` per group with valid tokens of finite advantage: ``(G,)`` int64, ``(G, 2)``
    float64."""
    dev = batch.entropy.device
    if batch.group_ids is None or batch.advantages is None:
        return torch.zeros(0, dtype=torch.int64, device=dev), torch.zeros(0, 2, dtype=torch.float64, device=dev)
    on = batch.valid & torch.isfinite(batch.advantages)
    gid, adv = batch.group_ids[on], batch.advantages[on].double()  # (n,); a sync, groups only
    return _merge_groups(gid, torch.stack([adv, adv], dim=1))


def _merge_groups(ids: torch.Tensor, minmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine rows with equal ids: min of mins, max of maxes. ``(n,)``, ``(n, 2)`` -> ``(G,)``, ``(G, 2)``."""
    uniq, inv = torch.unique(ids, return_inverse=True)
    lo = torch.full((uniq.shape[0],), math.inf, dtype=torch.float64, device=ids.device)
    hi = torch.full((uniq.shape[0],), -math.inf, dtype=torch.float64, device=ids.device)
    lo.scatter_reduce_(0, inv, minmax[:, 0], reduce="amin")
    hi.scatter_reduce_(0, inv, minmax[:, 1], reduce="amax")
    return uniq, torch.stack([lo, hi], dim=1)


def _clip_args(eps_low: float, eps_high: float, dual_clip: float | None) -> dict[str, Any]:
    """The clip widths, checked. eps_high may be inf: a loss without an upper clip, where nothing binds high."""
    if not (isinstance(eps_low, int | float) and 0.0 <= float(eps_low) < math.inf):
        raise InvalidTensor(f"step_stats: eps_low must be a finite number >= 0, got {eps_low!r}")
    if not (isinstance(eps_high, int | float) and float(eps_high) >= 0.0):  # NaN fails too
        raise InvalidTensor(f"step_stats: eps_high must be a number >= 0 (inf: no upper clip), got {eps_high!r}")
    if dual_clip is not None and not (isinstance(dual_clip, int | float) and 1.0 < float(dual_clip) < math.inf):
        raise InvalidTensor(f"step_stats: dual_clip must be None or a finite number > 1, got {dual_clip!r}")
    return {"eps_low": float(eps_low), "eps_high": float(eps_high), "dual_clip": dual_clip}


def _check_edges(edges: np.ndarray | None) -> np.ndarray:
    if edges is None:
        return entropy_bin_edges()
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2 or e[0] != 0.0 or not np.all(np.diff(e) > 0):
        raise InvalidTensor("step_stats: edges must be 1-D, start at 0 and increase (see entropy_bin_edges)")
    return e
