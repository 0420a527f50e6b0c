"""Small robust-trend statistics shared by the layers: Theil–Sen slope, Mann–Kendall test, block means, OLS.

All take 1-D float arrays and ignore non-finite entries. O(n²) pairwise work is bounded by the callers' windows
(≤ 200 points, or ≤ 40 block means).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

PAIRS_BASE = 256  # the pairs of up to this many points are taken from those of this many (below)


@lru_cache(maxsize=1)
def _base_pairs() -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(PAIRS_BASE, k=1)


@lru_cache(maxsize=64)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i < j of n points in ``np.triu_indices`` order (cached: the windows repeat their lengths). Up to
    :data:`PAIRS_BASE` points, the pairs of that many with j < n: the same pairs in the same (row-major) order, 7×
    cheaper than ``np.triu_indices`` — a forecast's windows take 40-200 lengths, more than the cache holds."""
    if n <= PAIRS_BASE:
        i, j = _base_pairs()
        keep = j < n
        return i[keep], j[keep]
    i, j = np.triu_indices(n, k=1)
    return i, j


def median(x: np.ndarray) -> np.float64:
    """``np.median`` of a 1-D array, bit for bit and of the same type, without its generic-axis machinery (a
    forecast takes thousands of medians of 3-200 values, and ``np.median``'s overhead was 4× its partition): the
    same ``np.partition`` call (same kth, NaN check included), then the middle value or the mean of the middle two
    as ``np.mean`` sums them, from 0.0: (0.0 + a + b) / 2; NaN when any value is NaN. Anything else (empty, n-D,
    another dtype) goes to ``np.median``."""
    x = np.asarray(x)
    n = x.size
    if n == 0 or x.ndim != 1 or not (x.dtype == np.float64 or x.dtype.kind in "iu"):
        return np.median(x)
    h = n // 2
    if x.dtype == np.float64:
        part = np.partition(x, [h - 1, h, -1] if n % 2 == 0 else [h, -1])
        if part[-1] != part[-1]:  # NaN sorts last
            return np.float64("nan")
    else:  # integers: np.mean takes them as floats
        part = np.partition(x, [h - 1, h] if n % 2 == 0 else [h])
    if n % 2:  # np.mean's sum starts from 0.0: a median -0.0 reads 0.0
        return np.float64(0.0 + float(part[h]))
    return np.float64((0.0 + float(part[h - 1]) + float(part[h])) / 2.0)


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Theil–Sen line (slope, intercept): median of pairwise slopes, breakdown ≈ 29% (Sen 1968)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):  # (only pairs and elementwise work read them: no copy)
        x, y = _finite(x, y)
    if x.size < 2:
        return float("nan"), float("nan")
    i, j = _pairs(x.size)
    dx = x[j] - x[i]
    ok = dx != 0
    if not ok.any():
        return float("nan"), float("nan")
    dy = y[j] - y[i]
    slope = float(median(dy / dx if ok.all() else dy[ok] / dx[ok]))
    return slope, float(median(y - slope * x))


def mann_kendall(y: np.ndarray) -> tuple[float, float]:
    """Mann–Kendall trend test on ``y`` (in order): (z, two-sided p), normal approximation with tie correction.

    Assumes independence: call it on block means or pre-whitened data (DETECTION §B.2 card 6 — autocorrelation
    inflates its size: 28% rejections at φ = 0.6 on raw data, 7.5% on 5-point block means).
    """
    y = np.asarray(y, dtype=np.float64)
    y = y[np.isfinite(y)]
    n = y.size
    if n < 4:
        return 0.0, 1.0
    i, j = _pairs(n)
    s = float(np.sign(y[j] - y[i]).sum())
    ys = np.sort(y)  # the sizes of groups of equal values (np.unique's counts, without its generic machinery)
    counts = np.diff(np.concatenate(([0], np.flatnonzero(ys[1:] != ys[:-1]) + 1, [n])))
    ties = counts[counts > 1]
    var = (n * (n - 1) * (2 * n + 5) - float((ties * (ties - 1) * (2 * ties + 5)).sum())) / 18.0
    if var <= 0:
        return 0.0, 1.0
    z = (s - math.copysign(1.0, s)) / math.sqrt(var) if s != 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return z, p


def coarse(y: np.ndarray, max_points: int = 40) -> np.ndarray:
    """Block means of ``y`` with as few blocks as keep at most ``max_points`` values (for O(n²) tests on long
    series; block means also damp autocorrelation)."""
    y = np.asarray(y, dtype=np.float64)
    return block_means(y, max(1, -(-y.size // max_points)))


def block_means(y: np.ndarray, block: int) -> np.ndarray:
    """Means of consecutive blocks of ``block`` values, aligned to the END of ``y`` (the oldest partial block is
    dropped), NaN-aware; shape (len(y) // block,)."""
    y = np.asarray(y, dtype=np.float64)
    nb = y.size // block
    if nb == 0:
        return np.zeros(0)
    tail = y[y.size - nb * block :].reshape(nb, block)
    with np.errstate(all="ignore"):
        cnt = np.isfinite(tail).sum(axis=1)
        sums = np.where(np.isfinite(tail), tail, 0.0).sum(axis=1)
        return np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)


def ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares ``y = a + b·x``: (a, b, R²)."""
    x, y = _finite(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    if x.size < 3 or np.ptp(x) == 0:
        return float("nan"), float("nan"), float("nan")
    with np.errstate(all="ignore"):  # centred normal equations: x may be exp(H) of a huge H (a summed entropy)
        dx, dy = x - x.mean(), y - y.mean()
        b = float((dx * dy).sum() / (dx * dx).sum())
        a = float(y.mean() - b * x.mean())
        ss = float((dy * dy).sum())
        r2 = 1.0 - float(((dy - b * dx) ** 2).sum()) / ss if ss > 0 else float("nan")
    if not (np.isfinite(a) and np.isfinite(b)):
        return float("nan"), float("nan"), float("nan")
    return a, b, r2


def lag1_autocorr(x: np.ndarray) -> float:
    """Lag-1 autocorrelation of ``x`` (finite values, mean removed), clipped to [0, 0.95]."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 5:
        return 0.0
    x = x - x.mean()
    den = float(np.dot(x, x))
    if den <= 0:
        return 0.0
    return float(np.clip(np.dot(x[:-1], x[1:]) / den, 0.0, 0.95))
