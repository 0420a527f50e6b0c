"""Axis ticks shared by the app's charts and the HTML report (plain numbers; no plotting library needed)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks for a log axis from ``lo`` to ``hi`` (both > 0), written as plain numbers ("0.001", "1e-04"; never
    Plotly's "1m" or "100µ", nor its bare minor digits, where a "2" under 0.1 means 0.02): each decade, with 2× and
    5× too when the range spans fewer than three decades."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    steps = (1.0,) if math.log10(hi / lo) >= 3 else (1.0, 2.0, 5.0)  # the span, not the decade lines it crosses
    vals = [m * 10.0**d for d in decades for m in steps if lo / 1.5 <= m * 10.0**d <= hi * 1.5]
    return vals, [f"{v:g}" if v >= 1e-3 else f"{v:.0e}" for v in vals]


def log_ticks_over(values: Iterable[object]) -> tuple[list[float], list[str]]:
    """:func:`log_ticks` over what a log axis draws: every finite value > 0 of ``values`` (arrays or numbers: its
    lines and the levels across it); ``([], [])`` when there is none."""
    arrays = [np.asarray(v, dtype=np.float64).ravel() for v in values]
    y = np.concatenate(arrays) if arrays else np.zeros(0)
    y = y[np.isfinite(y) & (y > 0)]
    return log_ticks(float(y.min()), float(y.max())) if y.size else ([], [])
