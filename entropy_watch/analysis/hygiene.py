"""L0 hygiene: the preparation every detector needs (DETECTION.md §B.1, with its correction for sparse logs).

* one point per policy version (the series is already one value per logged step; repeated steps keep the last);
* exact zeros before the run's first positive entropy are *not measured yet* (a logger's placeholder before the
  entropy is computed: a language model's mean token entropy is never exactly 0 at its first steps) and are left
  out like missing values, with a note (:func:`unmeasured_note`): taken as measurements, they made H_ref 0 nats and
  every later value an infinite multiple of it;
* log H, so multiplicative decay is linear and the noise closer to homoscedastic;
* segments restart at known change points (``events``: resume, LR-schedule change, config edit);
* H_ref, the early level, per segment, from its first points — *including* a fast early drop (a run at 0.77 nats at
  step 0 and 0.003 by step 10 has H_ref ≈ 0.77). When entropy already fell by more than half before the detector
  armed, the next few points decide: still falling → H_ref stays the early level (a collapse in progress); settled
  → the early drop was an adaptation (e.g. learning the output format) and the settled level is H_ref; back above
  the first points (the level since the dip, or the last three of those points) or climbing again → no established
  drop, H_ref from the first points. Either way the reference says so (:class:`RefInfo`'s note). On a noisy start
  H_ref is the median of as many first points as a level needs at that noise, unless the start shows a trend first
  (then its first points' median, from the point the trend showed).
  Once the run's noise is known, the early level is retaken from as many first points as a level needs at that
  noise (``early_more``; H_ref itself stays put): when three calm-looking first points read the level low by
  chance, the explosion lines rise to it and a collapse's loss is measured against it (:meth:`Prepared.retaken`);
* warm-up: decisions from the 6th point of a segment (the 10th after an early drop), later when the run states an
  LR warm-up or a planned length (3% of it);
* the floor ``max(floor_rel·H_ref, min(floor_abs, depletion_frac·H_ref))`` (a fall, never the early level
  itself); the run's own noise σ from the differenced MAD of log H
  (``1.4826·MAD(Δx)/√2``, as rldoctor), so a trend does not inflate it; the level, a causal rolling median whose
  width grows with that noise (3 points on a clean log, up to 31 on a noisy one: :func:`level_widths`);
* the sawtooth period of several epochs per batch (ACF peak of the differences), so windows can be averaged per cycle.

Every per-point array here is causal: entry i depends only on points ≤ i. That is what makes live and post-hoc
analysis agree at every step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from entropy_watch.analysis.alert import fmt_nats
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.series import RunSeries
from entropy_watch.analysis.trend import mann_kendall, median

MAD_TO_SIGMA = 1.4826  # MAD of a normal sample times this estimates its σ
MEDIAN_SE = 1.25  # the standard error of a median of k points is ≈ 1.25σ/√k (√(π/2): its efficiency)
NOISE_CHUNK = 50_000  # noise windows computed at once


def robust_sigma(x: np.ndarray) -> float:
    """Noise σ of ``x`` from its differences: 1.4826·MAD(Δx)/√2 (NaN-aware; NaN when < 3 finite points)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 3:
        return float("nan")
    d = np.diff(x)
    return float(MAD_TO_SIGMA * median(np.abs(d - median(d))) / np.sqrt(2.0))


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


def causal_median_var(x: np.ndarray, widths: np.ndarray, start: int = 0, chunk: int = 200_000) -> np.ndarray:
    """Rolling median with a per-point width for points ``start``.. (shape (n − start,)): entry i is the NaN-aware
    median of the last ``widths[i − start]`` values up to i. Computed per distinct width on the points that use it,
    in chunks (bounded memory)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    out = np.full(n - start, np.nan)
    if n <= start:
        return out
    big = int(widths.max())
    view = sliding_window_view(np.concatenate([np.full(big - 1, np.nan), x]), big)  # row i: x[i-big+1 .. i]
    has_nan = not np.isfinite(x[max(0, start - big) :]).all()
    for w in np.unique(widths):
        idx = np.flatnonzero(widths == w)
        for lo in range(0, idx.size, chunk):
            part = idx[lo : lo + chunk]
            win = view[part + start, big - int(w) :]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                clean = not has_nan and part[0] + start >= int(w) - 1
                out[part] = np.median(win, axis=1) if clean else np.nanmedian(win, axis=1)
    return out


def points_needed(sigma: np.ndarray | float, config: DetectorConfig) -> np.ndarray:
    """How many points a median needs for a standard error of ``level_tol`` at noise σ (1.25σ/√k, the median's
    efficiency), at most ``smooth_max_points``; 0 where σ is unknown. Same shape as ``sigma``, int64. The one rule
    behind the level's width, a noisy start's H_ref and the early level retaken once the noise is known."""
    sig = np.asarray(sigma, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        need = np.ceil((MEDIAN_SE * np.where(np.isfinite(sig), sig, 0.0) / config.level_tol) ** 2)
    return np.minimum(need, config.smooth_max_points).astype(np.int64)


def level_widths(sigma: np.ndarray, config: DetectorConfig) -> np.ndarray:
    """Width of the level's median per point, shape (n,): odd, from ``smooth_points`` to ``smooth_max_points``,
    enough for a standard error of ``level_tol`` given the noise σ (:func:`points_needed`)."""
    return np.maximum(points_needed(sigma, config), config.smooth_points) | 1


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


@dataclass(frozen=True)
class RefInfo:
    """How one segment's H_ref was taken: the value (nats), the point indices it came from, the index from which
    it applies (the segment's arming point), the method in plain words and a note on an early drop."""

    value: float
    first: int
    last: int
    known_at: int
    method: str
    note: str | None = None


@dataclass
class Prepared:
    """Per-point arrays (all shape (n,)) after hygiene.

    ``log_h`` is log(H + eps) (NaN where H is not finite); ``finite[i]`` whether H is a finite measured value (the
    run's leading exact zeros, ``unmeasured``, are not: :func:`leading_zeros`); ``seg_start[i]`` the index where i's
    segment began; ``h_ref[i]`` the segment's early level (NaN until the segment arms); ``ref_seg[i]`` the same
    level on *every* point of the segment once it is known (for holds that began before the arming point; read it
    only at armed points); ``ref_n[i]`` how many finite points H_ref was taken from (likewise on every point of the
    segment); ``early_more[i]`` the early level retaken from as many first points as the noise measured by i says a
    level needs (NaN until that is more than ``ref_n`` and they are in; :func:`_early_level_retaken`);
    ``floor[i]`` the collapse floor in nats (``floor_seg`` likewise);
    ``armed[i]`` whether decisions may be taken at i; ``smooth[i]`` the level (causal rolling median of H over a
    noise-scaled width);
    ``sigma[i]`` the robust noise σ of log H over the trailing ``noise_points``; ``ln_v[i]`` the log of the stated
    vocabulary size ``vocab_size`` (nats), NaN where V is unknown or a value up to i lay above it
    (:func:`consistent_ln_v`); ``refs`` the :class:`RefInfo` of each armed segment, by its start index.
    """

    steps: np.ndarray
    h: np.ndarray
    log_h: np.ndarray
    finite: np.ndarray
    unmeasured: np.ndarray
    seg_start: np.ndarray
    h_ref: np.ndarray
    ref_seg: np.ndarray
    ref_n: np.ndarray
    early_more: np.ndarray
    floor: np.ndarray
    floor_seg: np.ndarray
    armed: np.ndarray
    smooth: np.ndarray
    sigma: np.ndarray
    reward: np.ndarray | None
    ln_v: np.ndarray
    vocab_size: int | None
    planned_steps: int | None
    refs: dict[int, RefInfo]

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    @property
    def origin(self) -> int:
        """Index of the run's first measured point: :func:`origin_of` its ``unmeasured``."""
        return origin_of(self.unmeasured)

    def ref_at(self, i: int) -> RefInfo | None:
        """The reference that applies at point i (None before the segment arms)."""
        r = self.refs.get(int(self.seg_start[i])) if 0 <= i < len(self) else None
        return r if r is not None and r.known_at <= i else None

    def ref_se(self, i: int | slice | np.ndarray) -> np.ndarray:
        """Standard error of log H_ref at point(s) i, in log units: H_ref is the median of the ``ref_n`` finite points
        it was taken from, so 1.25σ/√k with σ the run's noise now (NaN where H_ref is unknown). On a noisy start whose
        first points looked calm, k is smaller than the noise turns out to need, and this exceeds ``level_tol``."""
        return MEDIAN_SE * self.sigma[i] / np.sqrt(self.ref_n[i])

    def ref_error(self, i: int | slice | np.ndarray, tol: float, z: float) -> np.ndarray:
        """Factor (≥ 1) for H_ref's own error at point(s) i: exp(``z`` × the part of :meth:`ref_se` beyond ``tol``),
        1 where H_ref is unknown. H_ref taken from a few points of a run that turns out noisy may sit low or high by
        that much by chance: the explosion lines are raised by it (guards.line_lift), the collapse depletion line
        lowered (collapse.conditions)."""
        with np.errstate(invalid="ignore"):
            excess = np.nan_to_num(np.maximum(self.ref_se(i) - tol, 0.0))
        return np.exp(z * excess)

    def retaken(self, i: int | slice | np.ndarray, tol: float) -> np.ndarray:
        """Factor (≥ 1) from H_ref to the early level the rules measure against at point(s) i: the early level retaken
        from as many first points as the noise needs (``early_more``) over H_ref, where that is higher by more than
        exp(``tol``) (a difference the two estimates' own error would not make), else 1. Three calm-looking first
        points of a run that turns out noisy may read the early level low by chance: a healthy two-fold rise would
        then read as three-fold (guards.line_lift), and a collapse that lost 70% of its early level as 60%."""
        with np.errstate(invalid="ignore", divide="ignore"):  # H_ref 0: no factor scales nothing to a level
            r = np.nan_to_num(np.where(self.ref_seg[i] > 0, self.early_more[i] / self.ref_seg[i], np.nan), nan=1.0)
        return np.where(r > np.exp(tol), r, 1.0)

    def spacing(self, lo: int, hi: int) -> float:
        """Median step between consecutive points in [lo, hi] (1.0 when undefined)."""
        if hi <= lo:
            return 1.0
        return float(max(median(np.diff(self.steps[lo : hi + 1])), 1))


def _early_reference(h: np.ndarray, steps: np.ndarray, fin: np.ndarray, config: DetectorConfig) -> RefInfo | None:
    """H_ref of one segment whose finite point indices are ``fin`` (see the module docstring); None until known."""
    k, warm = config.ref_points, config.warmup_points
    if fin.size <= warm:
        return None
    first = h[fin[:k]]
    # falling fast: the first points fall by more than half, and the points up to the arming point stay down (on
    # a noisy start three decreasing points happen by chance, and the next ones bounce back)
    falling = k >= 2 and bool(np.all(np.diff(first) < 0)) and first[-1] < config.early_drop_frac * first[0]
    falling = falling and float(median(h[fin[k : warm + 1]])) < config.early_drop_frac * first[0]
    if falling:
        early, method = float(first[0]), "the first logged point, entropy already falling fast"
    else:
        early = float(median(first))
        method = f"the median of the first {k} logged points" if k > 1 else "the first logged point"
    arm = int(fin[warm])
    at_arm = float(median(h[fin[max(0, warm - 2) : warm + 1]]))
    if not at_arm < config.early_drop_frac * early:
        return _first_points_reference(h, fin, early, method, arm, config, falling=falling)
    # entropy fell by more than half before the detector armed: did it hold there? When it did not, the fall is not
    # established and H_ref is the ordinary one, from the first points (their median), known from the point that
    # showed it
    plain = (float(median(first)), f"the median of the first {k} logged points" if k > 1 else method)
    drop = f"{100 * (1 - at_arm / early):.0f}% ({early:.3g} -> {at_arm:.3g} nats) by step {int(steps[arm])}"
    back = (f"entropy dipped {drop}, before the detector armed, then climbed back: no level it settled at, so H_ref "
            f"is the first points' level ({plain[1]})")  # fmt: skip
    end = warm + config.adapt_points
    for j in range(warm + 1, min(end, fin.size - 1) + 1):
        if float(median(h[fin[max(0, warm - 2) : j + 1]])) > early:
            # the level since the dip is back above the first points' (a dip, then a rise — on a run logged every
            # 12 steps, the rasbt 7_5 explosion 0.16, 0.8, 1.7, 0.39, 0.33, 7.9, 11.7 nats read "an adaptation"
            # settled at 11.7 nats, and the run at uniform noise read "ok")
            return _climbed_back(h, fin, plain, int(fin[j]), config, back)
    if fin.size <= end:
        return None
    # it held: is it still falling?
    pts = h[fin[max(0, warm - 2) : end + 1]]
    z, p = mann_kendall(np.log(np.maximum(pts, 0.0) + config.log_eps_nats))
    still = (z < 0 and p / 2 < config.adapt_alpha) or float(median(pts[-3:])) < config.early_drop_frac * at_arm
    if still:
        note = f"entropy had already fallen {drop}, before the detector armed, and kept falling"
        return RefInfo(early, int(fin[0]), int(fin[0] if falling else fin[k - 1]), int(fin[end]), method, note)
    recent = float(median(pts[-3:]))
    if (z > 0 and p / 2 < config.adapt_alpha and recent > at_arm / config.early_drop_frac) or recent > early:
        # nor held steady: climbing again, as far as the drop fell (their median would be a level on the way up: the
        # rasbt 7_5 explosion averaged over every 2 steps, 0.78, 0.2, 0.17, 0.21, 0.31, 0.24, 0.53, 0.61, 0.83, read
        # H_ref 0.53 and was flagged 24 points late; a bounce within the noise is still a settled level), or its
        # last points back above the first points' level (the Sunshine rho 0.50 TRL log, 0.158, 0.142, 0.18, 0.175,
        # 0.076, 0.069, 0.076, 0.50, 0.65, 0.15 nats, read "held steady" at their median 0.153)
        return _climbed_back(h, fin, plain, int(fin[end]), config, back)
    settled = float(median(pts))
    note = (
        f"entropy fell {drop}, before the detector armed, then held steady: an early adaptation, so H_ref is the "
        f"level it settled at, not the first points' {early:.3g} nats"
    )
    lo = int(fin[max(0, warm - 2)])
    return RefInfo(
        settled,
        lo,
        int(fin[end]),
        int(fin[end]),
        f"the median of the {pts.size} points where its early fall settled",
        note,
    )


def _climbed_back(
    h: np.ndarray, fin: np.ndarray, plain: tuple[float, str], known_at: int, config: DetectorConfig, note: str
) -> RefInfo | None:
    """H_ref of a start that dipped by more than half before the arming point and climbed back: the first points'
    level (``plain``: value, method), with ``note`` saying so."""
    ref = _first_points_reference(h, fin, *plain, known_at, config, moving=True)
    return None if ref is None else replace(ref, note=note)


def _first_points_reference(
    h: np.ndarray,
    fin: np.ndarray,
    early: float,
    method: str,
    known_at: int,
    config: DetectorConfig,
    *,
    falling: bool = False,
    moving: bool = False,
) -> RefInfo | None:
    """H_ref from the first points: ``early`` (as :func:`_early_reference` took it), or on a noisy start as many
    first points as the level needs for its target error (1.25σ/√k = ``level_tol``, σ measured on the points up to
    the arming point), provided they show no trend. A start that already moves (``falling``, or ``moving``: a dip
    and a climb before the arming point) is judged on its first points. Applies from index ``known_at``, or from the
    last point a noisy start's decision read (either way, once its points are in: the run cut anywhere gets the same
    value); None while those points are still coming."""
    k, warm = config.ref_points, config.warmup_points
    if not (falling or moving):
        y = np.log(np.maximum(h[fin], 0.0) + config.log_eps_nats)
        sig = robust_sigma(y[: warm + 1])
        need = max(int(points_needed(sig, config)), k)
        if need > k:
            # a start that moves is judged on its first points: decided once all the points a level at this noise
            # needs are in (``trend_alpha``), or earlier by a trend clear at every look (``trend_alpha`` over the
            # number of looks, Bonferroni: one look per point would otherwise find a trend in a flat noisy start by
            # chance) — waiting for all of them left the rules blind meanwhile (the rasbt 7_5 climb passed 3x its
            # first points' level 10 points before the 31 points its start's noise asks for were in)
            last = max(warm, need - 1)
            looks = range(warm + 1, min(need, fin.size) + 1)
            strict = config.trend_alpha / max(need - warm, 1)
            moved = next((m for m in looks if not _trendless(y[:m], config.trend_alpha if m == need else strict)), None)
            if moved is not None:
                return RefInfo(early, int(fin[0]), int(fin[k - 1]), max(known_at, int(fin[moved - 1])), method)
            if fin.size <= last:
                return None
            known_at = max(known_at, int(fin[last]))
            noisy = f"the median of the first {need} logged points, a noisy start: σ {sig:.2f} in log units"
            return RefInfo(float(median(h[fin[:need]])), int(fin[0]), int(fin[need - 1]), known_at, noisy)
    return RefInfo(early, int(fin[0]), int(fin[0] if falling else fin[k - 1]), known_at, method)


def _trendless(y: np.ndarray, alpha: float) -> bool:
    """No significant trend in ``y`` (Mann–Kendall p ≥ ``alpha``, ``trend_alpha`` unless tested at several looks):
    first points that may be averaged into an early level. A start that already moves is judged on its first points
    instead."""
    return not mann_kendall(y)[1] < alpha


def _early_level_retaken(
    h: np.ndarray, fin: np.ndarray, sigma: np.ndarray, ref: RefInfo, config: DetectorConfig
) -> list[tuple[int, float]]:
    """The early level retaken from as many first points as the run's noise says it needs, as the noise becomes known:
    (index from which it applies, nats) each time that count grows. At each point of the segment's first
    ``noise_points``, the points a median needs at the noise measured so far (:func:`points_needed`); when that is
    more than H_ref was taken from and the segment has them, and they show no trend (a start that moves is judged on
    its first points), their median. Empty for a start that fell fast or adapted (H_ref is deliberately not an
    average there). Each entry depends only on points up to where it applies."""
    if ref.note is not None or ref.first == ref.last:
        return []
    out: list[tuple[int, float]] = []
    have = int(np.searchsorted(fin, ref.last)) + 1
    y = np.log(np.maximum(h[fin], 0.0) + config.log_eps_nats)
    for p in range(int(np.searchsorted(fin, ref.known_at)), min(fin.size, config.noise_points)):
        sig = float(sigma[fin[p]])
        if not np.isfinite(sig):
            continue
        need = int(points_needed(sig, config))
        if need <= have or need > p + 1 or not _trendless(y[:need], config.trend_alpha):
            continue
        have = need
        out.append((int(fin[p]), float(median(h[fin[:need]]))))
    return out


def climb_starts(prep: Prepared, config: DetectorConfig) -> np.ndarray:
    """Per point (n,), where the current climb began: the point after the level last sat at or under
    ``climb_from_mult``·H_ref (its segment's start when it never has)."""
    with np.errstate(invalid="ignore"):
        calm = prep.smooth <= config.climb_from_mult * prep.ref_seg
    last = np.maximum.accumulate(np.where(calm, np.arange(calm.size), -1))
    return np.maximum(last + 1, prep.seg_start)


def _noise(
    log_h: np.ndarray, seg_start: np.ndarray, config: DetectorConfig, start: int = 0, origin: int = 0
) -> np.ndarray:
    """Causal robust σ of log H per point over the segment's trailing ``noise_points``, for points ``start``..
    (shape (n − start,)). Computed at every point of the first ``noise_points`` of a segment and then at every 10th
    point from ``origin`` (``Prepared.origin``), carried forward in between, so a long run costs n/10 windows;
    vectorised (one sliding window of differences). Entries from ``start`` on only need points ≤ themselves, so a
    live run computes its new tail."""
    n = log_h.size
    w = config.noise_points
    out = np.full(n, np.nan)
    if n < 4 or start >= n:
        return out[start:]
    pos = np.arange(n) - seg_start
    rule = (pos < w) | ((np.arange(n) - origin + 1) % 10 == 0)
    first = int(np.flatnonzero(rule[: start + 1])[-1]) if start and rule[: start + 1].any() else start
    at_all = np.flatnonzero(rule[first:]) + first  # the last computed point before `start` too: it is carried
    d = np.diff(log_h)  # d[j] = log_h[j+1] - log_h[j]
    padded = np.concatenate([np.full(w - 2, np.nan), d])  # window starting at padded[i-1]: d[i-w+1 .. i-1]
    view = sliding_window_view(padded, w - 1)
    for c in range(0, at_all.size, NOISE_CHUNK):  # bounded memory on long runs
        at = at_all[c : c + NOISE_CHUNK]
        win = view[np.clip(at - 1, 0, None)].copy()
        j = at[:, None] - w + 1 + np.arange(w - 1)[None, :]
        win[j < seg_start[at][:, None]] = np.nan  # only differences inside the point's segment
        win[at == 0] = np.nan
        ok = np.isfinite(win)
        full = ok.all(axis=1)
        sig = np.full(at.size, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for rows, med in ((full, np.median), (~full, np.nanmedian)):  # nanmedian is many times slower
                if rows.any():
                    v = win[rows]
                    sig[rows] = MAD_TO_SIGMA * med(np.abs(v - med(v, axis=1, keepdims=True)), axis=1) / np.sqrt(2)
        out[at] = np.where(ok.sum(axis=1) >= 3, sig, np.nan)
    at = at_all
    # carry forward (causal), but never from before the point was computed
    mark = np.zeros(n, dtype=np.int64)
    mark[at] = at
    return out[np.maximum.accumulate(mark)][start:]


def consistent_ln_v(h: np.ndarray, finite: np.ndarray, vocab: int | None, config: DetectorConfig) -> np.ndarray:
    """ln V per point, shape (n,), in nats; NaN everywhere when V is unknown, and from the first finite entropy above
    (1 + ``lnv_excess_frac``)·ln V on: a per-token entropy in nats cannot exceed ln V, so such a value says the
    column is something else (summed over a sequence, in bits) or V is wrong, and ln V is not used from there. Causal:
    a prefix gets the same values."""
    n = h.size
    if not vocab or vocab < 2:
        return np.full(n, np.nan)
    ln_v = float(np.log(vocab))
    with np.errstate(invalid="ignore"):
        above = finite & (h > (1.0 + config.lnv_excess_frac) * ln_v)
    return np.where(np.logical_or.accumulate(above), np.nan, ln_v)


def _whole(value: object) -> int | None:
    """A stated vocabulary size as an int ≥ 2, or None (absent, or not a number: a hand-edited run.json)."""
    try:
        v = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    return v if v >= 2 else None


def lnv_note(prep: Prepared) -> str | None:
    """Why ln V stopped being used, when a logged entropy contradicted the stated vocabulary (None otherwise)."""
    if prep.vocab_size is None or not len(prep) or np.isfinite(prep.ln_v[-1]):
        return None
    i = int(np.flatnonzero(~np.isfinite(prep.ln_v))[0])
    ln_v = float(np.log(prep.vocab_size))
    return (
        f"entropy {fmt_nats(float(prep.h[i]))} nats at step {int(prep.steps[i])} is above ln V = {ln_v:.2f}, the most "
        f"a vocabulary of {prep.vocab_size} allows: the logged value is not a per-token entropy in nats (summed over "
        "a sequence? in bits?) or the vocabulary size is wrong; ln V is not used from there"
    )


def low_start_note(prep: Prepared, config: DetectorConfig) -> str | None:
    """Why the floor is a share of H_ref rather than the absolute floor, when the run's early level sits so low that
    the absolute floor would be no fall at all (None otherwise)."""
    if not len(prep):
        return None
    floor, ref = float(prep.floor[-1]), float(prep.h_ref[-1])
    if not (np.isfinite(floor) and floor < config.floor_abs_nats * (1 - 1e-12)):
        return None
    share = f"{100 * floor / ref:.0f}% of H_ref" if ref > 0 else "H_ref itself"
    return (
        f"entropy starts low: H_ref {fmt_nats(ref)} nats is under {1 / config.depletion_frac:g}x the absolute floor "
        f"({fmt_nats(config.floor_abs_nats)} nats), so the floor is {share} ({fmt_nats(floor)} nats): a collapse "
        "is a fall from the run's own level"
    )


def leading_zeros(h: np.ndarray) -> np.ndarray:
    """(n,) bool: the exact zeros of ``h`` (n,) before its first finite positive value — all of them when there is
    none yet. Causal: entry i depends on h[: i + 1] only."""
    pos = np.flatnonzero(np.isfinite(h) & (h > 0))
    upto = int(pos[0]) if pos.size else h.size
    out = np.zeros(h.size, dtype=bool)
    out[:upto] = h[:upto] == 0
    return out


def origin_of(unmeasured: np.ndarray) -> int:
    """Index of the run's first measured point: 0 unless it starts with placeholder zeros (``unmeasured``, (n,)
    bool), whose points the index-keyed choices (noise schedule, forecast schedule, bootstrap seeds) do not count, so
    the run reads as it would without them."""
    zeros = np.flatnonzero(unmeasured)
    return int(zeros[-1]) + 1 if zeros.size else 0


def unmeasured_note(prep: Prepared, logged: np.ndarray) -> str | None:
    """A note when the run starts with zeros (:func:`leading_zeros`), else None; ``logged`` (n,) is the entropy as
    logged, which tells zeros from values below 0 (read as 0)."""
    k = int(prep.unmeasured.sum())
    if k == 0:
        return None
    idx = np.flatnonzero(prep.unmeasured)
    span = (
        f"step {int(prep.steps[idx[0]])}" if k == 1 else f"steps {int(prep.steps[idx[0]])}-{int(prep.steps[idx[-1]])}"
    )
    value = "0 or negative" if bool((np.asarray(logged)[idx] < 0).any()) else "exactly 0"
    if prep.finite.any():
        zeros = "the first logged entropy is" if k == 1 else f"the first {k} logged entropies are"
        return (f"{zeros} {value} ({span}): read as not measured yet (a logger's placeholder), not as a policy with "
                f"no entropy; H_ref and the noise are taken from step {int(prep.steps[prep.origin])}")  # fmt: skip
    return (f"every logged entropy so far is {value} ({k} point{'s' if k > 1 else ''}, {span}): read as not "
            "measured yet (a logger's placeholder), so nothing is judged; a policy with no entropy from its first step "
            "collapsed before the log began: check what the logger records")  # fmt: skip


def prepare(series: RunSeries, config: DetectorConfig, previous: Prepared | None = None) -> Prepared:
    """Apply L0 hygiene to ``series`` (see the module docstring). ``previous``, the result for a prefix of the same
    series (same points, same change points), lets the noise and the level be computed for the new points only."""
    steps = series.steps
    e = series.entropy  # an entropy is never below 0: a finite value that is (an estimator's rounding, a loss -H
    h = np.where(np.isfinite(e) & (e < 0), 0.0, e)  # mapped by mistake) reads as 0; NaN and ±inf stay for the guard
    n = h.size
    unmeasured = leading_zeros(h)
    origin = origin_of(unmeasured)
    finite = np.isfinite(h) & ~unmeasured
    with np.errstate(all="ignore"):
        log_h = np.where(finite, np.log(np.maximum(h, 0.0) + config.log_eps_nats), np.nan)

    # segments restart at known change points, and after the leading zeros (the run begins where it is measured)
    mark = np.zeros(n, dtype=bool)
    mark[1:] = unmeasured[:-1] & ~unmeasured[1:]
    resets = series.reset_steps()
    if resets and n:
        starts = np.unique(np.searchsorted(steps, np.asarray(resets), side="left"))
        mark[starts[(starts > 0) & (starts < n)]] = True
    seg_start = np.maximum.accumulate(np.where(mark, np.arange(n), 0))

    m = 0
    if previous is not None and len(previous) <= n and np.array_equal(previous.seg_start, seg_start[: len(previous)]):
        m = len(previous)  # the caller vouches that the first m points are the same
    sigma = np.concatenate([previous.sigma[:m] if m else np.zeros(0), _noise(log_h, seg_start, config, m, origin)])

    h_ref = np.full(n, np.nan)
    ref_seg = np.full(n, np.nan)
    ref_n = np.full(n, np.nan)
    early_more = np.full(n, np.nan)
    refs: dict[int, RefInfo] = {}
    seg_starts = np.unique(seg_start) if n else np.zeros(0, dtype=np.int64)
    for s, end in zip(seg_starts, [*seg_starts[1:], n] if n else [], strict=True):  # no points: no segment
        idx = np.arange(s, end)
        fin = idx[finite[idx]]
        ref = _early_reference(h, steps, fin, config)
        if ref is not None and 0 < s == origin:  # after placeholder zeros
            ref = replace(ref, method=ref.method.replace("logged point", "measured point"))
        if ref is not None:
            refs[int(s)] = ref
            h_ref[ref.known_at : end] = ref.value
            ref_seg[s:end] = ref.value
            ref_n[s:end] = max(int(finite[ref.first : ref.last + 1].sum()), 1)
            for at, value in _early_level_retaken(h, fin, sigma, ref, config):
                early_more[at:end] = value

    floor_seg = np.where(np.isfinite(ref_seg), config.floor(ref_seg), np.nan)
    floor = np.where(np.isfinite(h_ref), floor_seg, np.nan)

    planned = series.meta.get("planned_steps")
    lr_warm = series.meta.get("lr_warmup_steps")
    armed = np.isfinite(h_ref)
    if lr_warm:
        armed &= steps >= int(lr_warm)
    if planned:
        armed &= steps >= int(0.03 * int(planned))

    h_fin = np.where(finite, h, np.nan)
    tail = causal_median_var(h_fin, level_widths(sigma[m:], config), m) if n > m else np.zeros(0)
    smooth = np.concatenate([previous.smooth[:m] if m else np.zeros(0), tail])
    vocab = _whole(series.meta.get("vocab_size"))
    return Prepared(
        steps=steps,
        h=h,
        log_h=log_h,
        finite=finite,
        unmeasured=unmeasured,
        seg_start=seg_start,
        h_ref=h_ref,
        ref_seg=ref_seg,
        ref_n=ref_n,
        early_more=early_more,
        floor=floor,
        floor_seg=floor_seg,
        armed=armed,
        smooth=smooth,
        sigma=sigma,
        reward=series.reward(),
        ln_v=consistent_ln_v(h, finite, vocab, config),
        vocab_size=vocab,
        planned_steps=int(planned) if planned else None,
        refs=refs,
    )
