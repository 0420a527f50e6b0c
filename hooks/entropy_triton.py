"""Token entropy on a GPU in one read of the logits: a Triton kernel, the fused twin of ``entropy._chunk_into``.

Imported only where Triton is (``entropy.token_entropy`` picks it for CUDA logits without autograd). The chunked
torch path makes about eight passes over fp32 work buffers per chunk: measured on an H200 (stop 37, N = 4,096 tokens,
V = 32k) it took 1.9 ms in fp32 and 2.2 ms in bf16 against a 0.2 ms read of the logits and TRL's fused kernel's
0.4 ms, and held 512 MiB of buffers. This kernel reads each logit once and writes one float per row.

One program per row walks the vocabulary ``BLOCK`` logits at a time and keeps, with ``x = logit / T`` and the running
maximum ``m``, the sums ``s = sum exp(x - m)`` and ``t = sum exp(x - m) (x - m)``; a new block maximum ``m'``
rescales both (``a = exp(m - m')``: ``s <- a s``, ``t <- a (t + (m - m') s)``, since every ``x - m`` gains
``m - m'``), the streaming softmax of Milakov & Gimelshein (2018, "Online normalizer calculation for softmax").
Then ``H = log s - t / s`` and ``log pi(a) = x_a - m - log s``, the formulas of ``entropy.py``, accumulated in fp32.

Edge cases as in ``entropy.py``: ``-inf`` logits contribute 0; a row holding NaN or ``+inf``, or no finite logit,
gives NaN; ``H`` is clamped at 0 from below (NaN stays NaN).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096
"""Logits per loop iteration of one row's program (fp32 accumulation in registers: 16 per thread at 8 warps)."""


@triton.jit
def _entropy_rows(
    x_ptr,
    row_stride,
    n_cols,
    inv_t,
    ids_ptr,
    h_ptr,
    logp_ptr,
    HAS_IDS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = x_ptr + row * row_stride
    m = tl.full((), float("-inf"), tl.float32)  # running max of x = logit / T
    s = tl.zeros((), tl.float32)  # sum exp(x - m)
    t = tl.zeros((), tl.float32)  # sum exp(x - m) * (x - m)
    bad = tl.zeros((BLOCK,), tl.int32)  # per lane: a NaN or +inf logit seen (reduced once, after the loop)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32) * inv_t
        bad |= ((x != x) | (x == float("inf"))).to(tl.int32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        finite = m_new > float("-inf")  # some finite logit so far (a row of -inf only keeps s = t = 0)
        shift = tl.where(finite, m_new, 0.0)
        a = tl.where(finite, tl.exp(m - shift), 1.0)
        t = a * (t + tl.where(s > 0, (m - shift) * s, 0.0))
        p = tl.where(x > float("-inf"), tl.exp(x - shift), 0.0)
        s = a * s + tl.sum(p, axis=0)
        t += tl.sum(tl.where(p > 0, p * (x - shift), 0.0), axis=0)
        m = m_new
    nonfinite = tl.max(bad, axis=0)
    log_s = tl.log(s)  # -inf for a row without a finite logit: H and log pi are NaN and -inf there
    h = log_s - t / s
    h = tl.where(h < 0, 0.0, h)  # H >= 0 (rounding on a near one-hot row); NaN < 0 is false, so NaN stays
    h = tl.where(nonfinite > 0, float("nan"), h)
    tl.store(h_ptr + row, h)
    if HAS_IDS:
        x_a = tl.load(base + tl.load(ids_ptr + row)).to(tl.float32) * inv_t
        tl.store(logp_ptr + row, tl.where(nonfinite > 0, float("nan"), x_a - m - log_s))


def entropy_rows(
    rows: torch.Tensor, temperature: float, out: torch.Tensor, ids: torch.Tensor | None, logp_out: torch.Tensor | None
) -> None:
    """Entropy (nats) of each row of ``rows (n, V)`` into ``out (n,)`` fp32; ``log pi(ids)`` into ``logp_out (n,)``.

    ``rows`` must have unit stride along V (any row stride); ``ids`` ``(n,)`` int64 on the same device.
    """
    n, vocab = rows.shape
    if n == 0:
        return
    has_ids = ids is not None and logp_out is not None
    _entropy_rows[(n,)](
        rows,
        rows.stride(0),
        vocab,
        1.0 / float(temperature),
        ids if has_ids else out,  # unused without ids: any pointer
        out,
        logp_out if has_ids else out,
        HAS_IDS=has_ids,
        BLOCK=min(BLOCK, triton.next_power_of_2(vocab)),
        num_warps=8,
    )
