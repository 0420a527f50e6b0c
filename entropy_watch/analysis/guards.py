"""L1 level rules that need no decay forecast: non-finite values, explosion, transient spikes, near-uniform start.

* non-finite entropy → critical at once (no warm-up);
* explosion — a *rise* relative to H_ref: every one of the last ``hold_points`` points above ``explode_warn_mult``
  ·H_ref (both lines raised by H_ref's own error where it exceeds the level's, or to the early level retaken from
  more first points once the noise is known, when higher: :func:`line_lift`), ``hold_z`` noise σ
  past it (``hold_noisy_points`` when the move is within the noise, and then the level
  too must be within two of its errors of the line; two points when the climb crossed gradually, was already a
  significant rising trend and the reward is not still improving, :func:`gradual`, :func:`rising`,
  :func:`reward_improving`) → warning. Either path without a clear margin, on a plateau (the climb older than its
  trend window) with a reward logged, also needs the reward to have fallen since the climb began
  (:func:`reward_since_climb`);
  the same above ``explode_crit_mult``·H_ref (or, when the vocabulary is known, ``explode_lnv_frac``·ln V) →
  critical. A two- or threefold rise of the level is healthy while reward holds; past ``explode_reward_mult``·H_ref
  with the reward halved meanwhile it is an explosion warning. A run whose H_ref is already near ln V cannot
  explode; it gets a ``near_uniform`` info note instead (a fall from there is learning, not a reversal of anything);
* transient spike — an excursion past the explosion level that ends before the hold, ``spike_z`` σ above the level
  before it → info at the point it recovers (never critical).

Each rule latches after firing and re-arms only once the level is back under ``rearm_explode_mult``·H_ref
(hysteresis). Every rule is a causal scan over the prefix, vectorised except for the loop over fired alerts.
"""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis.alert import Alert, fmt_change, fmt_mult, fmt_nats
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.forecast import evaluate_rise, trend_p
from entropy_watch.analysis.hygiene import MEDIAN_SE, Prepared, climb_starts, level_widths, robust_sigma
from entropy_watch.analysis.outlook import NOT_HELD, from_forecast
from entropy_watch.analysis.trend import median, theil_sen


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each i, how many consecutive True values end at i (0 where ``mask[i]`` is False); vectorised."""
    mask = np.asarray(mask, dtype=bool)
    idx = np.arange(1, mask.size + 1)
    last_false = np.maximum.accumulate(np.where(mask, 0, idx))
    return np.where(mask, idx - last_false, 0)


def latched(fire: np.ndarray, rearm: np.ndarray) -> list[int]:
    """Indices where ``fire`` is True while armed; after firing, disarmed until ``rearm`` is True at a later index."""
    cand, re = np.flatnonzero(fire), np.flatnonzero(rearm)
    out: list[int] = []
    pos = 0
    while pos < cand.size:
        i = int(cand[pos])
        out.append(i)
        k = int(np.searchsorted(re, i, side="right"))
        if k == re.size:
            break
        pos = int(np.searchsorted(cand, re[k], side="left"))
    return out


def held(
    above: np.ndarray,
    margin: np.ndarray,
    sigma: np.ndarray,
    config: DetectorConfig,
    *,
    level: bool = False,
    near: np.ndarray | None = None,
) -> np.ndarray:
    """True at i when ``above`` has held ``hold_points`` points with ``margin`` (the log distance past the
    threshold, smallest over those points) at least ``hold_z`` times the noise σ measured just before the excursion
    began (the excursion itself would inflate it), or ``hold_noisy_points`` points whatever the margin. ``level``
    rules read a rolling median, which already spans several points: one point less, or two less when noisy.
    ``near`` (optional, per point) must also hold for the noisy hold: on a noisy log a run of points past the line
    is only evidence when the level itself has reached it."""
    clear_n, noisy_n = config.hold_points, config.hold_noisy_points
    if level:
        clear_n, noisy_n = clear_n - 1, max(clear_n - 1, noisy_n - 2)
    runs = run_lengths(above)
    m = np.where(above, margin, -np.inf)
    worst = m.copy()  # smallest margin over the last clear_n points
    for lag in range(1, clear_n):
        worst[lag:] = np.minimum(worst[lag:], m[:-lag])
        worst[:lag] = -np.inf
    before = np.arange(above.size) - runs
    sig = np.where(before >= 0, sigma[np.clip(before, 0, None)], np.nan)
    with np.errstate(invalid="ignore"):
        clear = worst >= config.hold_z * np.where(np.isfinite(sig), sig, np.inf)
    noisy = runs >= noisy_n
    if near is not None:
        noisy &= near
    return noisy | ((runs >= clear_n) & clear)


def nonfinite(prep: Prepared) -> list[Alert]:
    """One critical alert at the first non-finite value of each run of them."""
    bad = ~np.isfinite(prep.h)
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


def nonfinite_tokens(frac: np.ndarray | None, prep: Prepared) -> list[Alert]:
    """Tokens whose logits gave a non-finite entropy (``entropy/nonfinite_frac``, shape (n,) on the entropy steps;
    None when not logged): a warning at the first point where any did, critical at the first where at least half
    did. The hooks leave such tokens out of ``entropy/mean``, which reads healthy meanwhile: 2 of 8 sequences with
    NaN logits from step 15 on logged a steady 4.1 nats and no alert (only all-NaN steps reached :func:`nonfinite`)."""
    if frac is None:
        return []
    with np.errstate(invalid="ignore"):
        some, half = np.flatnonzero(frac > 0), np.flatnonzero(frac >= 0.5)
    out = []
    for hits, severity in ((some, "warning"), (half, "critical")):
        if not hits.size:
            continue
        i = int(hits[0])
        share, step = float(frac[i]), int(prep.steps[i])
        out.append(
            Alert(
                step=step,
                detector="guard.nonfinite_tokens",
                kind="nonfinite",
                severity=severity,
                message=f"{100 * share:.3g}% of the tokens at step {step} had a non-finite entropy (NaN/inf "
                "logits): they are left out of the mean entropy, which can look healthy meanwhile",
                evidence={"nonfinite_frac": share, "first_step": step},
            )
        )
    return out


def _lifts(prep: Prepared, config: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """(for H_ref's error, for the early level retaken), each shape (n,): see :func:`line_lift`."""
    every = slice(None)
    return prep.ref_error(every, config.level_tol, config.ref_error_z), prep.retaken(every, config.level_tol)


def line_lift(prep: Prepared, config: DetectorConfig) -> np.ndarray:
    """Factor (≥ 1, shape (n,)) both explosion lines are raised by. H_ref taken from a few calm-looking points of a
    run that turns out noisy may sit low by chance, and a healthy two-fold rise would then read as three-fold. So the
    larger of exp(``ref_error_z`` × the part of H_ref's standard error beyond ``level_tol``, the precision every level
    is held to) and, once the noise is known, the early level retaken from as many first points as that noise needs
    (``Prepared.early_more``) over H_ref, when it is higher by more than ``level_tol`` (a difference the two
    estimates' own error would not make). The lines are never lowered: a retaken level under H_ref leaves the first
    factor. On a clean or dense log the factor is 1."""
    by_error, retaken = _lifts(prep, config)
    return np.maximum(by_error, retaken)


def explosion_levels(prep: Prepared, config: DetectorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(warning level, critical level, possible) per point, shape (n,): ``possible`` is False where H_ref is unknown,
    already so close to ln V that a rise of ``explode_warn_mult`` is impossible, or zero (under ``log_eps_nats``: a
    run with no entropy at its start is collapsed — the floor's rule — and a multiple of nothing measures no rise).
    Both levels are multiples of H_ref raised by :func:`line_lift`."""
    ref = prep.ref_seg * line_lift(prep, config)
    warn = config.explode_warn_mult * ref
    crit = config.explode_crit_mult * ref
    with np.errstate(invalid="ignore"):
        possible = np.isfinite(ref) & (prep.ref_seg > config.log_eps_nats)
    known = np.isfinite(prep.ln_v)
    if known.any():
        with np.errstate(invalid="ignore"):
            crit = np.where(known, np.minimum(crit, np.maximum(warn, config.explode_lnv_frac * prep.ln_v)), crit)
            possible &= ~known | (prep.ref_seg < config.near_uniform_frac * prep.ln_v)
    return warn, crit, possible


def lift_note(prep: Prepared, i: int, config: DetectorConfig) -> str:
    """'' or why the lines at point i sit above their nominal multiples of H_ref."""
    by_error, retaken = (float(x[i]) for x in _lifts(prep, config))
    lift = max(by_error, retaken)
    if not lift > 1.0005:
        return ""
    k = int(prep.ref_n[i])
    pct = 100 * (lift - 1)  # a lift under 1% in one decimal: '0% above' read as none
    head = (
        f"; the lines are {pct:.{0 if pct >= 1 else 1}f}% above their multiples of H_ref, which is taken from {k} point"
    )
    noise = f"σ {float(prep.sigma[i]):.2f} in log units"
    if retaken > by_error:
        return (f"{head}{'s' if k > 1 else ''}: the run's first points, as many as a level needs at its noise "
                f"({noise}), put its early level at {fmt_nats(float(prep.early_more[i]))} nats")  # fmt: skip
    return f"{head}{'s' if k > 1 else ''} of a run this noisy ({noise})"


def _rise_text(
    prep: Prepared, i: int, config: DetectorConfig, target: float, label: str, level: float
) -> tuple[str, dict]:
    f = evaluate_rise(prep, i, config, target, level)
    if f is None:
        return "", {}
    o = from_forecast(f, label, config.eta_interval, level=level)
    text = f"{o.text}, {NOT_HELD}" if o.now else o.text  # only warnings quote a rise forecast
    return text, {"forecast": f.evidence(), **o.eta_evidence()}


def quoted_level(prep: Prepared, i: int) -> float:
    """The entropy an explosion alert, and the verdict of a run whose top alert is an explosion, quote at point i
    (nats): the held level or the median of the last two points, whichever is higher. The held level is a rolling
    median up to 31 points wide on a noisy log and lags a climb: at the step a three-fold warning fired on its last
    two points, the verdict read "0.71 nats (5.1× H_ref); at this rate 6× H_ref by step 260" beside the alert's
    "2.22 nats, 16.0× H_ref" (rasbt ch07 7_3 logged every 12 steps). NaN only when both are."""
    last = prep.h[max(0, i - 1) : i + 1]
    last = last[np.isfinite(last)]
    return float(np.fmax(prep.smooth[i], median(last) if last.size else np.nan))


def crit_label(prep: Prepared, i: int, config: DetectorConfig, crit: float) -> str:
    """'6× H_ref (0.93 nats)' or 'half of ln V (5.9 nats)'."""
    mult = config.explode_crit_mult * float(line_lift(prep, config)[i])
    if np.isfinite(prep.ln_v[i]) and crit < mult * prep.ref_seg[i] * (1 - 1e-9):
        return f"{config.explode_lnv_frac:g} of ln V ({fmt_nats(crit)} nats)"
    return f"{mult:.3g}× H_ref ({fmt_nats(crit)} nats)"


def sustained_rearm(rearm: np.ndarray, config: DetectorConfig) -> np.ndarray:
    """Re-arm only after the level has been back for twice the hold, so an oscillating run is not re-alerted at
    every swing."""
    return run_lengths(rearm) >= 2 * config.hold_points


def _past_warn(prep: Prepared, config: DetectorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, width, warning level), shape (n,) each: how many of the trailing ``width`` points are past the warning
    line, ``width`` being the points the level is read from (its median's width, at least twice the hold)."""
    n = len(prep)
    width = np.maximum(level_widths(prep.sigma, config), 2 * config.hold_points)
    warn = explosion_levels(prep, config)[0]
    with np.errstate(invalid="ignore"):
        past = np.concatenate([[0], np.cumsum(prep.finite & (prep.h > warn))])  # past[j]: points past it before j
    idx = np.arange(1, n + 1)
    return past[idx] - past[np.maximum(idx - width, 0)], width, warn


def explosion_rearm(prep: Prepared, config: DetectorConfig) -> np.ndarray:
    """(n,) bool: where the explosion state is re-armed (and its problem clears) — the level back under
    ``rearm_explode_mult``·H_ref for twice the hold, with at most one point (a transient spike) still past the warning
    line among the points that level is read from (:func:`_past_warn`). Its alarms fire at or above that line, so
    unlike a collapse's early warning (:func:`collapse.rearm_at`) no firing level needs to be passed.

    The points, not only the level: a run that thrashes between its old level and near-uniform entropy has its
    rolling median back down while a third of its steps still explode (rasbt ch07 7_3 "cleared" at step 494, where
    the last two points read 8.2 and 10.7 nats, 55× H_ref; 7_6-v1 "cleared" at step 447 and 45% of its next 53
    points were past 3× H_ref)."""
    with np.errstate(invalid="ignore"):
        back = prep.smooth < config.rearm_explode_mult * prep.ref_seg
    return sustained_rearm(back, config) & (_past_warn(prep, config)[0] <= 1)


def unsettled(prep: Prepared, i: int, config: DetectorConfig) -> tuple[str, float] | None:
    """Why an explosion whose level is back under the re-arm line at point ``i`` has not cleared: more than one of the
    points that level is read from still past the warning line (:func:`explosion_rearm`); None otherwise. Returns the
    sentence and that warning line in nats (the chart draws it): "its median is back under 2× H_ref (0.87 nats), but 5
    of its last 31 points are past 5.54× H_ref (2.41 nats), up to 10.98 nats: not settled" — each point counted
    against the line at its own step, so where the line moved the sentence quotes those lines and the one now, and
    the line returned is the lowest of those (every counted point is past it)."""
    line = config.rearm_explode_mult * float(prep.ref_seg[i])
    if not float(prep.smooth[i]) < line:
        return None
    count, width, warn = _past_warn(prep, config)
    k, w = int(count[i]), int(min(width[i], i + 1))
    if k <= 1:
        return None
    top = float(np.nanmax(np.where(prep.finite[i - w + 1 : i + 1], prep.h[i - w + 1 : i + 1], np.nan)))
    ref = float(prep.ref_seg[i])
    # each point was counted against the warning line at its own step (the lift moves with the noise): quote those
    # lines, not only the one now (rasbt ch07 7_6-v1 read "9 of its last 31 points are past 8.76× H_ref (3.77 nats)"
    # where 4 were; the other 5 were past the 2.24-2.42 nats the line stood at when they were logged)
    span = slice(i - w + 1, i + 1)
    with np.errstate(invalid="ignore"):
        lines = warn[span][prep.finite[span] & (prep.h[span] > warn[span])]
    lo, hi, now = float(np.min(lines)), float(np.max(lines)), float(warn[i])
    if lo > now * (1 - 1e-3) and hi < now * (1 + 1e-3):
        lo, past = now, f"past {now / ref:.3g}× H_ref ({fmt_nats(now)} nats)"
    else:
        past = f"past {lo / ref:.3g}× H_ref ({fmt_nats(lo)} nats)"
        if hi > lo * (1 + 1e-3):
            past = f"past {lo / ref:.3g}–{hi / ref:.3g}× H_ref ({fmt_nats(lo)}–{fmt_nats(hi)} nats)"
        now_line = f"{now / ref:.3g}× H_ref, {fmt_nats(now)} nats"
        past += f", the warning line as it stood at their steps (it is {now_line}, now)"
    # the line returned (the chart draws it) is one every counted point is past: the lowest of theirs
    return (f"its median is back under {config.rearm_explode_mult:g}× H_ref ({fmt_nats(line)} nats), but {k} of "
            f"its last {w} points are {past}, up to {fmt_nats(top)} nats: not settled"), lo  # fmt: skip


def gradual(prep: Prepared, start: int, config: DetectorConfig) -> bool:
    """The first point of an excursion (``start``) sits within ``hold_z`` noise σ of the level just before it, or of
    the point just before it: the entropy crossed the line by climbing, not by jumping (a spike). The point, because
    a steady climb faster than the level's rolling median can follow moves from point to point while the median lags
    a point or two behind (Deep-GRPO TreeRL logged every 12 steps: 0.50, 0.60, 0.71 nats, each step within the noise
    of the one before, the last two 4σ above the median of three)."""
    if start < 1 or not np.isfinite(prep.smooth[start - 1]) or not np.isfinite(prep.sigma[start - 1]):
        return False
    before = np.log(prep.smooth[start - 1])
    if np.isfinite(prep.log_h[start - 1]):
        before = max(before, float(prep.log_h[start - 1]))
    return bool(prep.log_h[start] - before < config.hold_z * prep.sigma[start - 1])


def rise_window(prep: Prepared, i: int, config: DetectorConfig) -> int:
    """Points a climb's trend is read over at i: clamp(``rise_frac``·points so far in the segment, 5,
    ``rise_max_points``)."""
    return int(np.clip(round(config.rise_frac * (i - int(prep.seg_start[i]) + 1)), 5, config.rise_max_points))


def rising(prep: Prepared, i: int, config: DetectorConfig, y: np.ndarray | None = None) -> bool:
    """A significant rise of log H — or of ``y`` (n,), another series of the run — (one-sided Mann–Kendall,
    autocorrelation-aware, p < ``trend_alpha``) over the segment's trailing clamp(``rise_frac``·points so far, 5,
    ``rise_max_points``) points ending at i. For entropy the caller passes the point *before* an excursion began, so a
    sudden spike out of a flat run is no climb."""
    seg0 = int(prep.seg_start[i])
    w = rise_window(prep, i, config)
    y = (prep.log_h if y is None else y)[max(seg0, i - w + 1) : i + 1]
    y = y[np.isfinite(y)]
    if y.size < 5:
        return False
    slope, icpt = theil_sen(np.arange(y.size, dtype=np.float64), y)
    return bool(slope > 0 and trend_p(y, slope, icpt, 1.0) < config.trend_alpha)


def _reward_windows(prep: Prepared, i: int, start: int, now_from: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(before, now): the reward's finite values over up to 10 points before ``start`` (where entropy began to rise)
    and over ``now_from``..i; None when no reward is logged there."""
    r = prep.reward
    if r is None or start < 1:
        return None
    before = r[max(int(prep.seg_start[i]), start - 10) : start]
    now = r[now_from : i + 1]
    before, now = before[np.isfinite(before)], now[np.isfinite(now)]
    if before.size == 0 or now.size == 0:
        return None
    return before, now


def _reward_medians(prep: Prepared, i: int, start: int, now_from: int) -> tuple[float, float] | None:
    """(before, now): the medians of :func:`_reward_windows`; None when no reward is logged there."""
    w = _reward_windows(prep, i, start, now_from)
    return None if w is None else (float(median(w[0])), float(median(w[1])))


def reward_fell(
    prep: Prepared, i: int, start: int, config: DetectorConfig, seen: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[bool, float, float]:
    """(fell, before, now): the reward over the last ``hold_points`` points against its median over up to 10
    points before ``start``, the point where entropy began to rise. Fell = at most half, and by at least
    ``reward_drop_abs`` of the reward's ceiling — for a reward on [0, ``reward_max``]. A reward on another scale
    (above its ceiling, ``DetectorConfig.ceiling``, or below 0: shifted, summed, a score) is measured on the run's
    own range instead (``DetectorConfig.reward_scale``): at most half its height above the lowest reward seen, by
    ``reward_drop_abs`` of that range (so a reward shifted by 5 falls as the same reward unshifted). ``seen``: the
    lowest and largest rewards up to each point (:func:`reward_seen`), for a caller that asks at many points."""
    r, med = prep.reward, _reward_medians(prep, i, start, max(start, i + 1 - config.hold_points))
    if r is None or med is None:
        return False, float("nan"), float("nan")
    b, m = med
    lo, hi = (seen[0][i], seen[1][i]) if seen is not None else (np.nanmin(r[: i + 1]), np.nanmax(r[: i + 1]))
    base, span = config.reward_scale(float(lo), float(hi))
    return bool(m - base <= 0.5 * (b - base) and b - m >= config.reward_drop_abs * span), b, m


def reward_seen(prep: Prepared) -> tuple[np.ndarray, np.ndarray] | None:
    """The lowest and largest rewards logged up to each point (NaN before the first), what :func:`reward_fell`
    reads at i — once for the run, not a pass over every earlier point at each point asked (a 100k-point climb
    asked at thousands)."""
    r = prep.reward
    return None if r is None else (np.fmin.accumulate(r), np.fmax.accumulate(r))


def reward_improving(prep: Prepared, i: int, start: int, config: DetectorConfig) -> bool:
    """The reward is still improving at i: its median over the excursion (``start``..i) is above its median over up to
    10 points before it, *and* it is on a significant rising trend over the trailing window :func:`rising` reads.
    Entropy rising while the policy still gets better is exploration, so the two-point path waits for the full hold.
    Both, because either alone is fooled: the medians by a noisy reward on a dense log, the trend by a reward that
    improved up to the point where the run began to fail. False when no reward is logged."""
    med = _reward_medians(prep, i, start, start)
    return med is not None and med[1] > med[0] and prep.reward is not None and rising(prep, i, config, prep.reward)


def reward_since_climb(
    prep: Prepared, i: int, start: int, began: int, config: DetectorConfig
) -> tuple[bool, float, float] | None:
    """(fell, before, now), None when no reward is logged there: the reward's median over the excursion (``start``..i)
    against its median over up to 10 points before the climb began (``began``, :func:`climb_starts`). Fell = lower
    by more than ``reward_hold_z`` standard errors of that difference (MEDIAN_SE·σ_r·√(1/k_before + 1/k_now), σ_r
    the reward's noise before the climb)."""
    w = _reward_windows(prep, i, began, start)
    if w is None or w[0].size < 3:
        return None
    before, now = w
    b, m = float(median(before)), float(median(now))
    se = MEDIAN_SE * robust_sigma(before) * np.sqrt(1 / before.size + 1 / now.size)
    return bool(m < b - config.reward_hold_z * se), b, m


def plateau_allows(
    prep: Prepared, i: int, start: int, began: int, config: DetectorConfig, why: dict[int, tuple[float, float]]
) -> bool:
    """Whether an explosion warning without a clear margin may fire at i (its excursion began at ``start``, the climb
    at ``began``): the climb is still within its trend window (:func:`rise_window`), no reward is logged, or the reward
    fell since the climb began (:func:`reward_since_climb`; then ``why[i]`` = (reward before, reward now))."""
    since = reward_since_climb(prep, i, start, began, config)
    if since is not None and since[0]:
        why[i] = since[1:]
    return since is None or since[0] or i - began < rise_window(prep, i, config)


def explosion(prep: Prepared, config: DetectorConfig) -> list[Alert]:
    """Explosion warnings and critical alerts, and transient-spike notes (see the module docstring)."""
    warn, crit, possible = explosion_levels(prep, config)
    on = possible & prep.finite
    ref = prep.ref_seg
    with np.errstate(invalid="ignore", divide="ignore"):
        lw = np.log(np.where(on, prep.h, np.nan) / warn)
        lc = np.log(np.where(on, prep.h, np.nan) / crit)
        lr = np.log(prep.smooth / (config.explode_reward_mult * ref))
        above_w, above_c, above_r = on & (lw > 0), on & (lc > 0), possible & (lr > 0)
    # the level (a noise-scaled rolling median) within two of its standard errors of the line
    with np.errstate(invalid="ignore", divide="ignore"):
        near_w = np.log(prep.smooth / warn) >= -2 * config.level_tol
        near_c = np.log(prep.smooth / crit) >= -2 * config.level_tol
    fire_w = held(above_w, lw, prep.sigma, config, near=near_w) & prep.armed
    fire_c = held(above_c, lc, prep.sigma, config, near=near_c) & prep.armed
    runs_w = run_lengths(above_w)
    began = climb_starts(prep, config)
    why_w: dict[int, tuple[float, float]] = {}
    # the noisy hold (no clear margin) on a plateau: a level that rose and holds while the reward holds is the healthy
    # rise (the labels), and a noisy log puts five points in a row past 3x H_ref by chance somewhere on a long one
    clear_w = held(above_w, lw, prep.sigma, config, near=np.zeros_like(near_w)) & prep.armed  # no noisy hold: clear
    for i in np.flatnonzero(fire_w & ~clear_w):
        fire_w[i] = plateau_allows(prep, int(i), int(i - runs_w[i] + 1), int(began[i]), config, why_w)
    # a gradual climb crosses without a clear margin: two points past the line, the level at it, a significant rising
    # trend before, the reward not still improving (a rise that pays is exploration) and the plateau rule: else the
    # full hold
    for i in np.flatnonzero(prep.armed & near_w & (runs_w >= 2) & (runs_w < config.hold_noisy_points) & ~fire_w):
        start = int(i - runs_w[i] + 1)
        if not (gradual(prep, start, config) and rising(prep, start - 1, config)):
            continue
        if reward_improving(prep, int(i), start, config):
            continue
        fire_w[i] = plateau_allows(prep, int(i), start, int(began[i]), config, why_w)
    # a two-fold rise is healthy while reward holds; with the reward falling it is an explosion (the labels)
    fire_r = held(above_r, lr, prep.sigma, config, level=True) & prep.armed & ~fire_w
    runs_r = run_lengths(above_r)
    why_r: dict[int, tuple[float, float]] = {}
    seen = reward_seen(prep) if fire_r.any() else None
    for i in np.flatnonzero(fire_r):
        fell, b, m = reward_fell(prep, int(i), int(i - runs_r[i] + 1), config, seen)
        fire_r[i] = fell
        if fell:
            why_r[int(i)] = (b, m)
    rank_at: dict[int, int] = {}
    rearm = explosion_rearm(prep, config)
    for i in latched(fire_w | fire_r, rearm):
        rank_at[i] = max(rank_at.get(i, 0), 1)
    for i in latched(fire_c, rearm):
        rank_at[i] = 2
    out: list[Alert] = []
    for i, rank in sorted(rank_at.items()):
        # the level quoted (and the rise ETA's start): the last two points, where the line was crossed, or the held
        # level when higher (a two-fold rise fires on it); the verdict quotes the same (quoted_level)
        slow = rank == 1 and i in why_r and not fire_w[i]
        r = float(ref[i])
        now = quoted_level(prep, i)
        label = crit_label(prep, i, config, float(crit[i]))
        mult = now / r
        text, ev = "", {}
        if rank == 2:
            what = f"entropy exploded to {fmt_nats(now)} nats, {fmt_mult(mult)}× H_ref {fmt_nats(r)}, past {label}"
        elif slow:
            b, m = why_r[i]
            what = (
                f"entropy is rising while reward falls: {fmt_nats(now)} nats, {fmt_mult(mult)}× H_ref {fmt_nats(r)}; "
                f"reward {fmt_change(b, m)}"
            )
            ev = {"reward_before": b, "reward_now": m}
        else:
            what = (
                f"entropy is rising: {fmt_nats(now)} nats, {fmt_mult(mult)}× H_ref {fmt_nats(r)} "
                f"(over {float(warn[i]) / r:.3g}× for {int(runs_w[i])} points)"
            )
            if i in why_w:
                b, m = why_w[i]
                what += f" while reward fell {fmt_change(b, m)} since the climb began"
                ev = {"reward_before": b, "reward_now": m}
        if rank == 1:
            text, fev = _rise_text(prep, i, config, float(crit[i]), label, now)
            ev.update(fev)
        what += lift_note(prep, i, config)
        if np.isfinite(prep.ln_v[i]):
            what += f"; uniform noise is ln V = {float(prep.ln_v[i]):.1f}"
        out.append(
            Alert(
                step=int(prep.steps[i]),
                detector="guard.explosion",
                kind="explosion",
                severity="critical" if rank == 2 else "warning",
                message=what + (f"; {text}" if text else ""),
                evidence={
                    "h_now": now,
                    "h_ref": r,
                    "multiple": mult,
                    "warn_level": float(warn[i]),
                    "crit_level": float(crit[i]),
                    "sigma": float(prep.sigma[i]),
                    **ev,
                },
            )  # fmt: skip
        )
    out += _spikes(prep, config, above_w & prep.armed, fire_w | fire_r)  # an excursion that warned is no spike
    return out


def _spikes(prep: Prepared, config: DetectorConfig, above: np.ndarray, fired: np.ndarray) -> list[Alert]:
    """Info notes for excursions past the explosion level that ended before the hold (see the module docstring)."""
    runs = run_lengths(above)
    ends = np.flatnonzero(~above[1:] & above[:-1]) + 1  # first point back under
    out: list[Alert] = []
    for e in ends:
        k = int(runs[e - 1])
        s0 = e - k
        if fired[s0:e].any() or s0 < 1 or not prep.armed[e] or not prep.finite[e]:
            continue
        before = float(prep.smooth[s0 - 1])
        peak = float(np.nanmax(prep.h[s0:e]))
        sig = float(prep.sigma[s0 - 1]) if np.isfinite(prep.sigma[s0 - 1]) else np.inf
        if not (before > 0 and np.log(peak / before) >= config.spike_z * sig):
            continue
        ref = float(prep.ref_seg[e])
        out.append(
            Alert(
                step=int(prep.steps[e]),
                detector="guard.spike",
                kind="spike",
                severity="info",
                message=(
                    f"transient spike at step {prep.steps[s0]}: entropy {fmt_nats(peak)} nats ({fmt_mult(peak / ref)}× "
                    f"H_ref) for {k} point{'s' if k > 1 else ''}, back to {fmt_nats(float(prep.h[e]))} at step "
                    f"{prep.steps[e]}"
                ),
                evidence={
                    "start_step": int(prep.steps[s0]),
                    "points": k,
                    "peak": peak,
                    "level_before": before,
                    "h_ref": ref,
                },
            )  # fmt: skip
        )
    return out


def near_uniform(prep: Prepared, config: DetectorConfig) -> list[Alert]:
    """An info note at the arming point of each segment whose H_ref is near ln V (only when V is known)."""
    out = []
    for ref in prep.refs.values():
        i = ref.known_at
        ln_v = float(prep.ln_v[i]) if i < len(prep) else float("nan")
        if ref.value >= config.near_uniform_frac * ln_v:  # False when ln V is unknown (NaN)
            out.append(
                Alert(
                    step=int(prep.steps[i]),
                    detector="guard.near_uniform",
                    kind="near_uniform",
                    severity="info",
                    message=(
                        f"entropy starts near uniform: H_ref {fmt_nats(ref.value)} nats is "
                        f"{100 * ref.value / ln_v:.0f}% of ln V = {ln_v:.2f}; a fall from here is the "
                        "policy learning, and there is no room left to explode"
                    ),
                    evidence={"h_ref": ref.value, "ln_v": ln_v},
                )
            )
    return out


def detect(prep: Prepared, config: DetectorConfig) -> list[Alert]:
    """All L1 level rules over the prefix in ``prep`` (collapse levels are in collapse.py)."""
    return nonfinite(prep) + explosion(prep, config) + near_uniform(prep, config)
