"""L3 forecasts: where the current trajectory goes — down to the collapse floor, or up past an explosion level.

Entropy falls in every healthy run, so a significant decline alone is not an alarm (DETECTION §B.4: plain and
Hamed–Rao Mann–Kendall flagged 92–100% of healthy runs). The decay forecast at point i, on a trailing window that
scales with the points the run has (``window_frac`` of them, at least ``forecast_min_points``, at most
``window_span_max``; past ``window_max`` points it reads block means, at most ``window_max`` of them):

1. gates, the cheapest first (most evaluations stop at the effect size): an effect size relative to H_ref, or to the
   early level retaken from more first points when H_ref read it low (``forecast_min_lost`` of it already lost);
   Theil–Sen slope of log H < 0 with a one-sided Mann–Kendall p < α (on block means past 40 points, else with an
   AR(1) variance inflation: autocorrelation otherwise inflates the test's size, §B.4 table); the window's recent
   half still falling (p < ``recent_alpha``, at ``recent_frac`` of the window's rate or more: a drop that levelled
   off is no trend);
2. two decay models — log-linear ``log H = α + β·t``, or a hinge ``+ γ·(t − τ)₊`` when a decline that sped up
   fits better by BIC (the *current* rate, not averaged with the calm before it), and exponential-to-asymptote
   ``H = c + A·exp(−k·t)`` (method card 7), chosen by the error on the window's last 20% held out of the fit
   (log-space alone under 20 points, where three parameters are not identified);
3. the ETA distribution to the floor (median and the ``eta_interval`` central interval, widened ``eta_spread``-fold)
   and P(ETA ≤ horizon): from parametric draws of the log-space fits (robust, autocorrelation-inflated:
   :func:`logfits.fit_draws`)
   or a moving-block bootstrap of the exponential fit's residuals. An asymptote above the floor predicts "no
   crossing": that is what separates healthy decay from collapse;
4. the interval's late end where the decline may slow down: real collapses do (their second-half/first-half
   log-slope 0.24-0.65), and a 10-20-point window cannot show it, so a log-space forecast also draws two slowing
   models — a power law in the time since the decline began, and a hinge whose change of rate fades — with a clock
   whose slowdown is the real logs' (:func:`logfits._clocks`), weighted by BIC against the steady ones with equal
   priors (:func:`logfits.model_weights`). Their draws move only the late end (:func:`_late_end`) and the band's upper
   edge: the median, the early end, P(cross) and every alert stay "at this rate". Held-out decelerating collapses
   (``bench_detectors.py --kinds decelerating_collapse``): 80% intervals held 0.37 / 0.34 / 0.41 of floor crossings
   at 40 / 100 / 400 points with the steady models alone, 0.62 / 0.73 / 0.84 with them; the issue's suite (steady
   exponential declines) 0.84 / 0.90 / 0.84 before, 0.82 / 0.88 / 0.83 now (the late end no longer widened by
   ``eta_spread`` as well: :func:`_late_end`).

The rise forecast (for an explosion) is a log-linear fit with the same draws over the climb (since the level last sat
near H_ref: :func:`evaluate_rise`). Both keep their resampled fits, so a chart draws the curve's band from the same
draws that gave the ETA. The exponential fit is solved on a grid of rates with closed-form (c, A) per rate, vectorised
over rates and resamples, so one evaluation on a 200-point window with B = 200 costs a few milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.hygiene import Prepared, climb_starts, sawtooth_period
from entropy_watch.analysis.logfits import (
    PARAMS,
    SLOWING,
    STEADY,
    fit_draws,
    fit_rows,
    line_or_hinge,
    log_at,
    log_eta_lags,
    mixture,
    model_weights,
)
from entropy_watch.analysis.trend import block_means, lag1_autocorr, mann_kendall, median, theil_sen

N_RATES = 40
BLOCK_MK_AFTER = 40  # windows with more points test block means of 5; shorter ones inflate the variance instead
RISE_MAX_POINTS = 50  # the rise forecast fits at most this many recent points


@dataclass
class Forecast:
    """One forecast at point ``index`` (logged ``step``) in ``direction`` "decay" or "rise". ``floor`` is the target
    level in nats (the collapse floor, or the explosion level for a rise). ETAs are in steps from ``step``
    (inf: no crossing; 0: already there); ``eta_lo``/``eta_hi`` bound the ``eta_interval`` central interval."""

    index: int
    step: int
    direction: str
    window_start_step: int
    n_points: int
    period: int
    slope_log_per_point: float
    mk_p: float
    trend: bool
    lost: float
    gates: bool
    model: str
    params: dict[str, float]
    floor: float
    horizon_steps: float
    p_cross: float
    eta_median: float
    eta_lo: float
    eta_hi: float
    level_start: float
    level_now: float
    positive: bool
    lag: float = 0.0
    """Steps the drawn forecast past ``step`` is delayed by: where the fit is past the target and the level is not,
    the ETA runs from the level at the fit's rate (:func:`logfits.from_level`), and the curve from ``step`` on is the
    fit shifted to start there (it meets the target where the ETA says); 0 otherwise."""
    boot: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    eta_hi_at_rate: float | None = None
    """The interval's late end from the steady declines alone (``eta_hi`` before a slowing decline moved it later;
    None: the same as ``eta_hi``): what "about to reach the floor" reads, so that a slowing the window cannot show
    never softens a critical alert."""
    slow_weight: float = 0.0
    """Posterior weight (0-1) of a decline that slows down as real collapses do (a power law, a fading hinge:
    :func:`logfits.model_weights`); its draws (``slow_boot``) move only the interval's late end (:func:`_late_end`)."""
    slow_boot: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def late_at_rate(self) -> float:
        """The interval's late end at this rate (``eta_hi_at_rate``, or ``eta_hi`` where no slowdown moved it)."""
        return self.eta_hi if self.eta_hi_at_rate is None else self.eta_hi_at_rate

    def evidence(self) -> dict[str, object]:
        """The JSON-able fields (the bootstrap resamples stay out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("boot", "slow_boot")}

    def _t(self, steps: np.ndarray) -> np.ndarray:
        """Steps -> the fit's time axis, delayed by ``lag`` past ``step``."""
        steps = np.asarray(steps, dtype=np.float64)
        return steps - self.window_start_step - np.where(steps > self.step, self.lag, 0.0)

    def curve(self, steps: np.ndarray) -> np.ndarray:
        """The chosen fit evaluated at ``steps`` (nats), for plots."""
        return _model_curve(self.model, self.params, self._t(steps))

    def band(self, steps: np.ndarray, interval: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """The central ``interval`` of the bootstrap fits at ``steps``: (lo, hi) in nats (the fit itself when no
        resamples were kept), delayed with the curve."""
        _, lo, hi = self.drawn(steps, interval)
        return lo, hi

    def drawn(self, steps: np.ndarray, interval: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(median, lo, hi) of the bootstrap fits at ``steps`` in nats — what a chart draws (the fit itself, three
        times, when no resamples were kept). The median, not the central fit: the ETA is the median of the draws'
        crossings, and for monotone curves the pointwise median crosses a target exactly where the median crossing
        is (a draw is past the target at t iff its crossing is before t), so the dashed line meets the floor at the
        ETA every surface quotes. Each draw also drew its target (H_ref's own error, ``d_target`` in log units), so
        each curve is drawn against its own target, rescaled to the central one the chart shows. The central fit
        alone crossed 35 steps before the ETA on a real log (model-averaged draws: 262 against 297) and 15 steps
        before it on a 40-point explosion (203 against 218); the band is the same draws' quantiles."""
        c = self.curve(steps)
        if not self.boot:
            return c, c, c
        curves = self._curves(self.boot, steps)
        q = (1.0 - interval) / 2.0
        lo, mid, hi = np.quantile(curves, [q, 0.5, 1.0 - q], axis=0)
        if self.slow_boot:  # the late side where the decline may slow (as the ETA's late end: _late_end)
            both = np.concatenate([curves, self._curves(self.slow_boot, steps)])
            b, bs = len(curves), len(both) - len(curves)
            w = np.r_[np.full(b, (1.0 - self.slow_weight) / b), np.full(bs, self.slow_weight / bs)]
            hi = np.maximum(hi, _wquantile(both, w, 1.0 - q))
        return mid, lo, hi

    def _curves(self, boot: dict[str, np.ndarray], steps: np.ndarray) -> np.ndarray:
        """H at ``steps`` of every draw in ``boot`` (B, m), each delayed by its own lag and drawn against its own
        target (see :meth:`drawn`)."""
        t = self._t(steps)
        if "lag" in boot:  # each draw delayed by its own lag (B, m), as its ETA runs from the level
            x = np.asarray(steps, dtype=np.float64)
            lag = np.asarray(boot["lag"], dtype=np.float64)[:, None]
            t = x[None, :] - self.window_start_step - np.where(x[None, :] > self.step, lag, 0.0)
        form = "hinge" if "tau" in boot else self.model  # model-averaged draws carry the hinge form
        params = {k: v for k, v in boot.items() if k not in ("lag", "d_target")}
        curves = np.nan_to_num(_model_curve(form, params, t), nan=0.0, posinf=1e300)  # (B, m)
        if "d_target" in boot:  # each draw against its own target: H / target_b · target
            curves = curves * np.exp(-np.asarray(boot["d_target"], dtype=np.float64))[:, None]
        return curves


def _model_curve(model: str, p: dict[str, float] | dict[str, np.ndarray], t: np.ndarray) -> np.ndarray:
    """H(t) of ``model`` with scalar params (shape like t) or arrays of B resamples (shape (B, len(t)))."""
    if model == "none":
        return np.full(t.shape, np.nan)
    if model == "exp_asymptote":
        c, a, k = (np.asarray(p[x], dtype=np.float64)[..., None] for x in ("c", "A", "k"))
        out = c + a * np.exp(-k * t)
    else:  # log-space forms (line, hinge, power), scalar params or B draws of them: log_at
        q = {k: np.asarray(v, dtype=np.float64)[..., None] for k, v in p.items()}
        with np.errstate(over="ignore"):
            out = np.exp(log_at(q, t))
    return out


def _exp_fit(t: np.ndarray, Y: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best ``H = c + A·exp(−k·t)`` per row of ``Y`` (B, n) over ``rates`` (K,): arrays c, A, k of shape (B,)."""
    n = t.size
    E = np.exp(-rates[:, None] * t[None, :])  # (K, n)
    se, see = E.sum(1), (E * E).sum(1)
    sy, syy = Y.sum(1), (Y * Y).sum(1)
    sey = Y @ E.T  # (B, K)
    det = n * see - se**2
    det = np.where(np.abs(det) < 1e-12, np.nan, det)
    A = (n * sey - se[None, :] * sy[:, None]) / det[None, :]
    c = (sy[:, None] - A * se[None, :]) / n
    rss = syy[:, None] - 2 * c * sy[:, None] - 2 * A * sey + n * c**2 + 2 * c * A * se[None, :] + A**2 * see[None, :]
    rss = np.where(np.isfinite(rss), rss, np.inf)
    best = np.argmin(rss, axis=1)
    rows = np.arange(Y.shape[0])
    return c[rows, best], A[rows, best], rates[best]


def _exp_eta(c: np.ndarray, A: np.ndarray, k: np.ndarray, t_now: float, floor: float, level: float) -> np.ndarray:
    """Steps from ``t_now`` until ``c + A·exp(−k·t)`` reaches ``floor`` (0 if already under, inf if never). The
    curve is "now" only where the detector's ``level`` (nats) is there too (:func:`logfits.from_level`): where the
    curve is under the floor and the level is not, the ETA runs along the curve from where it stands at the level."""
    with np.errstate(all="ignore"):
        now = c + A * np.exp(-k * t_now)
        t_at = np.where((now <= floor) & (level > floor), np.log(A / (level - c)) / k, t_now)
        t_cross = np.log(A / (floor - c)) / k
        eta = np.where((c < floor) & (A > 0), np.maximum(t_cross - t_at, 0.0), np.inf)
    return np.where((now <= floor) & ~(level > floor), 0.0, eta)


def _block_resample(resid: np.ndarray, n_boot: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap of ``resid`` (n,) -> (n_boot, n) (keeps short-range autocorrelation)."""
    n = resid.size
    block = max(1, min(block, n))
    nb = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, nb))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)[:, :n]
    return resid[idx]


def trend_p(y: np.ndarray, slope: float, intercept: float, sign: float) -> float:
    """One-sided Mann–Kendall p of a trend of sign ``sign`` in ``y`` (in order), autocorrelation-aware: block
    means of 5 past :data:`BLOCK_MK_AFTER` points, else the variance inflated by (1+φ)/(1−φ) with φ the lag-1
    autocorrelation of the residuals around the Theil–Sen line (``slope``, ``intercept`` per point)."""
    if y.size > BLOCK_MK_AFTER:
        z, _ = mann_kendall(block_means(y, 5))
    else:
        z, _ = mann_kendall(y)
        resid = y - (intercept + slope * np.arange(y.size))
        exact = not np.ptp(resid) > 1e-9 * np.ptp(y)  # on the line to rounding: no noise, no autocorrelation
        phi = 0.0 if exact else lag1_autocorr(resid)
        z = z / np.sqrt((1 + phi) / (1 - phi))
    return 0.5 * math.erfc(sign * z / math.sqrt(2.0))


def _quantiles(eta: np.ndarray, interval: float, spread: float = 1.0) -> np.ndarray:
    """(lo, median, hi) of an ETA distribution with an atom at inf ("never"; a crossing 1e12 steps away is never),
    its spread widened ``spread``-fold around the median in log(1 + ETA), and never under 0: steps to the target
    start at the step forecast from (widened around a far median, an early end of 5 steps read -0.99998, and a real
    explosion alert at step 462 read "80% interval 461–never")."""
    q = (1.0 - interval) / 2.0
    big = 1e12
    out = np.quantile(np.minimum(eta, big), [q, 0.5, 1.0 - q])
    out = np.where(out >= big, np.inf, out)
    if spread != 1.0 and np.isfinite(out[1]):
        with np.errstate(all="ignore"):
            m = np.log1p(out[1])
            out = np.where(np.isfinite(out), np.expm1(m + spread * (np.log1p(out) - m)), out)
    return np.maximum(out, 0.0)


def _wquantile(x: np.ndarray, w: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of the rows of ``x`` (B, ...) weighted by ``w`` (B,) (the first value whose cumulative
    weight reaches q of the total), along axis 0."""
    order = np.argsort(x, axis=0, kind="stable")
    cum = np.cumsum(np.take_along_axis(np.broadcast_to(w.reshape(-1, *([1] * (x.ndim - 1))), x.shape), order, 0), 0)
    k = np.argmax(cum >= q * cum[-1], axis=0)
    return np.take_along_axis(np.take_along_axis(x, order, 0), np.expand_dims(k, 0), 0)[0]


def _late_end(eta: np.ndarray, eta_slow: np.ndarray, w_slow: float, interval: float) -> float:
    """The late end of the ETA interval where the decline may slow down: the (1 + interval)/2 quantile of the steady
    (``eta``, weight 1 − ``w_slow``) and the slowing (``eta_slow``, ``w_slow``) draws together. Not widened by
    ``eta_spread``, which stands for what the steady models miss, the slowdown among it: widened too, 100-point
    held-out collapses' intervals held 0.925 of crossings (over the 0.7-0.9 an honest 80% interval holds); the early
    end and the median stay the steady declines' (:func:`_quantiles`): "at this rate", and a slowdown the window
    cannot show never moves the warning later."""
    x = np.minimum(np.concatenate([eta, eta_slow]), 1e12)
    w = np.concatenate([np.full(eta.size, (1.0 - w_slow) / eta.size), np.full(eta_slow.size, w_slow / eta_slow.size)])
    hi = float(_wquantile(x, w, (1.0 + interval) / 2.0))
    return float("inf") if hi >= 1e12 else hi


def _window(prep: Prepared, i: int, config: DetectorConfig) -> np.ndarray | None:
    """Finite point indices of the decay window ending at i, or None when it is too short."""
    seg0 = int(prep.seg_start[i])
    n_so_far = i - seg0 + 1
    if n_so_far < config.forecast_min_points:
        return None
    w = int(np.clip(round(config.window_frac * n_so_far), config.forecast_min_points, config.window_span_max))
    idx = np.arange(max(seg0, i - w + 1), i + 1)
    idx = idx[prep.finite[idx]]
    return idx if idx.size >= max(6, int(0.8 * config.forecast_min_points)) else None


def _horizon(prep: Prepared, i: int, config: DetectorConfig, span: float = np.inf) -> float:
    """Steps ahead that count as 'soon': as long again as the segment has run, but no further than
    ``horizon_window_mult`` times the fit window's ``span`` (a fit on 200 points says nothing about the 20,000th
    point ahead), capped by the planned end."""
    seg0 = int(prep.seg_start[i])
    elapsed = float(prep.steps[i] - prep.steps[seg0]) + prep.spacing(seg0, i)
    horizon = min(config.horizon_frac * elapsed, config.horizon_window_mult * span)
    if prep.planned_steps:
        horizon = min(horizon, max(float(prep.planned_steps - prep.steps[i]), 0.0))
    return horizon


def evaluate(prep: Prepared, i: int, config: DetectorConfig, *, always_fit: bool = False) -> Forecast | None:
    """The decay forecast at point ``i`` from points ≤ i only; None when the window is too short or H_ref unknown.

    The fits and the bootstrap run only when the gates pass (or ``always_fit``, for the verdict and plots):
    otherwise the forecast is "no crossing" with model ``"none"``. The slowing models that widen the late end of the
    interval (item 4 above) run only with ``always_fit``, the forecast every alert and the verdict quote: what decides
    an alert (P(cross), the late end at this rate) never reads them.
    """
    floor, ref = float(prep.floor[i]), float(prep.h_ref[i])
    idx = _window(prep, i, config) if np.isfinite(floor) and np.isfinite(ref) else None
    if idx is None:
        return None
    # the loss is measured against the early level retaken from more first points when H_ref read it low
    early = ref * float(prep.retaken(i, config.level_tol))  # (Prepared.retaken)
    lost = 1.0 - float(prep.smooth[i]) / early if ref > 0 else 0.0
    if not always_fit and not lost >= config.forecast_min_lost:  # the cheapest gate first: most evaluations stop
        inf = float("inf")
        return Forecast(index=i, step=int(prep.steps[i]), direction="decay", window_start_step=int(prep.steps[idx[0]]),
                        n_points=int(idx.size), period=1, slope_log_per_point=float("nan"), mk_p=float("nan"),
                        trend=False, lost=lost, gates=False, model="none", params={}, floor=floor,
                        horizon_steps=float("nan"), p_cross=0.0, eta_median=inf, eta_lo=inf, eta_hi=inf,
                        level_start=float("nan"), level_now=float(prep.smooth[i]), positive=False)  # fmt: skip
    steps = prep.steps[idx].astype(np.float64)
    h = np.maximum(prep.h[idx], 0.0)
    y_log = prep.log_h[idx]

    # several epochs per batch: average each reuse cycle (B.1 item 1); past window_max points, block means (a slow
    # decline over thousands of points is seen whole, at the cost of 200 points)
    saw, coarse = sawtooth_period(y_log[-config.window_max :]), -(-steps.size // config.window_max)
    period = saw * -(-coarse // saw)  # a whole number of reuse cycles per block
    if period > 1:
        steps, h = block_means(steps, period), block_means(h, period)
        y_log = np.log(h + config.log_eps_nats)
    n = steps.size
    ver = np.arange(n, dtype=np.float64) * period
    slope, icpt = theil_sen(ver, y_log)
    p = trend_p(y_log, slope * period, icpt, -1.0) if np.isfinite(slope) else 1.0
    # "still going": the window's recent half must lean down as well (a drop that has levelled off is no trend)
    half = y_log[n // 2 :]
    s2, i2 = theil_sen(np.arange(half.size, dtype=np.float64), half)
    p2 = trend_p(half, s2, i2, -1.0) if np.isfinite(s2) and half.size >= 4 else 1.0
    trend = bool(slope < 0 and p < config.trend_alpha and s2 <= config.recent_frac * slope and p2 < config.recent_alpha)
    # the level the effect size reads: the window's trend line at i or the detector's level, whichever is higher —
    # a sustained loss, not a dip (a dip in the last points barely moves the Theil–Sen line, and a drop early in the
    # window that has levelled off leaves the level where it settled). The line, not a median of the last points:
    # on a steady decline a median of the last tenth lags by half a tenth, and a steady collapse that lost 60% read
    # as 55% until the run's end (held-out 400-point suite: 5 of 120 missed, 3 reading the line)
    k_lvl = int(np.clip((i - int(prep.seg_start[i]) + 1) // 10, 3, max(3, n // 2)))
    level_start = float(median(h[:k_lvl]))
    at_i = ver[-1] + (period - 1) / 2  # a block mean sits at its block's centre; the last block ends at i
    level_now = float(np.exp(icpt + slope * at_i)) - config.log_eps_nats  # finite: the window has >= 6 finite points
    lost = 1.0 - max(float(prep.smooth[i]), level_now) / early if ref > 0 else 0.0
    # a fall from far above H_ref (anywhere in the window) is a recovery from an explosion, not a collapse
    recovering = float(np.nanmax(prep.smooth[idx])) > config.rearm_explode_mult * ref
    gates = trend and lost >= config.forecast_min_lost and not recovering
    t = steps - steps[0]
    t_now = float(t[-1])
    horizon = _horizon(prep, i, config, float(prep.steps[i]) - float(steps[0]) + prep.spacing(int(idx[0]), i))
    base = dict(index=i, step=int(prep.steps[i]), direction="decay", window_start_step=int(steps[0]), n_points=n,
                period=period, slope_log_per_point=float(slope), mk_p=float(p), trend=trend, lost=lost, gates=gates,
                floor=floor, horizon_steps=horizon, level_start=level_start, level_now=level_now)  # fmt: skip
    if not gates and not always_fit:
        inf = float("inf")
        return Forecast(**base, model="none", params={}, p_cross=0.0, eta_median=inf, eta_lo=inf, eta_hi=inf,
                        positive=False)  # fmt: skip

    log_floor = float(np.log(floor + config.log_eps_nats))
    slow_boot, slow_weight, eta_slow = None, 0.0, np.zeros(0)
    level = float(prep.smooth[i])  # the level every message quotes: the ETA's start when the fit disagrees with it
    rates = 1.0 / np.geomspace(max(t_now, 1.0) / 20.0, max(t_now, 1.0) * 20.0, N_RATES)
    model = "log_linear"
    if n >= 20:  # model choice by the error on the held-out last 20% of the window
        cut = int(0.8 * n)
        tr, te = slice(0, cut), slice(cut, n)
        c1, a1, k1 = _exp_fit(t[tr], h[None, tr], rates)
        pred_exp = np.log(np.maximum(c1[0] + a1[0] * np.exp(-k1[0] * t[te]), 0.0) + config.log_eps_nats)
        p2 = fit_rows(line_or_hinge(t[tr], y_log[tr]), t[tr], y_log[None, tr])
        err_exp = float(np.mean((pred_exp - y_log[te]) ** 2))
        err_lin = float(np.mean((log_at(p2, t[te]) - y_log[te]) ** 2))
        model = "exp_asymptote" if err_exp < err_lin else "log_linear"

    rng = np.random.default_rng(1_000_003 * (i - prep.origin + 1))  # a function of the index only: live == post hoc
    block = max(2, round(n ** (1 / 3)))  # in the window's values (block means already, past window_max points)
    if model == "exp_asymptote":
        c, A, k = _exp_fit(t, h[None, :], rates)
        fitted = c[0] + A[0] * np.exp(-k[0] * t)
        cb, Ab, kb = _exp_fit(t, fitted[None, :] + _block_resample(h - fitted, config.bootstrap, block, rng), rates)
        eta = _exp_eta(cb, Ab, kb, t_now, floor, level)
        eta0 = float(_exp_eta(c, A, k, t_now, floor, level)[0])
        params = {"c": float(c[0]), "A": float(A[0]), "k": float(k[0])}
        with np.errstate(all="ignore"):  # the curve's own time at the level, where _exp_eta starts from it
            now0 = c[0] + A[0] * np.exp(-k[0] * t_now)
            lag = t_now - np.log(A[0] / (level - c[0])) / k[0] if now0 <= floor < level and A[0] > 0 else 0.0
        boot = {"c": cb, "A": Ab, "k": kb}
    else:  # "at this rate": the current rate (a hinge finds where a decline sped up; the calm before is not averaged)
        lls: dict[str, np.ndarray] = {}  # each model's profile likelihood, computed once for weights and draws
        weights = model_weights(t, y_log, lls, slowing=always_fit)  # the slowing models: what a surface quotes
        model, draws = mixture(t, y_log, config.bootstrap, rng, STEADY, weights, lls)
        # the floor is a share of H_ref, itself the median of the noisy points it was taken from: its uncertainty is
        # the ETA's too
        se_ref = float(np.nan_to_num(prep.ref_se(i)))
        floors = log_floor + np.concatenate([[0.0], rng.normal(0.0, se_ref, config.bootstrap)])
        log_level = float(np.log(level + config.log_eps_nats))
        eta_all, lags = log_eta_lags(draws, t_now, floors, -1.0, log_level)
        eta, eta0 = eta_all[1:], float(eta_all[0])
        lag = float(lags[0])
        params = {k: float(draws[k][0]) for k in PARAMS[model]}
        boot = {k: v[1:] for k, v in draws.items()} | {"d_target": floors[1:] - log_floor, "lag": lags[1:]}
        slow_weight = sum(weights.get(m, 0.0) for m in SLOWING)
        if slow_weight > 0:  # where the decline may slow as real ones do: how late that puts the floor
            rng_slow = np.random.default_rng(3_000_017 * (i - prep.origin + 1))  # live == post hoc
            _, slow = mixture(t, y_log, config.bootstrap, rng_slow, SLOWING, weights, lls)
            floors_s = log_floor + np.concatenate([[0.0], rng_slow.normal(0.0, se_ref, config.bootstrap)])
            eta_slow, lags_s = (x[1:] for x in log_eta_lags(slow, t_now, floors_s, -1.0, log_level))
            slow_boot = {k: v[1:] for k, v in slow.items()} | {"d_target": floors_s[1:] - log_floor, "lag": lags_s}
    p_cross = float(np.mean(eta <= horizon))
    lo, med, hi = _quantiles(eta, config.eta_interval, config.eta_spread)
    hi_at_rate = float(hi)
    if slow_boot is not None:  # the interval's late end: the steady and the slowing declines by their weights
        hi = max(_late_end(eta, eta_slow, slow_weight, config.eta_interval), float(med))
    return Forecast(**base, model=model, params=params, p_cross=p_cross,
                    eta_median=float(med) if np.isfinite(med) else eta0, eta_lo=float(lo), eta_hi=float(hi),
                    positive=bool(gates and p_cross >= config.eta_prob and float(prep.smooth[i]) > floor),
                    lag=float(lag) if math.isfinite(lag) else 0.0, boot=boot, eta_hi_at_rate=hi_at_rate,
                    slow_weight=slow_weight, slow_boot=slow_boot)  # fmt: skip


def evaluate_rise(
    prep: Prepared, i: int, config: DetectorConfig, target: float, level: float | None = None
) -> Forecast | None:
    """The rise forecast at point ``i`` toward ``target`` nats: a log-linear fit over the climb — from the last point
    where the level sat at or under ``climb_from_mult``·H_ref (:func:`~entropy_watch.analysis.hygiene.climb_starts`),
    at most :data:`RISE_MAX_POINTS`, at least 3 points — with the decay forecast's parametric draws (robust fit,
    autocorrelation-inflated, :func:`logfits.fit_draws`) and H_ref's own error in the target, its interval widened by
    ``eta_spread`` like the decay's. None when H_ref is unknown or there are too few points. ``level`` (nats, default
    the detector's level) is the one the caller quotes beside the ETA: "now" only when it is past ``target``
    (:func:`logfits.from_level`).

    Not from the last *raw* point under the re-arm line, with a residual bootstrap: on a noisy log that point is a
    low one picked by the noise, the window then held a handful of points, and the 80% interval held the true
    crossing of the critical line in 25-40% of held-out synthetic explosions at 40-400 points (now 82-93%; tuning
    seeds 81-94%: bench_detectors prints it)."""
    ref = float(prep.h_ref[i])
    if not (np.isfinite(ref) and np.isfinite(target)):
        return None
    seg0 = int(prep.seg_start[i])
    start = max(seg0, i - RISE_MAX_POINTS + 1, int(climb_starts(prep, config)[i]) - 1)  # the last calm point too
    idx = np.arange(max(seg0, min(start, i - 2)), i + 1)
    idx = idx[prep.finite[idx]]
    if idx.size < 3:
        return None
    steps = prep.steps[idx].astype(np.float64)
    y_log = prep.log_h[idx]
    n = idx.size
    t = steps - steps[0]
    t_now = float(t[-1])
    slope, icpt = theil_sen(np.arange(n, dtype=np.float64), y_log)
    p = trend_p(y_log, slope, icpt, 1.0) if np.isfinite(slope) else 1.0
    rng = np.random.default_rng(2_000_003 * (i - prep.origin + 1))  # a function of the index only: live == post hoc
    draws = fit_draws("log_linear", t, y_log, config.bootstrap, rng)
    se_ref = float(np.nan_to_num(prep.ref_se(i)))  # the target is a multiple of H_ref: its error is the ETA's too
    targets = float(np.log(target)) + np.concatenate([[0.0], rng.normal(0.0, se_ref, config.bootstrap)])
    level_now = float(prep.smooth[i]) if level is None else level  # what the caller's message quotes
    log_level = float(np.log(level_now + config.log_eps_nats))
    eta_all, lags = log_eta_lags(draws, t_now, targets, 1.0, log_level)
    lag = float(lags[0])
    eta = eta_all[1:]
    lo_q, med, hi_q = _quantiles(eta, config.eta_interval, config.eta_spread)
    return Forecast(
        index=i, step=int(prep.steps[i]), direction="rise", window_start_step=int(steps[0]), n_points=n, period=1,
        slope_log_per_point=float(slope), mk_p=float(p), trend=bool(slope > 0 and p < config.trend_alpha),
        lost=level_now / ref - 1.0, gates=True, model="log_linear",
        params={"a": float(draws["a"][0]), "b": float(draws["b"][0])}, floor=float(target),
        horizon_steps=_horizon(prep, i, config), p_cross=float(np.mean(np.isfinite(eta))),
        eta_median=float(med) if np.isfinite(med) else float(eta_all[0]),
        eta_lo=float(lo_q), eta_hi=float(hi_q), level_start=float(np.exp(y_log[0])), level_now=level_now,
        positive=False, lag=lag if math.isfinite(lag) else 0.0,
        boot={"a": draws["a"][1:], "b": draws["b"][1:], "d_target": targets[1:] - targets[0], "lag": lags[1:]},
    )  # fmt: skip
