"""L3, the primary collapse detector: will the current trajectory reach the floor within the horizon?

Entropy falls in every healthy run, so a significant decline alone is not an alarm (DETECTION §B.4: plain and
Hamed–Rao Mann–Kendall flagged 92–100% of healthy runs). At each evaluation on a trailing window:

1. gates — Theil–Sen slope of log H < 0 with a Mann–Kendall p < α on block means (autocorrelation-aware: block means
   keep the test's size under AR(1) noise, §B.4 table), and an effect size (≥ 20% decline per 100 versions);
2. two decay models — log-linear ``log H = α + β·t`` and exponential-to-asymptote ``H = c + A·exp(−k·t)``
   (method card 7), chosen by the error on the window's last 20% held out of the fit;
3. a moving-block bootstrap of the chosen fit's residuals gives the ETA distribution to the floor; the evaluation is
   positive when P(ETA ≤ horizon) ≥ 0.8. An asymptote above the floor predicts "no crossing": that is what separates
   healthy decay from collapse.

The exponential fit is solved on a grid of rates with closed-form (c, A) for each rate, vectorised over rates and
bootstrap resamples at once, so one evaluation on a 200-point window with B = 200 costs a few milliseconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.hygiene import Prepared, sawtooth_period
from entropy_watch.analysis.trend import block_means, mann_kendall, theil_sen

N_RATES = 40


@dataclass
class Forecast:
    """One L3 evaluation at version ``index`` (logged ``step``). ETAs are in steps from ``step`` (inf: no crossing)."""

    index: int
    step: int
    window_start_step: int
    n_points: int
    period: int
    slope_log_per_version: float
    change_per_100: float
    mk_p: float
    gates: bool
    model: str
    params: dict[str, float]
    floor: float
    horizon_steps: float
    p_cross: float
    eta_median: float
    eta_lo: float
    eta_hi: float
    eta_q80: float
    level_start: float
    level_now: float
    positive: bool

    def evidence(self) -> dict[str, object]:
        return asdict(self)

    def curve(self, steps: np.ndarray) -> np.ndarray:
        """The chosen fit evaluated at ``steps`` (nats), for plots."""
        t = np.asarray(steps, dtype=np.float64) - self.window_start_step
        p = self.params
        if self.model == "none":
            return np.full(t.shape, np.nan)
        if self.model == "exp_asymptote":
            return p["c"] + p["A"] * np.exp(-p["k"] * t)
        return np.exp(p["a"] + p["b"] * t)


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


def _exp_eta(c: np.ndarray, A: np.ndarray, k: np.ndarray, t_now: float, floor: float) -> np.ndarray:
    """Steps from ``t_now`` until ``c + A·exp(−k·t)`` reaches ``floor`` (0 if already under, inf if never)."""
    with np.errstate(all="ignore"):
        now = c + A * np.exp(-k * t_now)
        t_cross = np.log(A / (floor - c)) / k
        eta = np.where((c < floor) & (A > 0), np.maximum(t_cross - t_now, 0.0), np.inf)
    return np.where(now <= floor, 0.0, eta)


def _loglin_fit(t: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS ``y = a + b·t`` per row of ``Y`` (B, n): arrays a, b of shape (B,)."""
    tc = t - t.mean()
    b = (Y - Y.mean(1, keepdims=True)) @ tc / float(tc @ tc)
    return Y.mean(1) - b * t.mean(), b


def _loglin_eta(a: np.ndarray, b: np.ndarray, t_now: float, log_floor: float) -> np.ndarray:
    with np.errstate(all="ignore"):
        now = a + b * t_now
        eta = np.where(b < 0, (log_floor - now) / b, np.inf)
    return np.where(now <= log_floor, 0.0, eta)


def _block_resample(resid: np.ndarray, n_boot: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap of ``resid`` (n,) -> (n_boot, n) (keeps short-range autocorrelation)."""
    n = resid.size
    block = max(1, min(block, n))
    nb = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, nb))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)[:, :n]
    return resid[idx]


def evaluate(prep: Prepared, i: int, config: DetectorConfig, *, always_fit: bool = False) -> Forecast | None:
    """Evaluate L3 at version ``i`` using versions ≤ i only; None when the window is too short or H_ref unknown.

    The fits and the bootstrap run only when the gates pass (or ``always_fit``, for plots): otherwise the forecast
    is "no crossing" with model ``"none"``.
    """
    floor = float(prep.floor[i])
    if not np.isfinite(floor):
        return None
    seg0 = int(prep.seg_start[i])
    n_so_far = i - seg0 + 1
    w = int(np.clip(config.window_frac * n_so_far, config.window_min, config.window_max))
    lo = max(seg0, i - w + 1)
    idx = np.arange(lo, i + 1)
    idx = idx[prep.finite[idx]]
    if idx.size < max(20, 4 * config.block):
        return None
    steps = prep.steps[idx].astype(np.float64)
    h = np.maximum(prep.h[idx], 0.0)
    y_log = prep.log_h[idx]

    # several epochs per batch: average each reuse cycle (B.1 item 1)
    period = sawtooth_period(y_log)
    if period > 1:
        nb = idx.size // period
        steps = block_means(steps, period)
        h = block_means(h, period)
        y_log = np.log(h + config.log_eps_nats)
        idx = idx[idx.size - nb * period :: period]
    n = steps.size
    ver = np.arange(n, dtype=np.float64) * period

    slope, _ = theil_sen(ver, y_log)
    _, mk_p = mann_kendall(block_means(y_log, config.block))
    change = float(np.expm1(slope * 100.0)) if np.isfinite(slope) else float("nan")
    gates = bool(slope < 0 and mk_p < config.trend_alpha and change <= -config.min_decline_per_100)

    t = steps - steps[0]
    t_now = float(t[-1])
    spacing = float(np.median(np.diff(prep.steps[max(seg0, i - w + 1) : i + 1]))) if n > 1 else 1.0
    remaining = np.inf
    if prep.planned_steps:
        remaining = max(float(prep.planned_steps - prep.steps[i]), 0.0)
    horizon = float(min(remaining, config.horizon_versions * spacing))
    rates = 1.0 / np.geomspace(max(t_now, 1.0) / 20.0, max(t_now, 1.0) * 20.0, N_RATES)
    log_floor = float(np.log(floor + config.log_eps_nats))

    k_lvl = max(1, min(5, n // 4))
    level_start, level_now = float(np.median(h[:k_lvl])), float(np.median(h[-k_lvl:]))
    # a fall that starts far above the early level is a recovery from an explosion, not a collapse
    gates = gates and level_start <= config.recovery_mult * float(prep.h_ref[i])
    if not gates and not always_fit:
        inf = float("inf")
        return Forecast(
            i,
            int(prep.steps[i]),
            int(steps[0]),
            int(n),
            int(period),
            float(slope),
            change,
            float(mk_p),
            False,
            "none",
            {},
            floor,
            horizon,
            0.0,
            inf,
            inf,
            inf,
            inf,
            level_start,
            level_now,
            False,
        )

    # model choice by the error on the held-out last 20% of the window
    cut = int(0.8 * n)
    tr, te = slice(0, cut), slice(cut, n)
    c1, a1, k1 = _exp_fit(t[tr], h[None, tr], rates)
    pred_exp = np.log(np.maximum(c1[0] + a1[0] * np.exp(-k1[0] * t[te]), 0.0) + config.log_eps_nats)
    a2, b2 = _loglin_fit(t[tr], y_log[None, tr])
    pred_lin = a2[0] + b2[0] * t[te]
    err_exp = float(np.mean((pred_exp - y_log[te]) ** 2))
    err_lin = float(np.mean((pred_lin - y_log[te]) ** 2))
    model = "exp_asymptote" if err_exp <= err_lin else "log_linear"

    rng = np.random.default_rng(1_000_003 * (i + 1))  # a function of the index only: live == post hoc
    block = max(config.block, period if period > 1 else 1)
    if model == "exp_asymptote":
        c, A, k = _exp_fit(t, h[None, :], rates)
        fitted = c[0] + A[0] * np.exp(-k[0] * t)
        boot = fitted[None, :] + _block_resample(h - fitted, config.bootstrap, block, rng)
        cb, Ab, kb = _exp_fit(t, boot, rates)
        eta = _exp_eta(cb, Ab, kb, t_now, floor)
        eta0 = float(_exp_eta(c, A, k, t_now, floor)[0])
        params = {"c": float(c[0]), "A": float(A[0]), "k": float(k[0])}
    else:
        a, b = _loglin_fit(t, y_log[None, :])
        fitted = a[0] + b[0] * t
        boot = fitted[None, :] + _block_resample(y_log - fitted, config.bootstrap, block, rng)
        ab, bb = _loglin_fit(t, boot)
        eta = _loglin_eta(ab, bb, t_now, log_floor)
        eta0 = float(_loglin_eta(a, b, t_now, log_floor)[0])
        params = {"a": float(a[0]), "b": float(b[0])}
    p_cross = float(np.mean(eta <= horizon))
    big = 1e18  # quantiles of a distribution with an atom at "never" (inf)
    q = np.quantile(np.minimum(eta, big), [0.05, 0.5, 0.8, 0.95])
    q = np.where(q >= big, np.inf, q)
    return Forecast(
        index=i,
        step=int(prep.steps[i]),
        window_start_step=int(steps[0]),
        n_points=int(n),
        period=int(period),
        slope_log_per_version=float(slope),
        change_per_100=change,
        mk_p=float(mk_p),
        gates=gates,
        model=model,
        params=params,
        floor=floor,
        horizon_steps=horizon,
        p_cross=p_cross,
        eta_median=float(q[1]) if np.isfinite(q[1]) else eta0,
        eta_lo=float(q[0]),
        eta_hi=float(q[3]),
        eta_q80=float(q[2]),
        level_start=level_start,
        level_now=level_now,
        positive=bool(gates and p_cross >= config.eta_prob and level_now > floor),  # at the floor: L1's job
    )
