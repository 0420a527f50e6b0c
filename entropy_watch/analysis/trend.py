"""Small robust-trend statistics shared by the layers: Theil–Sen slope, Mann–Kendall test, block means, OLS.

All take 1-D float arrays and ignore non-finite entries. O(n²) pairwise work is bounded by the callers' windows
(≤ 200 points, or ≤ 40 block means).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i < j of n points (cached: the windows repeat their lengths)."""
    i, j = np.triu_indices(n, k=1)
    return i, j


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Theil–Sen line (slope, intercept): median of pairwise slopes, breakdown ≈ 29% (Sen 1968)."""
    x, y = _finite(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    if x.size < 2:
        return float("nan"), float("nan")
    i, j = _pairs(x.size)
    dx = x[j] - x[i]
    ok = dx != 0
    if not ok.any():
        return float("nan"), float("nan")
    slope = float(np.median((y[j] - y[i])[ok] / dx[ok]))
    return slope, float(np.median(y - slope * x))


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
    _, counts = np.unique(y, return_counts=True)
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
