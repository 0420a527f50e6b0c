"""Token-entropy histogram bins, shared by the hooks (torch) and the readers (numpy).

The histogram lets a step's entropy quantiles be read in O(tokens) and summed across ranks exactly. Bins are fixed
for a run and deterministic from the vocabulary size V, so histograms from different steps and ranks add up:

* bin 0 holds tokens whose entropy is exactly 0 (a one-hot distribution, common after collapse);
* bins 1..N_LOG_BINS cover (0, ln V] with ``edges[i-1] <= H < edges[i]``, where ``edges[0] = 0``,
  ``edges[1] = 1e-4`` nats and ``edges[1:]`` are log-spaced up to just above ln V.

``edges`` has ``N_LOG_BINS + 1`` values and is stored in ``run.json`` (key ``hist_edges``).
"""

from __future__ import annotations

import math

import numpy as np

N_LOG_BINS = 64
MIN_POSITIVE_EDGE_NATS = 1e-4
DEFAULT_VOCAB_SIZE = 262_144  # used when only entropies (no logits, no vocab size) are known: ln V ~ 12.5 nats


def entropy_bin_edges(vocab_size: int | None = None) -> np.ndarray:
    """Bin edges in nats, shape ``(N_LOG_BINS + 1,)``: ``[0, 1e-4, ..., ln V * (1 + 1e-6)]``.

    ``vocab_size`` < 2 or None falls back to :data:`DEFAULT_VOCAB_SIZE`.
    """
    v = vocab_size if vocab_size is not None and vocab_size >= 2 else DEFAULT_VOCAB_SIZE
    top = math.log(v) * (1.0 + 1e-6)
    log_edges = np.geomspace(MIN_POSITIVE_EDGE_NATS, max(top, 2 * MIN_POSITIVE_EDGE_NATS), N_LOG_BINS)
    return np.concatenate([[0.0], log_edges]).astype(np.float64)


def n_bins(edges: np.ndarray) -> int:
    """Number of histogram bins for ``edges``: the exact-zero bin plus one per interval."""
    return len(edges)


def bin_index(entropy_nats: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each entropy value (numpy mirror of the torch code in ``entropy_watch.hooks.stats``).

    Values <= 0 go to bin 0; values above the last edge go to the last bin.
    """
    h = np.asarray(entropy_nats, dtype=np.float64)
    idx = np.searchsorted(edges, h, side="right")  # h in [edges[i-1], edges[i]) -> i
    idx = np.clip(idx, 1, len(edges) - 1)
    return np.where(h <= 0.0, 0, idx)


def quantiles_from_hist(counts: np.ndarray, edges: np.ndarray, qs: list[float] | np.ndarray) -> np.ndarray:
    """Quantiles (nats) read from a histogram, interpolating geometrically inside log bins.

    ``counts`` has shape ``(len(edges),)`` (bin 0 = exact zeros). The result lies in the same bin as the exact
    quantile of the underlying tokens. Returns NaN for every q when the histogram is empty.
    """
    counts = np.asarray(counts, dtype=np.float64)
    qs = np.asarray(qs, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return np.full(qs.shape, np.nan)
    cum = np.cumsum(counts)
    out = np.empty(qs.shape)
    for j, q in enumerate(qs):
        # rank of the quantile among the sorted tokens, as torch.quantile's linear rule: (n-1)*q (0-based)
        rank = q * (total - 1)
        b = int(np.searchsorted(cum, rank, side="right"))
        b = min(b, len(counts) - 1)
        if b == 0:
            out[j] = 0.0
            continue
        lo, hi = edges[b - 1], edges[b]
        before = cum[b - 1] if b > 0 else 0.0
        frac = (rank - before + 0.5) / counts[b] if counts[b] > 0 else 0.5
        frac = min(max(frac, 0.0), 1.0)
        if lo <= 0.0:  # first positive bin (0, 1e-4): linear
            out[j] = lo + frac * (hi - lo)
        else:
            out[j] = lo * (hi / lo) ** frac
    return out
