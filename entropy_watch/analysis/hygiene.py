"""L0 hygiene: the preparation every detector needs (DETECTION.md §B.1).

* one point per policy version (the series is already one value per logged step; repeated steps keep the last);
* log H, so multiplicative decay is linear and the noise closer to homoscedastic;
* warm-up: no alert during the first versions of a segment;
* segments restart at known change points (``events``: resume, LR-schedule change, config edit);
* H_ref, the early level, per segment; the floor ``max(floor_rel·H_ref, floor_abs)``;
* robust noise σ from the differenced MAD (``1.4826·MAD(Δx)/√2``, as rldoctor), so a trend does not inflate it;
* the sawtooth period of several epochs per batch (ACF peak of the differences), so windows can be averaged per cycle.

Every per-version array here is causal: entry i depends only on versions ≤ i. That is what makes live and post-hoc
analysis agree at every step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.series import RunSeries

MAD_TO_SIGMA = 1.4826  # MAD of a normal sample times this estimates its σ


def robust_sigma(x: np.ndarray) -> float:
    """Noise σ of ``x`` from its differences: 1.4826·MAD(Δx)/√2 (NaN-aware; NaN when < 3 finite points)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 3:
        return float("nan")
    d = np.diff(x)
    return float(MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def causal_median(x: np.ndarray, width: int) -> np.ndarray:
    """Rolling median of the last ``width`` values (NaN-aware), shape (n,); entry i uses x[max(0, i-width+1) : i+1]."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n == 0 or width <= 1:
        return x.copy()
    padded = np.concatenate([np.full(width - 1, np.nan), x])
    with warnings.catch_warnings():  # all-NaN windows give NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(sliding_window_view(padded, width), axis=1)


def run_length(mask: np.ndarray) -> np.ndarray:
    """For each i, how many consecutive True values end at i (0 where ``mask[i]`` is False)."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.size, dtype=np.int64)
    c = 0
    for i, m in enumerate(mask):
        c = c + 1 if m else 0
        out[i] = c
    return out


def sawtooth_period(x: np.ndarray, max_period: int = 12) -> int:
    """Period p ≥ 2 of a sawtooth (several epochs per rollout batch) in ``x``, or 1 when there is none.

    A reuse cycle makes the first differences strongly autocorrelated at lag p (B.1 item 1). Requires the ACF peak
    to exceed both 0.3 and 4/√n.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 4 * max_period:
        return 1
    d = np.diff(x)
    d = d - d.mean()
    var = float(np.dot(d, d))
    if var <= 0:
        return 1
    acf = np.array([np.dot(d[:-k], d[k:]) / var for k in range(2, max_period + 1)])
    k = int(np.argmax(acf))
    if acf[k] > max(0.3, 4.0 / np.sqrt(d.size)):
        return k + 2
    return 1


@dataclass
class Prepared:
    """Per-version arrays (all shape (n,)) after hygiene.

    ``log_h`` is log(H + eps) (NaN where H is not finite); ``seg_start[i]`` the index where i's segment began;
    ``h_ref[i]`` the segment's early level (NaN until known); ``floor[i]`` the collapse floor in nats;
    ``armed[i]`` False during warm-up; ``smooth[i]`` the causal rolling median of H.
    """

    steps: np.ndarray
    h: np.ndarray
    log_h: np.ndarray
    finite: np.ndarray
    seg_start: np.ndarray
    h_ref: np.ndarray
    floor: np.ndarray
    armed: np.ndarray
    smooth: np.ndarray
    reward: np.ndarray | None
    ln_v: float
    planned_steps: int | None

    def __len__(self) -> int:
        return int(self.steps.shape[0])


def prepare(series: RunSeries, config: DetectorConfig) -> Prepared:
    """Apply L0 hygiene to ``series`` (see the module docstring)."""
    from entropy_watch.histogram import DEFAULT_VOCAB_SIZE

    steps = series.steps
    h = series.entropy
    n = h.size
    finite = np.isfinite(h)
    with np.errstate(all="ignore"):
        log_h = np.where(finite, np.log(np.maximum(h, 0.0) + config.log_eps_nats), np.nan)

    # segments restart at known change points
    seg_start = np.zeros(n, dtype=np.int64)
    resets = series.reset_steps()
    if resets and n:
        starts = np.unique(np.searchsorted(steps, np.asarray(resets), side="left"))
        starts = starts[(starts > 0) & (starts < n)]
        mark = np.zeros(n, dtype=bool)
        mark[starts] = True
        seg_start = np.maximum.accumulate(np.where(mark, np.arange(n), 0))

    # H_ref, the early level: median of the first ref_early finite versions of the segment. When entropy fell by
    # more than half already during warm-up (an adaptation transient, e.g. learning the output format), the level
    # is re-based on the median of the first ref_versions instead. Known from version ref_versions on.
    h_ref = np.full(n, np.nan)
    seg_starts = np.unique(seg_start) if n else np.zeros(0, dtype=np.int64)
    for s, end in zip(seg_starts, [*seg_starts[1:], n], strict=True):
        idx = np.arange(s, end)
        fin = idx[finite[idx]]
        if fin.size >= config.ref_versions:
            first = h[fin[: config.ref_versions]]
            early = float(np.median(first[: config.ref_early]))
            late = float(np.median(first[-config.ref_early :]))
            ref = early if late >= 0.5 * early else float(np.median(first))
            h_ref[fin[config.ref_versions - 1] : end] = ref

    floor = np.maximum(config.floor_rel * h_ref, config.floor_abs_nats)
    floor = np.where(np.isfinite(h_ref), floor, np.nan)

    planned = series.meta.get("planned_steps")
    warm = config.warmup_versions
    lr_warm = series.meta.get("lr_warmup_steps")
    pos = np.arange(n) - seg_start
    armed = pos >= warm
    if lr_warm:
        armed &= steps >= int(lr_warm)
    if planned:
        armed &= steps >= int(0.03 * int(planned))
    armed &= np.isfinite(h_ref)

    h_fin = np.where(finite, h, np.nan)
    smooth = causal_median(h_fin, config.smooth_versions)
    vocab = series.meta.get("vocab_size") or DEFAULT_VOCAB_SIZE
    return Prepared(
        steps=steps,
        h=h,
        log_h=log_h,
        finite=finite,
        seg_start=seg_start,
        h_ref=h_ref,
        floor=floor,
        armed=armed,
        smooth=smooth,
        reward=series.reward(),
        ln_v=float(np.log(int(vocab))),
        planned_steps=int(planned) if planned else None,
    )
