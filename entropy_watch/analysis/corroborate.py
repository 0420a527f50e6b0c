"""L4 corroboration: signals that raise a collapse alert's severity by one level, never alarm alone (DETECTION §B.5),
plus three standalone diagnostics with their own alert kinds.

Flags, evaluated at version i on versions ≤ i:

* ``reward_plateau`` — the reward over the window not climbing (:func:`reward_climbing`: no significant rise,
  one-sided MK p < 0.1, or a Sen slope under 1% of max(its range, the ceiling) per 100 versions);
* ``reward_saturated`` — the lower quartile of the recent reward ≥ ``saturated_frac`` of its ceiling (``reward_max``;
  unknown, so never saturated, once a reward above it is seen: ``DetectorConfig.ceiling``), or the reward still climbing
  significantly — by ``reward_drop_abs`` of the ceiling over the window — and already ≥ ``saturating_frac`` of it: a
  collapse there is benign ("saturation", info);
* ``law`` — the entropy–reward law ``R = −a·exp(H) + b`` (Cui et al. 2025, arXiv:2505.22617, eq. 1): with ≥ 30 pairs
  and ΔH ≥ 20% of H_ref, headroom ``(b − a) − R_now`` < 0.02 flags "little gain left"; the law is marked not
  applicable when R² < 0.5 or its residuals trend (MK p < 0.01);
* ``hist_drift`` — share of tokens under 0.01 nats up ≥ 15 points, or p90 down ≥ 30%, vs the first histograms;
* ``pg_drive_positive`` — an EWMA of ``cov/pg_drive`` stayed > 0 for the sustain span (the step spends entropy);
* ``zero_variance_groups`` — ``adv/frac_zero_groups`` median ≥ 0.5 over the last versions;
* ``clip_high_dominates`` — binding clip-high outweighs clip-low (lowers entropy, Park et al. 2025); "n/a" when the
  run is on-policy (``clip/onpolicy`` = 1: clip fractions are not measured, not zero).

Standalone: ``precision`` (``ratio/log_mean`` > 0 over the sustain span and in a significant majority of the run's
points, by a sign test: the bf16 ratio-bias signature) and
``zero_variance_groups`` (a warning while the reward is under half its ceiling — the groups are all wrong, the run
learns nothing, with the share of completions cut at the length limit when logged; an info note when they are mostly
all right — the prompts are too easy — and a warning after it where the reward later falls under half with the
groups still identical). "Persistently" is the
sustain span ``DetectorConfig.sustain(points so far)``: 5 points on a short log, up to 20 on a long one.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import replace
from typing import Any

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.analysis.alert import Alert
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.guards import run_lengths
from entropy_watch.analysis.hygiene import Prepared, causal_median_var
from entropy_watch.analysis.series import REWARD_PART, RunSeries, reward_name
from entropy_watch.analysis.trend import coarse, mann_kendall, median, ols, theil_sen
from entropy_watch.histogram import quantiles_from_hist


def _raw_until(series: RunSeries, name: str, step_lo: int, step_hi: int) -> tuple[np.ndarray, np.ndarray]:
    if name not in series.scalars:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    s, v = series.scalars[name]
    keep = (s >= step_lo) & (s <= step_hi) & np.isfinite(v)
    return s[keep], v[keep]


def reward_flags(series: RunSeries, prep: Prepared, i: int, lo: int, config: DetectorConfig) -> dict[str, Any]:
    name = reward_name(series.scalars)
    if name is None:
        return {"reward": "absent"}
    step_i, step_lo = int(prep.steps[i]), int(prep.steps[lo])
    s, r = _raw_until(series, name, step_lo, step_i)
    out: dict[str, Any] = {"reward_series": name}
    if r.size >= 3:
        tail = r[-max(3, r.size // 5) :]
        recent = float(median(tail))
        _, seen = _raw_until(series, name, int(prep.steps[prep.seg_start[i]]), step_i)
        ceiling = config.ceiling(float(seen.max()) if seen.size else 0.0)
        out["reward_recent"] = recent
        out["reward_ceiling"] = ceiling
        if ceiling is None:
            out["reward_saturated"] = False
        else:
            solved = bool(np.quantile(tail, 0.25) >= config.saturated_frac * ceiling)
            # ... or still climbing the last stretch to it: the task is being solved as entropy falls (Tinker's shape)
            last, first = float(median(r[-3:])), float(median(r[: max(3, r.size // 3)]))
            near = last >= config.saturating_frac * ceiling and last - first >= config.reward_drop_abs * ceiling
            out["reward_saturated"] = bool(solved or (near and reward_climbing(s, r, prep.spacing(lo, i), config)))
    if r.size >= 8:
        out["reward_mk_p"] = mann_kendall(coarse(r))[1]
        out["reward_plateau"] = not reward_climbing(s, r, prep.spacing(lo, i), config)
    # entropy–reward law on every pair of the segment so far
    seg_lo = int(prep.steps[prep.seg_start[i]])
    s_all, r_all = _raw_until(series, name, seg_lo, step_i)
    h_at = np.interp(s_all, prep.steps, np.where(prep.finite, prep.h, np.nan)) if s_all.size else s_all
    ok = np.isfinite(h_at)
    s_all, r_all, h_at = s_all[ok], r_all[ok], h_at[ok]
    ref = float(prep.h_ref[i])
    if s_all.size >= config.law_min_pairs and np.isfinite(ref) and np.ptp(h_at) >= config.law_min_dh_frac * ref:
        with np.errstate(over="ignore", invalid="ignore"):  # exp of an entropy summed over a completion: inf
            e_h = np.exp(h_at)
            b_int, slope, r2 = ols(e_h, r_all)  # R = b + slope·exp(H), slope = −a
            resid = r_all - (b_int + slope * e_h)
        _, p_res = mann_kendall(coarse(resid))
        applicable = bool(np.isfinite(r2) and r2 >= config.law_min_r2 and p_res >= 0.01 and slope < 0)
        ceiling = b_int + slope  # R at H = 0 is b − a
        headroom = ceiling - float(median(r_all[-3:]))
        out["law"] = {
            "a": -slope,
            "b": b_int,
            "r2": r2,
            "resid_mk_p": p_res,
            "applicable": applicable,
            "ceiling": ceiling,
            "headroom": headroom,
        }
        out["law_headroom_low"] = bool(applicable and headroom < config.headroom_min)
    return out


def stated_ceiling(series: RunSeries, config: DetectorConfig) -> tuple[DetectorConfig, str | None]:
    """``config`` with the reward's ceiling the run states (``reward_max`` in run.json, ``--reward-max``) or, else,
    shows (TRL's reward as the sum of its per-function rewards: :func:`reward_parts_max`, with a note saying so)."""
    stated = series.meta.get("reward_max")
    if isinstance(stated, numbers.Real) and not isinstance(stated, (bool, np.bool_)) and 0 < stated < math.inf:
        return replace(config, reward_max=float(stated)), None
    parts = reward_parts_max(series, config)
    if parts is None or parts[0] == config.reward_max:
        return config, None
    note = (
        f"the reward is the sum of {len(parts[1])} reward functions each within [0, {config.reward_max:g}] "
        f"({', '.join(parts[1])}): its ceiling is {parts[0]:g}"
    )
    return replace(config, reward_max=parts[0]), note


def reward_note(prep: Prepared, config: DetectorConfig) -> str | None:
    """Why the task's state is not judged, when a reward above ``reward_max`` leaves its ceiling unknown (None
    otherwise): ``DetectorConfig.ceiling``."""
    r = prep.reward
    top = float(np.nanmax(r)) if r is not None and np.isfinite(r).any() else None
    if top is None or config.ceiling(top) is not None:
        return None
    return (
        f"the reward reaches {top:.3g}, above {config.reward_max:g}: its ceiling is unknown, so no collapse is read "
        "as a solved task; state it: reward_max= on the Watch or attach() that records the run, --reward-max on a "
        "log file (import, alerts, report, watch)"
    )


def reward_parts_max(series: RunSeries, config: DetectorConfig) -> tuple[float, list[str]] | None:
    """The reward's ceiling when it is the sum of TRL's per-function rewards (``rewards/<f>/mean``) each within
    [0, ``reward_max``]: their count times ``reward_max``, and their names. None when there are no such columns, one
    leaves that range, or the reward is not their sum at 90% of the steps they share (weighted functions)."""
    parts = sorted(n for n in series.scalars if REWARD_PART.match(n))
    if not parts or M.REWARD_MEAN not in series.scalars:
        return None
    rs, rv = series.scalars[M.REWARD_MEAN]
    total, ok = np.zeros(rs.size), np.isfinite(rv)
    for name in parts:
        s, v = series.scalars[name]
        fin = v[np.isfinite(v)]
        if fin.size == 0 or fin.min() < 0 or fin.max() > config.reward_max * (1 + 1e-9):
            return None
        at = np.minimum(np.searchsorted(s, rs), max(s.size - 1, 0))
        hit = (s.size > 0) & (s[at] == rs) & np.isfinite(v[at])
        ok &= hit
        total += np.where(hit, v[at], 0.0)
    if ok.sum() < 3 or np.mean(np.abs(rv[ok] - total[ok]) <= 1e-6 + 1e-3 * np.abs(rv[ok])) < 0.9:
        return None
    return len(parts) * config.reward_max, parts


def reward_climbing(steps: np.ndarray, r: np.ndarray, spacing: float, config: DetectorConfig) -> bool:
    """Is the reward ``r`` (k,) at ``steps`` (k,) still climbing — the one definition the decline rule ("while
    reward plateaus"), the ``reward_plateau`` flag (its negation) and saturation read? A significant rise (one-sided
    Mann–Kendall on its block means past 40 points, p < ``plateau_alpha``) *and* a material one: the Sen slope at
    least ``plateau_slope_frac`` of max(its range, ``reward_max``) per 100 logged points (``spacing`` steps apart).
    Both, because on a long window a flat reward's noise passes the test alone one time in ten, and keeps passing it
    at the next points: a steady collapse on a plateau read as "the policy still learning" and was never warned."""
    if r.size < 2:
        return False
    z, p = mann_kendall(coarse(r))
    if not (z > 0 and p / 2 < config.plateau_alpha):
        return False
    keep = np.linspace(0, r.size - 1, min(r.size, 200)).astype(int)
    slope, _ = theil_sen(steps[keep].astype(np.float64), r[keep])
    return bool(slope * 100 * spacing >= config.plateau_slope_frac * max(float(np.ptp(r)), config.reward_max))


def reward_improving(prep: Prepared, lo: int, i: int, config: DetectorConfig) -> bool:
    """Is the reward still improving over points [lo, i] (:func:`reward_climbing`, at least 6 finite values)? False
    when no reward is logged. A steady decline of entropy while reward still climbs is the policy learning; the same
    decline on a plateau is a collapse (the labels' "while reward plateaus")."""
    r = prep.reward
    if r is None:
        return False
    x, st = r[lo : i + 1], prep.steps[lo : i + 1]
    ok = np.isfinite(x)
    if ok.sum() < 6:
        return False
    return reward_climbing(st[ok], x[ok], prep.spacing(lo, i), config)


def hist_flags(series: RunSeries, step_i: int, seg_lo_step: int) -> dict[str, Any]:
    if series.hist is None or series.hist_edges is None:
        return {}
    hs, hc = series.hist
    keep = (hs >= seg_lo_step) & (hs <= step_i)
    hs, hc = hs[keep], hc[keep]
    if hs.size < 10:
        return {}
    edges = series.hist_edges
    k = max(3, hs.size // 10)
    ref, now = hc[:k].sum(0), hc[-k:].sum(0)
    low_bins = edges[1:] <= M.LOW_ENTROPY_NATS  # bin b covers [edges[b-1], edges[b]); bin 0 is exact zero
    low = np.concatenate([[True], low_bins])[: hc.shape[1]]
    frac_ref, frac_now = ref[low].sum() / max(ref.sum(), 1), now[low].sum() / max(now.sum(), 1)
    p90_ref, p90_now = quantiles_from_hist(ref, edges, [0.9])[0], quantiles_from_hist(now, edges, [0.9])[0]
    drift = bool(frac_now - frac_ref >= 0.15 or (p90_ref > 0 and p90_now <= 0.7 * p90_ref))
    return {
        "frac_low_ref": frac_ref,
        "frac_low_now": frac_now,
        "p90_ref": p90_ref,
        "p90_now": p90_now,
        "hist_drift": drift,
    }


def _sustained(x: np.ndarray | None, i: int, n: int, pred: Any) -> bool:
    if x is None or i + 1 < n:
        return False
    tail = x[i + 1 - n : i + 1]
    return bool(np.all(np.isfinite(tail)) and np.all(pred(tail)))


def _ewma(x: np.ndarray, lam: float = 0.1) -> np.ndarray:
    out = np.empty_like(x)
    acc = np.nan
    for j, v in enumerate(x):
        if np.isfinite(v):
            acc = v if not np.isfinite(acc) else lam * v + (1 - lam) * acc
        out[j] = acc
    return out


def mechanism_flags(series: RunSeries, i: int, lo: int, config: DetectorConfig, seg0: int = 0) -> dict[str, Any]:
    n = config.sustain(i - seg0 + 1)
    out: dict[str, Any] = {}
    drive = series.aligned(M.COV_PG_DRIVE)
    if drive is not None:
        out["pg_drive_positive"] = _sustained(_ewma(drive[: i + 1]), i, n, lambda t: t > 0)
    zv = series.aligned(M.ADV_FRAC_ZERO_GROUPS)
    if zv is not None and i + 1 >= n:
        out["zero_variance_groups"] = bool(np.nanmedian(zv[i + 1 - n : i + 1]) >= config.zero_var_frac)
    onpol = series.aligned(M.CLIP_ONPOLICY)
    if onpol is not None and np.isfinite(onpol[i]) and onpol[i] >= 0.5:
        out["clip_high_dominates"] = "n/a (on-policy: the ratio is 1, nothing can clip)"
    else:
        hi, lo_ = series.aligned(M.CLIP_HIGH_FRAC), series.aligned(M.CLIP_LOW_FRAC)
        if hi is not None and lo_ is not None:
            out["clip_high_dominates"] = bool(np.nanmean(hi[lo : i + 1]) > np.nanmean(lo_[lo : i + 1]))
    return out


def flags(series: RunSeries, prep: Prepared, i: int, lo: int, config: DetectorConfig) -> dict[str, Any]:
    """All L4 flags at version i over the window [lo, i]."""
    out = reward_flags(series, prep, i, lo, config)
    out.update(hist_flags(series, int(prep.steps[i]), int(prep.steps[prep.seg_start[i]])))
    out.update(mechanism_flags(series, i, lo, config, int(prep.seg_start[i])))
    return out


SIGN_Z = 2.33  # one-sided 1%: the precision bias must also be a significant majority of the run's signs


def _sustain_spans(prep: Prepared, config: DetectorConfig) -> np.ndarray:
    """The sustain span at every point, shape (n,): ``config.sustain(points so far in the segment)``."""
    pos = np.arange(len(prep)) - prep.seg_start + 1
    span = np.clip(np.round(config.sustain_frac * pos), config.sustain_min, config.sustain_max)
    return span.astype(np.int64)


def standalone(series: RunSeries, prep: Prepared, config: DetectorConfig) -> list[Alert]:
    """Precision-bias and zero-variance-group alerts at the first point each condition has held for its span."""
    span = _sustain_spans(prep, config)
    out: list[Alert] = []
    lr = series.aligned(M.RATIO_LOG_MEAN)
    if lr is not None:
        pos = np.isfinite(lr) & (lr > 0)
        m = np.cumsum(np.isfinite(lr))
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (2 * np.cumsum(pos) - m) / np.sqrt(m)  # sign test over the run so far (normal approximation)
        ok = np.flatnonzero(prep.armed & (run_lengths(pos) >= span) & (z >= SIGN_Z))
        if ok.size:
            i, n = int(ok[0]), int(span[ok[0]])
            mean = float(np.mean(lr[i + 1 - n : i + 1]))
            out.append(
                Alert(
                    step=int(prep.steps[i]),
                    detector="corroborate.precision",
                    kind="precision",
                    severity="warning",
                    message=f"ratio/log_mean has been positive for {n} points (mean {mean:.2g}): the trainer's "
                    "log-probs sit above the sampler's — the bf16 bias that tips runs into collapse",
                    evidence={"ratio_log_mean": mean, "points": n},
                )
            )
    zv = series.aligned(M.ADV_FRAC_ZERO_GROUPS)
    if zv is not None:
        out += _zero_variance(series, prep, config, span, zv)
    return out


def _zero_variance(
    series: RunSeries, prep: Prepared, config: DetectorConfig, span: np.ndarray, zv: np.ndarray
) -> list[Alert]:
    """The zero-variance-group alert at the first armed point whose median over its span shows identical groups
    (info when most are all right, else a warning), and — after an info — a warning at the first later such point
    where they are all *wrong*: a run whose prompts were too easy at step 30 and whose reward then fell to 0 with every
    group identical learns nothing (the Sunshine adabalance TRL log: reward 0.9 -> 0 from step ~80, 90–100% identical
    groups, completions at the 512-token cap, read "too easy" at step 30 and nothing after).

    All wrong or all right is the reward's median over the same span in the lower or upper half of its scale
    (:meth:`DetectorConfig.reward_scale` of the rewards seen so far: its own range off [0, max]); no reward, or one
    that never moved off a scale of its own, cannot say which, and reads as failing."""
    n = len(prep)
    idx = np.arange(n)
    nan = np.full(n, np.nan)
    r = prep.reward
    with np.errstate(invalid="ignore"):
        z_med = causal_median_var(zv, span)
        same = prep.armed & (idx + 1 >= span) & (z_med >= config.zero_var_frac)
        r_med = causal_median_var(r, span) if r is not None else nan
        base, scale = config.reward_scale(np.fmin.accumulate(r), np.fmax.accumulate(r)) if r is not None else (nan, nan)
        known = np.isfinite(r_med) & (scale > 0)
        wrong = known & (r_med - base < 0.5 * scale)
    at = np.flatnonzero(same)
    if not at.size:
        return []
    first = int(at[0])
    later = np.flatnonzero(same & wrong & (idx > first)) if known[first] and not wrong[first] else at[:0]
    out = []
    for i in [first, *later[:1].tolist()]:
        rew, failing = float(r_med[i]), bool(not known[i] or wrong[i])
        why = "they carry no advantage signal"
        if known[i]:
            why += f" (reward {rew:.2f}: most groups are all wrong)"
            if not failing:
                why = f"reward {rew:.2f}: most groups are all right — the prompts are too easy to teach anything"
        elif np.isfinite(rew):
            why += f" (reward {rew:.2f}, the same at every point so far)"
        capped = _median_over(series.aligned(M.LENGTH_TRUNC_FRAC), i, int(span[i]))
        if failing and capped >= 0.5:  # what the failing groups look like: completions cut at the length limit
            why += f"; {100 * capped:.0f}% of completions hit the length limit"
        med = float(z_med[i])
        out.append(
            Alert(
                step=int(prep.steps[i]),
                detector="corroborate.zero_variance",
                kind="zero_variance_groups",
                severity="warning" if failing else "info",
                message=f"{100 * med:.0f}% of groups have identical rewards (median of {int(span[i])} points): {why}",
                evidence={"frac_zero_groups": med, "points": int(span[i]), "reward": rew}
                | ({"trunc_frac": capped} if math.isfinite(capped) else {}),
            )
        )
    return out


def _median_over(x: np.ndarray | None, i: int, n: int) -> float:
    """The NaN-aware median of x over the ``n`` points ending at i (NaN: no such metric or no finite value)."""
    if x is None:
        return float("nan")
    w = x[max(0, i + 1 - n) : i + 1]
    return float(np.nanmedian(w)) if np.isfinite(w).any() else float("nan")
