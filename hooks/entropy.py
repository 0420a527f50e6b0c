"""Token entropy from logits: chunked, fp32-accumulated, never a second (tokens x vocab) tensor.

``token_entropy(logits)`` turns ``(..., V)`` logits into ``(...)`` entropies in nats, the one implementation used by
the hooks and the reference trainer. Rows are processed ``chunk_size`` at a time through two reusable fp32 work
buffers of ``(chunk_size, V)``, so the extra memory is ``2 * chunk_size * V * 4`` bytes whatever the number of
tokens (TRL's ``entropy_from_logits`` chunks for the same reason, huggingface/trl#4013). Per row, with the logits
shifted by their max ``z = l/T - max(l/T)`` and ``p = exp(z)``, ``s = sum(p)``::

    H = log s - sum(p * z) / s        (nats)      log pi(a) = z_a - log s

One exponential per logit (the log-softmax form needs two) and torch's pairwise sums: |error| ~ 1e-6 nats against
float64 at V = 32k-152k, 7-50x below ``-(exp(log_softmax) * log_softmax).sum(-1)`` in fp32 (benchmarks/).

On CUDA (fp32, bf16 or fp16 logits, no autograd, default chunk size) the same formulas run as one Triton kernel that
reads each logit once and needs no work buffers (``entropy_triton.py``; on an H200 0.55-0.86x the time of TRL's fused
kernel and at the pace of one read of the logits, where this path takes 10-25x as long); this chunked path is its
fallback.

Edge cases: ``-inf`` logits (a masked vocabulary) contribute 0 (``0 * log 0 = 0``, no NaN); a row containing NaN or
``+inf``, or no finite logit at all, gives NaN (step statistics count it in ``entropy/nonfinite_frac``).
"""

from __future__ import annotations

import os
import warnings

import torch

from entropy_watch.errors import InvalidTensor, first_line

CPU_CHUNK_BYTES = 8 * 2**20  # both fp32 work buffers together: fits the L3 cache, so the passes run from cache
CUDA_CHUNK_BYTES = 512 * 2**20  # big chunks amortise the ~8 kernel launches per chunk on a GPU
GATHER_BYTES = 32 * 2**20  # logits the sampling of entropy_within_budget copies at a time


def default_chunk_rows(vocab_size: int, device: torch.device | str = "cpu") -> int:
    """Rows per chunk so that the two fp32 ``(rows, V)`` work buffers take about 8 MiB (CPU) or 512 MiB (GPU)."""
    budget = CUDA_CHUNK_BYTES if torch.device(device).type != "cpu" else CPU_CHUNK_BYTES
    return max(1, budget // (2 * 4 * max(1, int(vocab_size))))


def token_entropy(
    logits: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    *,
    token_ids: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Entropy in nats of ``softmax(logits / temperature)`` per row: ``(..., V) -> (...)``.

    Args:
        logits: ``(..., V)`` float tensor (fp32, bf16, fp16 or fp64), on any device; never copied whole (a
            non-viewable layout such as ``logits[:, :-1]`` is walked slice by slice).
        temperature: sampling temperature (> 0); entropy is that of the tempered distribution.
        chunk_size: rows per chunk; default :func:`default_chunk_rows` (by bytes, per device). Given, it keeps the
            chunked torch path on CUDA too (by default CUDA logits go through the Triton kernel).
        token_ids: optional ``(...)`` integer ids of the sampled tokens; then ``log pi(token_ids)`` is returned too,
            from the same pass.

    Returns:
        ``entropy (...)`` in fp32 (fp64 for fp64 input), or ``(entropy, logp)`` with ``token_ids``.

    Without autograd (``torch.no_grad()`` or logits that do not require grad) the work runs in place in two
    reusable buffers. With ``logits.requires_grad`` under grad mode (an entropy bonus), each chunk runs under
    activation checkpointing, so the graph holds only views of ``logits``; backward recomputes one chunk at a time
    (about 4 fp32 chunk-sized temporaries) at the cost of a second forward. The gradient itself is ``(..., V)``.

    Under ``torch.compile`` it traces whole (no graph break); ``token_ids`` outside ``[0, V)`` then give a NaN
    log-prob instead of an error, since the range check's host read would split the compiled graph at every call.
    """
    _check_args(logits, temperature, chunk_size, token_ids)
    if token_ids is not None and torch.compiler.is_compiling():
        off_vocab = (token_ids < 0) | (token_ids >= logits.shape[-1])  # (...), read on the device, never on the host
        safe = token_ids.clamp(0, logits.shape[-1] - 1)
        out = _token_entropy(logits, temperature, chunk_size, safe)
        assert isinstance(out, tuple)  # token_ids given: (entropy, logp)
        return out[0], out[1].masked_fill(off_vocab, float("nan"))
    return _token_entropy(logits, temperature, chunk_size, token_ids)


def _token_entropy(
    logits: torch.Tensor, temperature: float, chunk_size: int | None, token_ids: torch.Tensor | None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`token_entropy` on checked arguments."""
    lead_shape, vocab = logits.shape[:-1], int(logits.shape[-1])
    rows = int(chunk_size) if chunk_size is not None else default_chunk_rows(vocab, logits.device)
    compute_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    ids = None if token_ids is None else token_ids.reshape(-1)  # (N,), small: a copy is fine
    if logits.requires_grad and torch.is_grad_enabled():
        return _entropy_autograd(logits, float(temperature), rows, compute_dtype, ids, lead_shape)

    n_rows = lead_shape.numel()
    entropy = torch.empty(n_rows, dtype=compute_dtype, device=logits.device)
    logp = torch.empty(n_rows, dtype=compute_dtype, device=logits.device) if ids is not None else None
    if chunk_size is None and _fused_rows(logits, float(temperature), entropy, ids, logp):
        entropy = entropy.reshape(lead_shape)
        return entropy if logp is None else (entropy, logp.reshape(lead_shape))
    with torch.no_grad():
        z_buf = torch.empty(min(rows, max(1, n_rows)), vocab, dtype=compute_dtype, device=logits.device)
        p_buf = torch.empty_like(z_buf)
        start = 0
        for block in _row_blocks(logits):
            for chunk in block.split(rows):
                end = start + chunk.shape[0]
                _chunk_into(
                    chunk,
                    float(temperature),
                    z_buf[: chunk.shape[0]],
                    p_buf[: chunk.shape[0]],
                    entropy[start:end],
                    None if ids is None else ids[start:end],
                    None if logp is None else logp[start:end],
                )
                start = end
    entropy = entropy.reshape(lead_shape)
    return entropy if logp is None else (entropy, logp.reshape(lead_shape))


def entropy_within_budget(
    logits: torch.Tensor,
    temperature: float,
    max_elements: int | None,
    *,
    mask: torch.Tensor | None = None,
    token_ids: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, float]:
    """:func:`token_entropy` with the work of one call bounded to ``max_elements`` logits (None: no bound).

    Within the budget this is exactly ``token_entropy``. Above it, ``k = max_elements // V`` token positions are
    drawn uniformly without replacement from the valid ones (``mask != 0``; all when no mask), with a generator
    seeded by ``seed`` (the step: reruns pick the same tokens), and only their rows are gathered and reduced: the
    cost is that of ``k`` tokens whatever the batch. Statistics over the sample are unbiased estimates of the
    batch's (token means, fractions, quantiles up to sampling noise).

    Returns ``(entropy (...), logp (...) or None, sampled (...) bool or None, fraction of valid tokens computed)``;
    ``sampled`` is None within the budget. Outside the sample ``entropy``/``logp`` hold 0 and must be masked out.
    Without valid tokens nothing is computed: ``sampled`` is all False and the fraction 1 (none was left out).

    Only what needs the logits is sampled: statistics of inputs given for every token (advantages, group ids, the
    caller's own log-probs) are the batch's (``step_stats``' ``unsampled_mask``), not the sample's.
    """
    vocab = int(logits.shape[-1])
    lead = logits.shape[:-1]
    n = lead.numel()
    if max_elements is None or n * vocab <= max_elements:
        out = token_entropy(logits, temperature, token_ids=token_ids)
        ent, logp = out if isinstance(out, tuple) else (out, None)
        return ent, logp, None, 1.0
    if mask is not None and (not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(lead)):
        got = f"shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else f"a {type(mask).__name__}"
        raise InvalidTensor(f"log_tokens: mask has {got}, expected {tuple(lead)}: the logits' shape without V")
    valid = torch.nonzero((mask != 0).reshape(-1) if mask is not None else torch.ones(n, dtype=torch.bool)).squeeze(1)
    valid = valid.to(logits.device)
    if not valid.numel():  # every token masked out (a padding-only micro-batch): nothing to compute, none left out
        empty = torch.zeros(tuple(lead), dtype=torch.float32, device=logits.device)
        none = torch.zeros(tuple(lead), dtype=torch.bool, device=logits.device)
        return empty, None if token_ids is None else empty.clone(), none, 1.0
    k = min(max(1, int(max_elements) // vocab), int(valid.numel()))
    gen = torch.Generator(device="cpu").manual_seed(int(seed) % 2**63)
    pick = torch.randperm(int(valid.numel()), generator=gen)[:k].to(valid.device)
    flat = valid[pick].sort().values  # (k,) positions in the flattened lead dims
    ids = None if token_ids is None else token_ids.reshape(-1)[flat]
    # the sampled rows are copied GATHER_BYTES at a time (or one work chunk's rows on a GPU): all k of them at once
    # would be a copy of the whole budget (256 MiB of fp32 on a CPU), and a piece per work chunk pays each chunk's
    # buffer allocation again (2.4x the time)
    piece = max(default_chunk_rows(vocab, logits.device), GATHER_BYTES // (vocab * logits.element_size()))
    parts = []
    for at in range(0, k, piece):
        pos = flat[at : at + piece]
        rows = logits[torch.unravel_index(pos, tuple(lead))] if len(lead) else logits.unsqueeze(0)
        out = token_entropy(rows, temperature, token_ids=None if ids is None else ids[at : at + pos.numel()])
        parts.append(out if isinstance(out, tuple) else (out,))
    ent_k = torch.cat([p[0] for p in parts])
    logp_k = torch.cat([p[1] for p in parts]) if ids is not None else None
    entropy = torch.zeros(n, dtype=ent_k.dtype, device=logits.device)
    entropy[flat] = ent_k
    logp = None
    if logp_k is not None:
        logp = torch.zeros(n, dtype=logp_k.dtype, device=logits.device)
        logp[flat] = logp_k
        logp = logp.reshape(lead)
    sampled = torch.zeros(n, dtype=torch.bool, device=logits.device)
    sampled[flat] = True
    frac = k / max(1, int(valid.numel()))
    return entropy.reshape(lead), logp, sampled.reshape(lead), frac


def _chunk_into(
    chunk: torch.Tensor,
    temperature: float,
    z: torch.Tensor,
    p: torch.Tensor,
    out: torch.Tensor,
    ids: torch.Tensor | None,
    logp_out: torch.Tensor | None,
) -> None:
    """Entropy of ``chunk (n, V)`` into ``out (n,)`` using the work buffers ``z``, ``p`` of shape ``(n, V)``."""
    # z = (l - max l) / T, which equals l/T - max(l/T) for T > 0: the max is exact in any dtype, and the subtraction
    # is written into the fp32 buffer (one pass for fp32 input). A row with NaN or +inf, or with
    # no finite logit (max = -inf), becomes NaN here, on purpose.
    row_max = chunk.amax(dim=-1, keepdim=True).to(z.dtype)
    if chunk.dtype == z.dtype:
        torch.sub(chunk, row_max, out=z)
    else:  # a mixed-dtype sub would allocate a converted copy of the chunk; convert into the buffer instead
        z.copy_(chunk).sub_(row_max)
    if temperature != 1.0:
        z.div_(temperature)
    torch.exp(z, out=p)
    sum_p = p.sum(dim=-1)  # (n,), >= 1 for a finite row
    log_sum_p = sum_p.log()
    if ids is not None and logp_out is not None:
        logp_out.copy_(z.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - log_sum_p)  # before the clamp: -inf stays
    z.clamp_(min=torch.finfo(z.dtype).min)  # -inf -> finite, so p * z = 0 * (-big) = 0, not NaN; NaN stays NaN
    p.mul_(z)
    torch.sub(log_sum_p, p.sum(dim=-1) / sum_p, out=out)
    out.clamp_(min=0.0)  # H >= 0; rounding can leave -1e-8 on a near one-hot row (NaN stays NaN)


_FUSED_OFF = os.environ.get("ENTROPY_WATCH_TRITON", "1") == "0"  # set when the kernel failed once, or by the user


def _fused_rows(
    logits: torch.Tensor, temperature: float, out: torch.Tensor, ids: torch.Tensor | None, logp: torch.Tensor | None
) -> bool:
    """The Triton kernel (``entropy_triton``) for CUDA logits in fp32/bf16/fp16; False where it does not apply.

    A kernel that fails to import, compile or launch (an old Triton, an unsupported GPU) turns itself off for the
    process with one warning, and the caller's torch path computes the same numbers: the hook never fails on it.
    ``ENTROPY_WATCH_TRITON=0`` turns it off (benchmarks compare both paths).
    """
    global _FUSED_OFF
    if _FUSED_OFF or not _fused_applies(logits):
        return False
    blocks = _row_blocks(logits)
    if any(b.shape[-1] > 1 and b.stride(-1) != 1 for b in blocks):
        return False
    try:
        from entropy_watch.hooks.entropy_triton import entropy_rows

        start = 0
        for block in blocks:
            end = start + block.shape[0]
            entropy_rows(
                block,
                temperature,
                out[start:end],
                None if ids is None else ids[start:end].to(torch.int64),
                None if logp is None else logp[start:end],
            )
            start = end
        return True
    except Exception as exc:  # noqa: BLE001 - any failure of the optional kernel falls back to the torch path
        _FUSED_OFF = True
        warnings.warn(f"entropy_watch: the Triton entropy kernel is off ({type(exc).__name__}: {first_line(exc)}); "
                      "computing entropy with torch instead", RuntimeWarning, stacklevel=3)  # fmt: skip
        return False


def _fused_applies(logits: torch.Tensor) -> bool:
    """CUDA logits in a dtype the kernel reads (fp64 keeps its fp64 torch path)."""
    return logits.device.type == "cuda" and logits.dtype in (torch.float32, torch.bfloat16, torch.float16)


def _chunk_autograd(chunk: torch.Tensor, temperature: float, dtype: torch.dtype, ids: torch.Tensor | None):
    """Out-of-place, differentiable twin of :func:`_chunk_into` for one ``(n, V)`` chunk."""
    z = chunk.to(dtype)
    if temperature != 1.0:
        z = z / temperature
    z = z - z.detach().amax(dim=-1, keepdim=True)  # H is shift-invariant, so a constant shift keeps the gradient
    p = torch.exp(z)
    sum_p = p.sum(dim=-1)
    log_sum_p = sum_p.log()
    entropy = log_sum_p - (p * z.clamp(min=torch.finfo(dtype).min)).sum(dim=-1) / sum_p  # clamp: 0 grad at -inf
    entropy = entropy.clamp(min=0.0)
    if ids is None:
        return entropy
    return entropy, z.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - log_sum_p


def _entropy_autograd(
    logits: torch.Tensor,
    temperature: float,
    rows: int,
    dtype: torch.dtype,
    ids: torch.Tensor | None,
    lead_shape: torch.Size,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    from torch.utils.checkpoint import checkpoint

    ent_parts: list[torch.Tensor] = []
    logp_parts: list[torch.Tensor] = []
    start = 0
    for block in _row_blocks(logits):
        for chunk in block.split(rows):
            end = start + chunk.shape[0]
            chunk_ids = None if ids is None else ids[start:end]
            out = checkpoint(_chunk_autograd, chunk, temperature, dtype, chunk_ids, use_reentrant=False)
            if chunk_ids is None:
                ent_parts.append(out)
            else:
                ent_parts.append(out[0])
                logp_parts.append(out[1])
            start = end
    if not ent_parts:  # no rows
        empty = logits.new_zeros(lead_shape, dtype=dtype)
        return empty if ids is None else (empty, empty.clone())
    entropy = torch.cat(ent_parts).reshape(lead_shape)
    return entropy if ids is None else (entropy, torch.cat(logp_parts).reshape(lead_shape))


def _row_blocks(logits: torch.Tensor) -> list[torch.Tensor]:
    """``(..., V)`` logits as 2-D ``(n, V)`` views in row-major order, without copying.

    A contiguous-enough tensor is one block; one whose leading dims cannot be merged (``logits[:, :-1]`` of a
    ``(B, T, V)`` tensor) is split along its first dim and each part retried. Which one it is is read from the strides
    (:func:`_lead_dims_merge`), not from a failed ``view``: under ``torch.compile`` that failure is no ``RuntimeError``
    to catch but an error that stops the compiled function.
    """
    if logits.dim() == 1:
        return [logits.unsqueeze(0)]
    if logits.dim() == 2:
        return [logits]
    if _lead_dims_merge(logits):
        return [logits.view(-1, logits.shape[-1])]
    return [block for part in logits.unbind(0) for block in _row_blocks(part)]


def _lead_dims_merge(logits: torch.Tensor) -> bool:
    """Whether the leading dims of ``(..., V)`` logits merge into one without a copy (``view(-1, V)`` works): each
    leading dim of size > 1 steps over exactly the next one's extent; dims of size 1 have no step that matters."""
    if logits.numel() == 0:
        return True
    lead = [(size, step) for size, step in zip(logits.shape[:-1], logits.stride()[:-1], strict=True) if size != 1]
    return all(outer == inner * size for (_, outer), (size, inner) in zip(lead, lead[1:], strict=False))


def _check_args(
    logits: torch.Tensor, temperature: float, chunk_size: int | None, token_ids: torch.Tensor | None
) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise InvalidTensor(f"token_entropy: logits must be a floating-point tensor (..., V), got {_describe(logits)}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise InvalidTensor(f"token_entropy: logits must have a non-empty last (vocabulary) dim, got {logits.shape}")
    if not (isinstance(temperature, int | float) and 0.0 < float(temperature) < float("inf")):
        raise InvalidTensor(f"token_entropy: temperature must be a finite number > 0, got {temperature!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1):
        raise InvalidTensor(f"token_entropy: chunk_size must be a positive int or None, got {chunk_size!r}")
    if token_ids is None:
        return
    if not isinstance(token_ids, torch.Tensor) or token_ids.is_floating_point() or token_ids.is_complex():
        raise InvalidTensor(f"token_entropy: token_ids must be an integer tensor, got {_describe(token_ids)}")
    if token_ids.shape != logits.shape[:-1]:
        raise InvalidTensor(
            f"token_entropy: token_ids shape {tuple(token_ids.shape)} != logits shape without V {tuple(logits.shape)}"
        )
    if token_ids.device != logits.device:
        raise InvalidTensor(f"token_entropy: token_ids on {token_ids.device}, logits on {logits.device}")
    if torch.compiler.is_compiling():  # no host read in a compiled graph: token_entropy marks these log-probs NaN
        return
    if token_ids.numel() and bool(((token_ids < 0) | (token_ids >= logits.shape[-1])).any()):  # one scalar sync
        raise InvalidTensor(f"token_entropy: token_ids outside [0, {logits.shape[-1]})")


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of dtype {x.dtype} and shape {tuple(x.shape)}"
    return type(x).__name__
