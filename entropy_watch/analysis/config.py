"""Detector thresholds: one dataclass, each field documented once (DETECTION.md §B.5, corrected for sparse logs §B.1).

Every count is in **logged points** (one value per logged step after L0 hygiene), and every window, warm-up and
hold scales with the points the run has: TRL logs every few steps, so tens of points per run is the common case.
Levels are relative to H_ref, the run's early entropy level; noise is the run's own (robust σ of Δlog H).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DetectorConfig:
    """Every threshold the layered detector uses (points, fractions of H_ref, nats, or σ of the run's own noise)."""

    # --- L0 hygiene --------------------------------------------------------------------------------------------
    warmup_points: int = 5
    """Decisions start at the point after these: the 6th logged point of a segment (non-finite values: at once)."""
    ref_points: int = 3
    """H_ref is the median of the first this-many finite points (or the first point, when they fall fast)."""
    early_drop_frac: float = 0.5
    """Entropy below this share of H_ref when the detector arms means it dropped before the detector could see it;
    the first points are then 'falling fast' when they fall monotonically below this share within ref_points."""
    adapt_points: int = 4
    """After an early drop, this many more points decide whether entropy is still falling (collapse, judged against
    the early level) or has settled (an adaptation: the settled level becomes H_ref)."""
    adapt_alpha: float = 0.1
    """One-sided Mann–Kendall level at which the points after an early drop count as 'still falling'."""
    log_eps_nats: float = 1e-6
    """Added before log H so exact zeros stay finite."""
    smooth_points: int = 3
    """The level the rules read is a causal rolling median of at least this many points ..."""
    smooth_max_points: int = 31
    """... and at most this many: as many as it takes for the level's standard error (≈1.25σ/√w) to be level_tol,
    with σ the run's own noise, so a noisy log (σ 0.4, one prompt per step) gets a ~17-point median and a clean one
    a 3-point median."""
    level_tol: float = 0.15
    """Target standard error of the level in log units (±16%)."""
    noise_points: int = 50
    """Trailing points the run's noise σ (robust, from differences of log H) is estimated on."""

    # --- L1 levels: floor, depletion, explosion ----------------------------------------------------------------
    floor_rel: float = 0.10
    """Collapse floor relative to H_ref (DETECTION §B.5: 0.10·H_ref)."""
    floor_abs_nats: float = 0.02
    """Absolute collapse floor per token; the floor is max(floor_rel·H_ref, min(floor_abs_nats,
    depletion_frac·H_ref)): a run whose early level sits under 4× this (0.08 nats) would otherwise be "at the floor"
    after a dip within its noise (DETECTION §B.1: fixed absolute thresholds misfire on low-entropy runs), so its floor
    is a quarter of H_ref, a fall, and a note says so (hygiene.low_start_note)."""
    depletion_frac: float = 0.25
    """A level at or under this share of H_ref is a collapse warning (the labels: 'a quarter of H_ref or less')."""
    decline_lost: float = 0.6
    """A significant decline still going that has lost at least this share of H_ref is a collapse warning ("loses
    most of it, 60-70%, in a steady decline that is still going"; healthy runs "may drop by half early on"). This and
    forecast_min_lost read the early level retaken from more first points when H_ref read it low (Prepared.retaken,
    level_tol)."""
    hold_points: int = 3
    """Points a condition must hold before it fires when the move is at least hold_z noise σ past its threshold
    (entropy tripling in two points is evidence enough); an excursion that ends sooner is a transient spike."""
    hold_noisy_points: int = 5
    """The hold when the move is within hold_z σ of the threshold (the run's own noise could have made it).
    Rules on the level (a rolling median, which already spans several points) hold one point less, or two less
    for a noisy move."""
    hold_z: float = 4.0
    """How many noise σ past a threshold make a move clear."""
    explode_warn_mult: float = 3.0
    """Explosion warning above this multiple of H_ref (healthy runs may rise two- or threefold and settle)."""
    explode_crit_mult: float = 6.0
    """Explosion critical above this multiple of H_ref."""
    ref_error_z: float = 1.0
    """Both explosion lines are raised by this many times the part of H_ref's standard error (1.25σ/√k for a median
    of k points) beyond level_tol: H_ref taken from a few calm-looking points of a run that turns out noisy may sit
    low by chance (a healthy two-fold rise then reads as three-fold). Once the noise is known, the lines rise instead
    to the early level retaken from as many first points as it needs, when that is higher by more than level_tol
    (guards.line_lift). The collapse depletion line (depletion_frac·H_ref) is lowered by the same factor: H_ref may
    as well sit high by chance, and a healthy halving then reads as a fall to a quarter (collapse.conditions). Clean
    and dense logs are unaffected."""
    explode_lnv_frac: float = 0.5
    """When the vocabulary V is known: explosion critical above this share of ln V (uniform noise) as well."""
    rise_frac: float = 0.25
    """A gradual climb past the explosion level fires after two points when log H rose significantly over the
    trailing clamp(rise_frac·points so far, 5, rise_max_points) points (the trend is the evidence, not the hold)."""
    rise_max_points: int = 30
    reward_hold_z: float = 1.0
    """On a plateau — the level above climb_from_mult·H_ref for longer than that trend window — an explosion warning
    without a clear margin (the two-point path, or the noisy hold) also needs the reward, when logged, to have fallen
    since the climb began: its median over the excursion lower than over the points before the climb by more than
    this many standard errors. Else only a clear move (hold_z σ past the line) or the critical line fires: healthy
    runs rise two- or threefold and hold while the reward holds (the labels), and on a noisy log such a plateau puts
    two, or five, points in a row past 3× H_ref by chance. A climb still within its window fires as before (an
    explosion's first points past 3× can come while the reward still holds: rasbt ch07 7_3)."""
    climb_from_mult: float = 1.5
    """The climb began after the level last sat at or under this multiple of H_ref."""
    explode_reward_mult: float = 2.0
    """A rise past this multiple of H_ref is an explosion warning when the reward fell meanwhile (to half its level
    before the rise, by at least reward_drop_abs of its ceiling): healthy runs rise two- or threefold while reward
    holds; an explosion degenerates the output and reward falls."""
    reward_drop_abs: float = 0.2
    """The smallest reward move that counts (a share of its ceiling), falling (explosion) or climbing (saturation)."""
    near_uniform_frac: float = 0.7
    """When V is known: H_ref above this share of ln V is a near-uniform start (an info note, never an explosion)."""
    lnv_excess_frac: float = 0.02
    """When V is known: an entropy above (1 + this)·ln V contradicts it (no distribution over V tokens has more; the
    margin covers low-precision rounding), so ln V is not used from that point (a note says why)."""
    spike_z: float = 4.0
    """A transient spike (info) must exceed the explosion threshold and sit this many σ above the level before it."""
    rearm_frac: float = 0.5
    """Collapse alerts re-arm once the level is back above this share of H_ref; explosion alerts once it is back
    under rearm_explode_mult·H_ref (hysteresis)."""
    rearm_explode_mult: float = 2.0

    # --- L2 cliffs ---------------------------------------------------------------------------------------------
    cusum_k: float = 0.5
    """CUSUM reference value in σ units (half the smallest shift to detect)."""
    cusum_h: float = 16.0
    """CUSUM decision interval in σ units (NIST tables: h=5 gives ARL0≈465 on i.i.d. data). Raised for the
    autocorrelation left in the innovations — by the noise, and by the rolling reference line, whose error is shared
    by the points it predicts: h=8 signalled every ~300 points of pure noise, h=16 every ~3,000, which the
    cliff_min_log size test then discards; a real cliff of 10σ or more still signals within two points."""
    cliff_min_log: float = 0.3
    """A cliff must also move the median by at least this much in log H (±35%) to be reported."""
    cliff_ref_versions: int = 50
    """Trailing window the cliff detector's local trend and noise are estimated on (cliffs need dense logs)."""
    cliff_stride: int = 10
    """The cliff detector refits that trend every this-many points (index-aligned) and extrapolates in between."""

    # --- L3 forecast -------------------------------------------------------------------------------------------
    forecast_min_points: int = 10
    """The decay forecast runs from this many points of a segment on."""
    eval_stride_div: int = 50
    """The forecast is evaluated at index i, then at i + max(1, i // eval_stride_div): every point up to 100,
    every 20th at 1,000, every 200th at 10,000 (a function of i only, so live and post hoc agree)."""
    window_frac: float = 0.5
    """Forecast window W = clamp(window_frac·points so far, forecast_min_points, window_span_max) points ..."""
    window_span_max: int = 20_000
    window_max: int = 200
    """... read as at most this many values: block means of consecutive points beyond it (cost, and autocorrelation:
    a block mean is closer to independent)."""
    trend_alpha: float = 0.05
    """One-sided Mann–Kendall level of the decline gate (block means past 40 points, else an AR(1) variance
    inflation: autocorrelation otherwise inflates the test's size, DETECTION §B.4)."""
    recent_alpha: float = 0.1
    """One-sided level at which the window's recent half must still fall for the decline to be 'still going' ..."""
    recent_frac: float = 0.33
    """... at no less than this share of the whole window's rate (a decline that levelled off is not going on)."""
    forecast_min_lost: float = 0.3
    """The early (forecast) warning needs at least this share of H_ref lost: a healthy early dip is not a collapse."""
    horizon_frac: float = 1.0
    """Forecast horizon: as long again as the segment has run (capped by the planned end when known) ..."""
    horizon_window_mult: float = 2.0
    """... and by this many times the fit window's span: "imminent" and "soon" never reach past what the fit saw."""
    eta_prob: float = 0.8
    """The forecast warns when P(floor within the horizon) over the bootstrap is at least this."""
    eta_interval: float = 0.8
    """Central probability of the ETA interval every surface shows (80%: the 10th to the 90th percentile)."""
    eta_spread: float = 1.5
    """The ETA interval's spread around its median (in log(1 + ETA)) is widened this many times: the fits' own
    uncertainty leaves out what no fit knows (the rate changing, an alert raised on a low point). Calibrated on the
    synthetic tuning seeds so the 80% interval covers ~80% of true crossings; benchmarks report held-out seeds."""
    imminent_frac: float = 0.1
    """Critical 'imminent': the interval's upper end is within max(imminent_min_points, imminent_frac·points so
    far) points."""
    imminent_min_points: int = 3
    bootstrap: int = 200
    """Bootstrap resamples for the ETA distribution."""
    persist_of: tuple[int, int] = (2, 3)
    """The forecast warning needs k of the last n evaluations positive."""

    # --- L4 corroboration --------------------------------------------------------------------------------------
    reward_max: float = 1.0
    """Reward ceiling (a success rate, an accuracy; a run states another in run.json, ``--reward-max``). Once a
    reward above it is seen the ceiling is unknown and the task is never judged solved (DetectorConfig.ceiling):
    the largest reward seen is no ceiling. How far the reward fell before an explosion is then measured on the
    run's own range (guards.reward_fell); whether most groups fail reads max(reward_max, the largest reward seen)."""
    saturated_frac: float = 0.97
    """The task is solved when the lower quartile of the recent reward is at least this share of the ceiling: a
    collapse there is benign (info)."""
    saturating_frac: float = 0.9
    """... or when the reward is still climbing significantly (MK, plateau_alpha; by reward_drop_abs of the ceiling
    over the window) and its last points are already at this share of it: the task is being solved as entropy
    falls."""
    plateau_alpha: float = 0.1
    """The reward is still climbing only with a one-sided Mann–Kendall p under this (and a material slope, below);
    else it is on a plateau (corroborate.reward_climbing: what the collapse decline rule, the reward_plateau flag and
    saturation read; the explosion's two-point path asks a narrower question of its excursion:
    guards.reward_improving)."""
    plateau_slope_frac: float = 0.01
    """... and a climb needs a Sen slope of at least this share of max(the reward's range, reward_max) per 100 logged
    points: a flat reward's noise passes the test alone one time in ten on a long window."""
    law_min_pairs: int = 30
    law_min_dh_frac: float = 0.20
    law_min_r2: float = 0.5
    headroom_min: float = 0.02
    zero_var_frac: float = 0.5
    """Share of groups with all-equal rewards that counts as 'zero-variance groups' (a warning while the reward is
    under half its ceiling; info when most groups are all-correct)."""
    sustain_frac: float = 0.25
    """A corroborating signal must persist clamp(sustain_frac·points so far, sustain_min, sustain_max) points."""
    sustain_min: int = 5
    sustain_max: int = 20

    # --- L5 policy ---------------------------------------------------------------------------------------------
    cooldown_points: int = 20
    """At most one info note (cliff, spike) per detector within this many points."""

    def ceiling(self, seen_max: float) -> float | None:
        """The reward's ceiling: ``reward_max`` while no reward seen (``seen_max`` the largest) exceeds it; None
        (unknown) once one does — a sum of reward functions, a reward model's score, a reward shifted or scaled:
        the largest reward seen is no ceiling (a reward on a plateau sits near its own maximum by definition), so
        whether the task is solved is not judged, and a collapse is never excused as one."""
        return self.reward_max if self._under_max(seen_max) else None

    def _under_max(self, seen_max: Any) -> Any:
        """Whether no reward seen (``seen_max``, a float or an array of them) exceeds ``reward_max``."""
        with np.errstate(invalid="ignore"):
            return np.asarray(seen_max) <= self.reward_max * (1 + 1e-9)

    def reward_scale(self, lo: Any, hi: Any) -> tuple[Any, Any]:
        """(base, span) a reward level is read against, given the lowest and largest rewards seen (floats, or arrays
        of them point by point): (0, ``reward_max``) for a reward on [0, ``reward_max``]; the run's own range (lo,
        hi − lo) for one above its ceiling (:meth:`ceiling`) or below 0 — so a reward shifted or scaled reads as the
        same reward on [0, 1]."""
        with np.errstate(invalid="ignore"):
            bounded = (np.asarray(lo) >= 0) & self._under_max(hi)  # on [0, the ceiling]
        base, span = np.where(bounded, 0.0, lo), np.where(bounded, self.reward_max, np.subtract(hi, lo))
        return (float(base), float(span)) if np.ndim(bounded) == 0 else (base, span)

    def floor(self, h_ref: Any) -> Any:
        """The collapse floor (nats) under the early level ``h_ref`` (a float or an array of them):
        ``max(floor_rel·H_ref, min(floor_abs_nats, depletion_frac·H_ref))``, and ``floor_abs_nats`` when H_ref is
        zero (under ``log_eps_nats``: no entropy at all is collapsed, whatever came before) — the one definition the
        detector, the benchmark's scoring and the synthetic runs' truth use."""
        capped = np.minimum(self.floor_abs_nats, self.depletion_frac * h_ref)
        absolute = np.where(np.asarray(h_ref) <= self.log_eps_nats, self.floor_abs_nats, capped)
        return np.maximum(self.floor_rel * h_ref, absolute)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(f.default, tuple):
                continue  # persist_of: checked below
            whole = isinstance(f.default, int)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral if whole else numbers.Real):
                what = "a whole number" if whole else "a number"
                raise TypeError(f"DetectorConfig.{f.name} must be {what} (default {f.default!r}), got {v!r}")
            if not math.isfinite(v):
                raise ValueError(f"DetectorConfig.{f.name} must be finite, got {v}")
            if v < 0:
                raise ValueError(f"DetectorConfig.{f.name} must be >= 0, got {v}")
            if whole and v >= 2**31:  # a count of points, draws or steps: beyond any run (numpy would overflow)
                raise ValueError(f"DetectorConfig.{f.name} must be below 2**31, got {v}")
        for name, least in (("noise_points", 2), ("cliff_ref_versions", 2), ("bootstrap", 1)):  # a spread needs 2
            if getattr(self, name) < least:
                raise ValueError(f"DetectorConfig.{name} must be >= {least}, got {getattr(self, name)}")
        for name in ("floor_rel", "early_drop_frac", "depletion_frac", "decline_lost", "eta_prob", "eta_interval"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"DetectorConfig.{name} must be in (0, 1), got {getattr(self, name)}")
        if not self.forecast_min_points <= self.window_max <= self.window_span_max:
            raise ValueError("DetectorConfig needs forecast_min_points <= window_max <= window_span_max")
        if self.cliff_stride < 1:
            raise ValueError("DetectorConfig.cliff_stride must be >= 1")
        if self.smooth_max_points < self.smooth_points:
            raise ValueError("DetectorConfig.smooth_max_points must be >= smooth_points")
        if self.ref_points < 1 or self.hold_points < 2 or self.smooth_points < 1 or self.eval_stride_div < 1:
            raise ValueError("DetectorConfig needs ref_points, smooth_points, eval_stride_div >= 1, hold_points >= 2")
        if self.hold_noisy_points < self.hold_points:
            raise ValueError("DetectorConfig.hold_noisy_points must be >= hold_points")
        if self.warmup_points + 1 < self.ref_points:
            raise ValueError("DetectorConfig.warmup_points + 1 must be >= ref_points")
        if not 1 < self.explode_warn_mult <= self.explode_crit_mult:
            raise ValueError("DetectorConfig needs 1 < explode_warn_mult <= explode_crit_mult")
        pair = self.persist_of
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, numbers.Integral) for x in pair)):
            raise TypeError(f"DetectorConfig.persist_of must be a pair of whole numbers (k, n), got {pair!r}")
        k, n = pair
        if not 1 <= k <= n:
            raise ValueError(f"DetectorConfig.persist_of must be (k, n) with 1 <= k <= n, got {self.persist_of}")

    @property
    def min_points(self) -> int:
        """Points a segment needs before any decision (the 'too short' threshold)."""
        return self.warmup_points + 1

    def sustain(self, n_points: int) -> int:
        """Points a corroborating signal must persist, given the points seen so far."""
        return int(min(self.sustain_max, max(self.sustain_min, round(self.sustain_frac * n_points))))
