"""Detector thresholds: one dataclass, each field documented once (DETECTION.md §B.5 gives the defaults).

"Version" below means one point of the series after L0 hygiene: one value per policy update (logged step).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class DetectorConfig:
    """Every threshold the layered detector uses. All are in versions (steps after hygiene) or nats."""

    # --- L0 hygiene --------------------------------------------------------------------------------------------
    warmup_versions: int = 20
    """No alert (except non-finite values) during the first versions of each segment."""
    ref_early: int = 5
    """H_ref, the run's early entropy level, is the median of the first this-many finite versions of a segment."""
    ref_versions: int = 20
    """H_ref is known after this many versions; if entropy halved by then, H_ref is re-based on their median."""
    min_versions: int = 20
    """A series shorter than this gets no alert, only a 'too short' reason."""
    log_eps_nats: float = 1e-6
    """Added before log H so exact zeros stay finite."""

    # --- L1 guards ---------------------------------------------------------------------------------------------
    floor_rel: float = 0.10
    """Collapse floor relative to H_ref (DETECTION §B.5: 0.10·H_ref)."""
    floor_abs_nats: float = 0.02
    """Absolute collapse floor per token; the floor is max(floor_rel·H_ref, floor_abs_nats)."""
    floor_hold: int = 5
    """Versions the smoothed entropy must stay under the floor before the floor guard fires."""
    explode_warn_mult: float = 3.0
    """Explosion warning when the smoothed entropy stays above this multiple of H_ref (healthy runs rise 2-3x)."""
    explode_crit_mult: float = 6.0
    """Explosion critical above this multiple of H_ref."""
    explode_lnv_frac: float = 0.5
    """Explosion critical above this share of ln V (uniform noise is ln V)."""
    explode_hold: int = 5
    """Versions the smoothed entropy must stay above the explosion threshold."""
    smooth_versions: int = 5
    """Causal rolling-median width used by the guards."""
    depletion_frac: float = 0.25
    """'Depleted': smoothed entropy under this share of H_ref (the README's 'a quarter of H_ref or less')."""
    depletion_hold: int = 20
    """Depletion is judged on the causal rolling median over this many versions."""
    explode_base_versions: int = 200
    """Explosion multiples apply to min(H_ref, the rolling median of the previous this-many versions)."""

    # --- L2 cliffs ---------------------------------------------------------------------------------------------
    cusum_k: float = 0.5
    """CUSUM reference value in σ units (half the smallest shift to detect)."""
    cusum_h: float = 8.0
    """CUSUM decision interval in σ units (NIST tables: h=5 gives ARL0≈465 on i.i.d. data; raised for AR noise)."""
    cliff_min_log: float = 0.3
    """A cliff must also move the median by at least this much in log H (±35%) to be reported."""
    cliff_ref_versions: int = 50
    """Trailing window the cliff detector's local trend and noise are estimated on."""

    # --- L3 forecast -------------------------------------------------------------------------------------------
    eval_every: int = 10
    """The forecast is evaluated at every version index i with (i + 1) % eval_every == 0 (live = post hoc)."""
    dense_versions: int = 5000
    """Past this many versions the evaluation stride grows tenfold per decade (see ``run.eval_indices``)."""
    window_frac: float = 0.2
    """Forecast window W = clamp(window_frac·versions so far, window_min, window_max)."""
    window_min: int = 50
    window_max: int = 200
    trend_alpha: float = 0.01
    """Significance of the Mann–Kendall gate (on block means, which keeps its size under AR(1) noise)."""
    block: int = 5
    """Block length for the MK gate's block means and for the moving-block bootstrap."""
    min_decline_per_100: float = 0.20
    """Effect-size gate: Sen slope of log H must mean at least this relative decline per 100 versions."""
    recovery_mult: float = 2.0
    """A decline whose window starts above this multiple of H_ref is a recovery from an explosion, not a collapse."""
    horizon_versions: int = 150
    """Forecast horizon; min(remaining planned versions, this)."""
    eta_prob: float = 0.8
    """Warn when P(ETA ≤ horizon) over the bootstrap is at least this."""
    critical_eta_versions: int = 50
    """Critical when the upper 80% bound of the ETA is within this many versions."""
    bootstrap: int = 200
    """Bootstrap resamples for the ETA interval."""
    persist_of: tuple[int, int] = (2, 3)
    """The forecast warns when positive in 2 of the last 3 evaluations."""

    # --- L4 corroboration --------------------------------------------------------------------------------------
    reward_max: float = 1.0
    """Reward scale's ceiling: a recent reward median ≥ saturated_frac·reward_max means the task is solved."""
    saturated_frac: float = 0.95
    plateau_alpha: float = 0.1
    """Reward plateau: MK p ≥ this, or Sen slope < plateau_slope_frac of the reward range per 100 versions."""
    plateau_slope_frac: float = 0.01
    law_min_pairs: int = 30
    law_min_dh_frac: float = 0.20
    law_min_r2: float = 0.5
    headroom_min: float = 0.02
    zero_var_frac: float = 0.5
    """Share of groups with all-equal rewards that counts as 'zero-variance groups'."""
    sustain_versions: int = 20
    """Versions a corroborating signal (pg_drive > 0, zero-variance groups, precision bias) must persist."""

    # --- L5 policy ---------------------------------------------------------------------------------------------
    cooldown_versions: int = 50
    """At most one alert per (detector, kind) within this many versions, unless the severity rises."""
    rearm_floor_mult: float = 1.2
    """Hysteresis: a collapse detector re-arms after entropy climbs back above this multiple of the floor."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"DetectorConfig.{f.name} must be >= 0, got {v}")
        if not 0 < self.floor_rel < 1:
            raise ValueError(f"DetectorConfig.floor_rel must be in (0, 1), got {self.floor_rel}")
        if self.window_min > self.window_max:
            raise ValueError("DetectorConfig.window_min must be <= window_max")
        if self.eval_every < 1 or self.block < 1 or self.smooth_versions < 1:
            raise ValueError("DetectorConfig.eval_every, block and smooth_versions must be >= 1")
        k, n = self.persist_of
        if not 1 <= k <= n:
            raise ValueError(f"DetectorConfig.persist_of must be (k, n) with 1 <= k <= n, got {self.persist_of}")
