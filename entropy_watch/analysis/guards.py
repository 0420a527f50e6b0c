"""L1 guards: hard, level-based rules that need no forecast (DETECTION §B.5).

* non-finite entropy → critical at once (no warm-up);
* floor: the smoothed entropy under ``max(floor_rel·H_ref, floor_abs)`` for ``floor_hold`` versions → critical
  collapse (the late, certain signal; L3 warns before it);
* depletion: the smoothed entropy under ``depletion_frac·H_ref`` (a quarter of the early level) for
  ``depletion_hold`` versions → collapse warning (the labels' definition of collapse: "falls to about a quarter of
  H_ref or less and stays there");
* explosion: the smoothed entropy above ``explode_warn_mult`` times its baseline (min of H_ref and the lagged median
  of the last 200 versions, so a run that settled low is judged against where it settled) for ``explode_hold``
  versions → warning; above ``explode_crit_mult`` times it or ``explode_lnv_frac·ln V`` → critical. Healthy runs may
  rise 2–3×, hence 3×.

Each rule latches after firing and re-arms only when the smoothed entropy is back clear of its threshold
(hysteresis, ``rearm_floor_mult``). Every rule is a pure causal scan over the prefix.
"""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis.alert import Alert, fmt_nats, pct_change
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.hygiene import Prepared, causal_median


def _latched_onsets(cond: np.ndarray, rearm: np.ndarray, hold: int) -> list[int]:
    """Indices where ``cond`` has held ``hold`` consecutive versions while armed; after firing, disarmed until
    ``rearm`` is True."""
    out: list[int] = []
    run, armed = 0, True
    for i in range(cond.size):
        if not armed and rearm[i]:
            armed = True
        run = run + 1 if cond[i] else 0
        if armed and run >= hold:
            out.append(i)
            armed, run = False, 0
    return out


def nonfinite(prep: Prepared) -> list[Alert]:
    """One critical alert at the first non-finite value of each run of them."""
    bad = ~prep.finite
    out = []
    for i in np.flatnonzero(bad & ~np.concatenate([[False], bad[:-1]])):
        j = i
        while j + 1 < bad.size and bad[j + 1]:
            j += 1
        v = prep.h[i]
        msg = f"entropy is {v} at step {prep.steps[i]}"
        if j > i:
            msg += f" ({j - i + 1} non-finite values through step {prep.steps[j]})"
        out.append(
            Alert(
                step=int(prep.steps[i]),
                detector="guard.nonfinite",
                kind="nonfinite",
                severity="critical",
                message=msg + ": logits or loss diverged, or the logger recorded a failed step",
                evidence={"value": str(v), "first_step": int(prep.steps[i]), "count": int(j - i + 1)},
            )
        )
    return out


def _level_alert(
    prep: Prepared, i: int, detector: str, kind: str, severity: str, what: str, thr: float, ref: float | None = None
) -> Alert:
    """A level-rule alert; ``ref`` is the level the change is measured against (default H_ref)."""
    if ref is None:
        ref = float(prep.h_ref[i]) if np.isfinite(prep.h_ref[i]) else float("nan")
    now = float(prep.smooth[i])
    msg = f"{what}: entropy {fmt_nats(now)} nats at step {prep.steps[i]}"
    if np.isfinite(ref):
        msg += f", {pct_change(ref, now)} vs its reference level {fmt_nats(ref)}"
    msg += f" (threshold {fmt_nats(thr)})"
    return Alert(
        step=int(prep.steps[i]),
        detector=detector,
        kind=kind,
        severity=severity,
        message=msg,
        evidence={"h_now": now, "h_ref": ref, "threshold": thr, "floor": float(prep.floor[i])},
    )


def floor_and_depletion(prep: Prepared, config: DetectorConfig) -> list[Alert]:
    """Collapse guards: the floor (critical) and depletion to a quarter of H_ref (warning)."""
    s, armed = prep.smooth, prep.armed
    with np.errstate(invalid="ignore"):
        below = armed & (s <= prep.floor)
        rearm = s > config.rearm_floor_mult * prep.floor
        depl_thr = config.depletion_frac * prep.h_ref
        typical = causal_median(np.where(prep.finite, prep.h, np.nan), config.depletion_hold)
        depleted = armed & (typical <= depl_thr) & (prep.h_ref > config.floor_abs_nats)  # else: the floor's job
        depl_rearm = typical > config.rearm_floor_mult * depl_thr
    out = []
    for i in _latched_onsets(below, rearm, config.floor_hold):
        out.append(
            _level_alert(
                prep,
                i,
                "guard.floor",
                "collapse",
                "critical",
                f"entropy at the floor for {config.floor_hold} steps",
                float(prep.floor[i]),
            )
        )
    for i in _latched_onsets(depleted, depl_rearm, 1):
        lost = 1.0 - float(typical[i] / prep.h_ref[i])
        out.append(
            _level_alert(
                prep,
                i,
                "guard.depletion",
                "collapse",
                "warning",
                f"entropy has lost {100 * lost:.0f}% of its early level "
                f"(median of the last {config.depletion_hold} steps)",
                float(depl_thr[i]),
            )
        )
    return out


def explosion_base(prep: Prepared, config: DetectorConfig) -> np.ndarray:
    """The level explosion multiples apply to, shape (n,): min(H_ref, the median of the previous
    ``explode_base_versions`` versions, lagged 50 versions so a rise does not lift its own baseline)."""
    lag = 50
    med = causal_median(np.where(prep.finite, prep.h, np.nan), config.explode_base_versions)
    lagged = np.concatenate([np.full(min(lag, med.size), np.nan), med[: max(med.size - lag, 0)]])
    base = np.maximum(np.fmin(prep.h_ref, lagged), config.floor_abs_nats)  # a zero level cannot be multiplied
    return np.where(np.isfinite(prep.h_ref), base, np.nan)


def explosion(prep: Prepared, config: DetectorConfig) -> list[Alert]:
    """Explosion guards: above a multiple of H_ref (warning, critical) or near ln V (critical)."""
    s = prep.smooth
    lnv_thr = config.explode_lnv_frac * prep.ln_v
    base = explosion_base(prep, config)
    with np.errstate(invalid="ignore"):
        warn_thr = config.explode_warn_mult * base
        crit_thr = np.fmin(config.explode_crit_mult * base, lnv_thr)
        ref_ok = np.isfinite(prep.h_ref)
        warn = prep.armed & (s > warn_thr)
        crit = (prep.armed & (s > crit_thr)) | (~ref_ok & (s > lnv_thr))
        warn_rearm = s < 0.8 * warn_thr
        crit_rearm = s < 0.8 * np.where(ref_ok, crit_thr, lnv_thr)
    out = []
    for i in _latched_onsets(warn, warn_rearm, config.explode_hold):
        what = f"entropy above {config.explode_warn_mult:g}x its baseline for {config.explode_hold} steps"
        out.append(
            _level_alert(prep, i, "guard.explosion", "explosion", "warning", what, float(warn_thr[i]), float(base[i]))
        )
    for i in _latched_onsets(crit, crit_rearm, config.explode_hold):
        thr = float(crit_thr[i]) if ref_ok[i] else lnv_thr
        what = f"entropy exploding (over {fmt_nats(thr)} nats; uniform noise is ln V = {prep.ln_v:.1f})"
        out.append(_level_alert(prep, i, "guard.explosion", "explosion", "critical", what, thr, float(base[i])))
    return out


def detect(prep: Prepared, config: DetectorConfig) -> list[Alert]:
    """All L1 guards over the prefix in ``prep``."""
    return nonfinite(prep) + floor_and_depletion(prep, config) + explosion(prep, config)
