"""Token entropy on a GPU in one read of the logits: a Triton kernel, the fused twin of ``entropy._chunk_into``.

Imported only where Triton is (``entropy.token_entropy`` picks it for CUDA logits without autograd). The chunked
torch path makes about eight passes over fp32 work buffers per chunk: measured on an H200 (stop 37, N = 4,096 tokens,
V = 32k) it took 1.9 ms in fp32 and 2.2 ms in bf16 against a 0.2 ms read of the logits and TRL's fused kernel's
0.4 ms, and held 512 MiB of buffers. This kernel reads each logit once and writes one float per row.

One program per row walks the vocabulary ``BLOCK`` logits at a time and keeps, in base 2 (one ``ex2`` per logit: ``x
= logit log2(e) / T``) with the running maximum ``m``, the sums ``s = sum 2^(x - m)`` and ``t = sum 2^(x - m) (x -
m)``; a new block maximum ``m'`` rescales both (``a = 2^(m - m')``: ``s <- a s``, ``t <- a (t + (m - m') s)``, since
every ``x - m`` gains ``m - m'``), the streaming softmax of Milakov & Gimelshein (2018, "Online normalizer calculation
for softmax"). Then ``H = ln 2 (log2 s - t / s)`` and ``log pi(a) = ln 2 (x_a - m - log2 s)``, the formulas of
``entropy.py`` in base 2, accumulated in fp32. Per logit: a convert, a multiply, a subtract, a NaN-keeping max, an
``ex2`` and two adds.

Measured on an H200 (N = 4,096 rows; ``benchmarks/bench_entropy.py --device cuda``, min of 50 rounds): V = 32k
0.169 / 0.125 ms (fp32 / bf16), V = 152k 0.622 / 0.389 ms, against TRL 1.16's fused kernel 0.219 / 0.217 and 0.723 /
0.701 ms and a read of the logits (``x.max(-1)``) 0.170 / 0.148 and 0.675 / 0.499 ms: 3.1-4.0 TB/s of logits read.

Edge cases as in ``entropy.py``: ``-inf`` logits contribute 0; a row holding NaN or ``+inf``, or no finite logit,
gives NaN (a NaN logit, or ``inf - inf``, reaches ``s`` through the NaN-keeping max); ``H`` is clamped at 0 from
below (NaN stays NaN).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634  # log2(e): the kernel works in base 2 (one ``ex2`` per logit) and returns nats
LN2 = tl.constexpr(0.6931471805599453)  # globals read inside a kernel must be constexprs
LOWEST = tl.constexpr(-3.4028234663852886e38)  # the most negative fp32: a masked logit's x - m, so that p * (x - m)
# = 2^LOWEST * LOWEST = 0
BLOCK = 8192
"""Logits per loop iteration of one row's program (64 per thread at 4 warps). Launch shapes swept on an H200 (N = 128
to 16,384 rows, V = 32k and 152k, fp32 and bf16, 1,024-16,384 logits x 4/8 warps, a 2-3 stage pipelined loop): this
one was the fastest or within 5% of it in 9 of the 10 cases (bf16 at N = 128: 37 us against 30 us at 16,384 x 8);
smaller blocks lose most where rows are few (fp32, N = 128, V = 152k: 2,048 logits took 91 us against 43 us), since a
program then needs more bytes in flight to keep the memory busy."""
NUM_WARPS = 4


@triton.jit
def _entropy_rows(
    x_ptr,
    row_stride,
    n_cols,
    scale,
    ids_ptr,
    h_ptr,
    logp_ptr,
    HAS_IDS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = x_ptr + row * row_stride
    m = tl.full((), float("-inf"), tl.float32)  # running max of x = logit * log2(e) / T
    s = tl.zeros((), tl.float32)  # sum 2^(x - m)
    t = tl.zeros((), tl.float32)  # sum 2^(x - m) * (x - m)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32) * scale
        m_new = tl.maximum(m, tl.max(x, axis=0))  # NaN-blind on a GPU: the NaN reaches s through d below
        finite = m_new > float("-inf")  # some finite logit so far (a row of -inf only keeps s = t = 0)
        shift = tl.where(finite, m_new, 0.0)
        a = tl.where(finite, tl.exp2(m - shift), 1.0)
        t = a * (t + tl.where(s > 0, (m - shift) * s, 0.0))
        # -inf -> LOWEST (2^LOWEST = 0, 0 * LOWEST = 0); NaN (a NaN or +inf logit: inf - inf) stays NaN
        d = tl.maximum(x - shift, LOWEST, propagate_nan=tl.PropagateNan.ALL)
        p = tl.exp2(d)
        s = a * s + tl.sum(p, axis=0)
        t += tl.sum(p * d, axis=0)
        m = m_new
    log_s = tl.log2(s)  # -inf for a row without a finite logit: H and log pi are NaN there; NaN for a NaN row
    h = (log_s - t / s) * LN2
    h = tl.where(h < 0, 0.0, h)  # H >= 0 (rounding on a near one-hot row); NaN < 0 is false, so NaN stays
    tl.store(h_ptr + row, h)
    if HAS_IDS:
        x_a = tl.load(base + tl.load(ids_ptr + row)).to(tl.float32) * scale
        tl.store(logp_ptr + row, (x_a - m - log_s) * LN2)


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
        LOG2E / float(temperature),
        ids if has_ids else out,  # unused without ids: any pointer
        out,
        logp_out if has_ids else out,
        HAS_IDS=has_ids,
        BLOCK=min(BLOCK, triton.next_power_of_2(vocab)),
        num_warps=NUM_WARPS,
    )
