"""Display-side helpers of the app: the step window a user picked, the smoothing users know from TensorBoard and
W&B, and how numbers and H/H_ref ratios read. Pure (no Streamlit); the store's reads already arrive downsampled
(``entropy_watch.store.reads``), this only reshapes them for the eye."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from entropy_watch.analysis import DetectorConfig
from entropy_watch.store.reads import BIG


@dataclass(frozen=True)
class Window:
    """The step range the user picked: ``lo..hi`` inclusive (None = open end), or the ``last`` N steps of a run."""

    lo: int | None = None
    hi: int | None = None
    last: int | None = None

    def bounds(self, last_step: int | None) -> tuple[int, int]:
        """Concrete inclusive bounds for a run whose newest step is ``last_step``."""
        if self.last is not None and last_step is not None:
            return max(0, int(last_step) - int(self.last) + 1), BIG
        return (int(self.lo) if self.lo is not None else -BIG), (int(self.hi) if self.hi is not None else BIG)


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average with ``weight`` in [0, 1) (0 = off), skipping
    non-finite values (they stay NaN). ``values`` (n,) -> (n,)."""
    v = np.asarray(values, dtype=np.float64)
    if weight <= 0 or v.size == 0:
        return v
    out = np.full(v.shape, np.nan)
    last, k = 0.0, 0
    for i, x in enumerate(v):
        if not math.isfinite(x):
            continue
        last = last * weight + (1.0 - weight) * x
        k += 1
        out[i] = last / (1.0 - weight**k)
    return out


def fmt_num(x: float | None, digits: int = 3) -> str:
    """A number as it reads best: "—" when missing, scientific below 1e-3 (8.7e-05 never shows as 0.000),
    ``digits`` significant digits below 1, ``digits`` decimals up to 10⁴, whole numbers with separators above."""
    if x is None or not math.isfinite(x):
        return "—"
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.{max(digits - 1, 1)}e}"
    if abs(x) < 1:
        return f"{x:.{digits}g}"
    return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.{digits}f}"


def ratio_bands(cfg: DetectorConfig | None = None) -> tuple[tuple[float, str, str], ...]:
    """H/H0 bands from the detector's own thresholds, each (upper bound, meaning, cell colour): under ``floor_rel``
    the run sits at the collapse floor, under ``1 − decline_lost`` it has lost most of its entropy, from
    ``rearm_explode_mult`` it is high and from ``explode_warn_mult`` it has exploded."""
    c = cfg or DetectorConfig()
    return (
        (c.floor_rel, "collapsed", "#f6c6c6"),
        (1.0 - c.decline_lost, "low", "#fde0bf"),
        (c.rearm_explode_mult, "normal", "#d5eed8"),
        (c.explode_warn_mult, "high", "#fde0bf"),
        (math.inf, "exploding", "#e3d0f5"),
    )


def ratio_meaning(ratio: float | None, cfg: DetectorConfig | None = None, spiking: bool = False) -> tuple[str, str]:
    """``(meaning, colour)`` of an H/H0 ratio; ("", "") when unknown. ``spiking``: the verdict's explosion is
    unsettled (its median back down, its points still past the line: ``Problem.unsettled``), which the ratio of a
    median alone would call "normal" beside a critical health."""
    if ratio is None or not math.isfinite(ratio):
        return "", ""
    if spiking:
        return "spiking", ratio_bands(cfg)[-1][2]
    return next((m, c) for bound, m, c in ratio_bands(cfg) if ratio < bound)
