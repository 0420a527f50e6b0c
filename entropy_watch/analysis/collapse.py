"""Collapse: one latched state per segment (none → warning → critical), fed by level rules and the L3 forecast.

Warnings (each with the decay outlook's ETA, even when the floor lies beyond the run's end):

* ``collapse.forecast`` — the early warning: a significant decline that already lost ``forecast_min_lost`` of H_ref
  and, in k of the last n forecasts, reaches the floor within the horizon with probability ≥ ``eta_prob``;
* ``collapse.decline`` — a significant decline (the forecast's trend gate) that has lost ``decline_lost`` of H_ref
  while the reward is not still improving: "a steady decline that has already lost most of H_ref while reward
  plateaus" (:func:`corroborate.reward_improving`). Both losses are measured against the early level retaken from
  more first points instead when H_ref read it low (:meth:`Prepared.retaken`), and the message says so;
* ``collapse.depletion`` — the level at or under ``depletion_frac``·H_ref ("a quarter of H_ref or less"), held; the
  line lowered by H_ref's own error beyond ``level_tol`` (``ref_error_z``), as the explosion lines are raised by it.

Critical only for the floor reached or imminent:

* ``collapse.floor`` — the level at or under the floor, held (guards.held, for a rolling median);
* ``collapse.imminent`` — most of H_ref lost (``decline_lost``) and the upper end of the ETA interval within
  max(``imminent_min_points``, ``imminent_frac``·points so far) points (never past the fit's horizon).

A state fires again only at a higher severity, or after re-arming (:func:`rearm_at`: the level back above
``rearm_frac``·H_ref, and clearly above where it stood when the state fired, for twice the hold).
L4 context is attached to every collapse alert; on a solved task it becomes an info ``saturation`` note.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from entropy_watch.analysis import corroborate
from entropy_watch.analysis.alert import Alert, fmt_nats, fmt_share
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.forecast import Forecast
from entropy_watch.analysis.guards import held, run_lengths
from entropy_watch.analysis.hygiene import Prepared
from entropy_watch.analysis.outlook import NOT_HELD, Outlook, floor_label, from_forecast
from entropy_watch.analysis.policy import apply_context, persistent
from entropy_watch.analysis.series import RunSeries

OutlookAt = Callable[[int], Outlook | None]
REASONS = ("forecast", "decline", "depletion", "floor", "imminent")


def decay_outlook(prep: Prepared, i: int, config: DetectorConfig, f: Forecast | None) -> Outlook | None:
    """The decay outlook of an always-fitted forecast ``f`` at point i (None without one)."""
    if f is None or f.model == "none":
        return None
    label = floor_label(float(prep.floor[i]), float(prep.h_ref[i]), config.floor_rel, config.floor_abs_nats)
    return from_forecast(f, label, config.eta_interval, prep.planned_steps, float(prep.smooth[i]))


def _imminent_steps(prep: Prepared, i: int, config: DetectorConfig) -> float:
    seg0 = int(prep.seg_start[i])
    pts = max(config.imminent_min_points, config.imminent_frac * (i - seg0 + 1))
    return pts * prep.spacing(max(seg0, i - 50), i)


def conditions(
    prep: Prepared, config: DetectorConfig, evals: dict[int, Forecast | None], memo: dict | None = None
) -> tuple[np.ndarray, np.ndarray, dict[int, str], dict[int, str]]:
    """(warn (n,), crit (n,), warning reason by index, critical reason by index): where each collapse state may
    fire, before latching. ``memo`` keeps the reward test per point between calls on a growing run."""
    memo = {} if memo is None else memo
    n = len(prep)
    ref, lvl, armed = prep.ref_seg, prep.smooth, prep.armed
    with np.errstate(invalid="ignore", divide="ignore"):
        floor_m = np.log(prep.floor_seg / lvl)
        # the depletion line is lowered by H_ref's own error where it exceeds the level's (the mirror of the
        # explosion lines' lift, guards.line_lift): H_ref taken from a few points of a noisy run may sit high by
        # chance, and a healthy halving would then read as a fall to a quarter (held-out 400-point suite: one false
        # alarm of 360 healthy runs on each of three seed sets, none of the collapses missed)
        lowered = prep.ref_error(slice(None), config.level_tol, config.ref_error_z)
        depl_m = np.log(config.depletion_frac * ref / (lvl * lowered))
        at_floor = held(floor_m >= 0, floor_m, prep.sigma, config, level=True) & armed
        depleted = held(depl_m >= 0, depl_m, prep.sigma, config, level=True) & armed
    warn = depleted.copy()
    crit = at_floor.copy()
    why_warn: dict[int, str] = {}
    why_crit: dict[int, str] = dict.fromkeys(np.flatnonzero(at_floor).tolist(), "floor")
    flags: list[bool] = []
    seg = -1
    k, m = config.persist_of
    for i in sorted(evals):
        f = evals[i]
        if i >= n or not armed[i]:
            continue
        if int(prep.seg_start[i]) != seg:
            seg, flags = int(prep.seg_start[i]), []
        flags.append(bool(f is not None and f.positive))
        if f is None:
            continue
        if f.gates and f.lost >= config.decline_lost and not _improving(prep, f, i, config, memo):
            warn[i] = True
            why_warn.setdefault(i, "decline")
        elif persistent(flags, k, m):
            warn[i] = True
            why_warn.setdefault(i, "forecast")
        soon = min(_imminent_steps(prep, i, config), f.horizon_steps)  # never beyond what the fit can see
        if (
            f.gates
            and f.lost >= config.decline_lost
            and f.model != "none"
            and f.late_at_rate <= soon
            and lvl[i] > prep.floor[i]
        ):
            crit[i] = True
            why_crit.setdefault(i, "imminent")
    for i in np.flatnonzero(depleted).tolist():
        why_warn.setdefault(i, "depletion")
    return warn, crit, why_warn, why_crit


def _message(prep: Prepared, i: int, reason: str, config: DetectorConfig, f: Forecast | None) -> str:
    ref, now = float(prep.h_ref[i]), float(prep.smooth[i])
    share = (
        f"{fmt_share(now / ref)} of H_ref {fmt_nats(ref)}" if ref > 0 else f"H_ref {fmt_nats(ref)}: no entropy early on"
    )
    if reason == "floor":
        return f"entropy reached the floor: {fmt_nats(now)} nats, {share} (floor {fmt_nats(float(prep.floor[i]))})"
    if reason == "depletion":
        return f"entropy is down to {fmt_nats(now)} nats, {share}: a quarter of its early level or less"
    span = f" since step {f.window_start_step}" if f is not None else ""
    if reason == "imminent":
        return f"entropy is about to reach the floor: {fmt_nats(now)} nats, {share}"
    what = "keeps falling" if reason == "decline" else "is falling fast"
    tail = ", most of its early level lost" if reason == "decline" else ""
    return f"entropy {what}{span}: {fmt_nats(now)} nats, {share}{tail}{_retaken_note(prep, i, config)}"


def _retaken_note(prep: Prepared, i: int, config: DetectorConfig) -> str:
    """'' or, when the loss the forecast and decline rules read was measured against the early level retaken from
    more first points (:meth:`Prepared.retaken`), what that level is."""
    if not float(prep.retaken(i, config.level_tol)) > 1.0:
        return ""
    early, now = float(prep.early_more[i]), float(prep.smooth[i])
    return (f"; {100 * (1 - now / early):.0f}% lost from the early level {fmt_nats(early)} nats that the run's first "
            f"points show at its noise (H_ref, from {int(prep.ref_n[i])} points, reads it low)")  # fmt: skip


def _improving(prep: Prepared, f: Forecast, i: int, config: DetectorConfig, memo: dict) -> bool:
    key = ("improving", i)
    if key not in memo:
        lo = int(np.searchsorted(prep.steps, f.window_start_step))
        memo[key] = corroborate.reward_improving(prep, lo, i, config)
    return bool(memo[key])


def rearm_at(prep: Prepared, i: int, config: DetectorConfig) -> int | None:
    """Where the collapse state that fired at point i re-arms (and its problem clears): the first point after i
    where the level has stood for 2·``hold_points`` points after i above ``rearm_frac``·H_ref — and above its own
    level at i by two of its standard errors (``level_tol``), since the early warnings fire before the level has
    fallen that far: a decline still going, or a bounce off a low point, is not "back". None while it has not."""
    lvl = prep.smooth[i + 1 :]
    above_alarm = prep.smooth[i] * np.exp(2 * config.level_tol)
    with np.errstate(invalid="ignore"):
        back = lvl > np.fmax(config.rearm_frac * prep.ref_seg[i + 1 :], above_alarm)
    k = np.flatnonzero(run_lengths(back) >= 2 * config.hold_points)
    return i + 1 + int(k[0]) if k.size else None


def _latched_ranks(warn: np.ndarray, crit: np.ndarray, rearm: Callable[[int], int | None]) -> list[tuple[int, int]]:
    """(index, rank) where the latched collapse state fires: a warning (1) or critical (2) fires at its first
    index, again only at a higher rank, and both re-arm at ``rearm(i)`` after the last firing i. Jumps from event
    to event (searchsorted), so a long collapse costs a few steps, not one per point."""
    w_idx, c_idx = np.flatnonzero(warn | crit), np.flatnonzero(crit)
    out: list[tuple[int, int]] = []
    pos = 0  # next candidate in w_idx
    while pos < w_idx.size:
        i = int(w_idx[pos])
        rank = 2 if crit[i] else 1
        out.append((i, rank))
        re_at = rearm(i)
        if rank == 1:  # the next firing: a critical before re-arming, or anything after it
            c = int(np.searchsorted(c_idx, i, side="right"))
            if c < c_idx.size and (re_at is None or c_idx[c] < re_at):
                pos = int(np.searchsorted(w_idx, c_idx[c], side="left"))
                continue
        if re_at is None:
            break
        pos = int(np.searchsorted(w_idx, re_at, side="left"))
    return out


def detect(
    series: RunSeries,
    prep: Prepared,
    config: DetectorConfig,
    evals: dict[int, Forecast | None],
    fit_at: Callable[[int], Forecast | None],
    memo: dict | None = None,
) -> list[Alert]:
    """Collapse alerts over the prefix. ``evals`` are the scheduled forecasts (gated); ``fit_at(i)`` returns the
    always-fitted decay forecast at i, which gives each alert its outlook (the verdict at that step quotes it).
    ``memo`` (kept by a live Analyzer) holds what is already decided for earlier points: alerts are causal."""
    memo = {} if memo is None else memo
    warn, crit, why_warn, why_crit = conditions(prep, config, evals, memo)
    out: list[Alert] = []
    for i, rank in _latched_ranks(warn, crit, lambda j: rearm_at(prep, j, config)):
        if ("alert", i, rank) in memo:
            out.append(memo[("alert", i, rank)])
            continue
        f = fit_at(i)
        o = decay_outlook(prep, i, config, f)
        why = why_crit[i] if rank == 2 else why_warn[i]
        lo = max(int(prep.seg_start[i]), i - config.window_max + 1)
        fl = corroborate.flags(series, prep, i, lo, config)
        msg = _message(prep, i, why, config, f)
        if o is not None and why != "floor":  # a warning at the floor now: not held (not on a solved task: info)
            held_note = o.now and rank == 1 and fl.get("reward_saturated") is not True
            msg += f"; {o.text}" + (f", {NOT_HELD}" if held_note else "")
        ev: dict = {"reason": why, "h_now": float(prep.smooth[i]), "h_ref": float(prep.h_ref[i]),
                    "floor": float(prep.floor[i])}  # fmt: skip
        if f is not None:
            ev["forecast"] = f.evidence()
        if o is not None:
            ev.update(o.eta_evidence())
        a = Alert(step=int(prep.steps[i]), detector=f"collapse.{why}", kind="collapse",
                  severity="critical" if rank == 2 else "warning", message=msg, evidence=ev)  # fmt: skip
        memo[("alert", i, rank)] = apply_context(a, fl)
        out.append(memo[("alert", i, rank)])
    return out
