"""The log-space decay models the forecast draws from (:mod:`entropy_watch.analysis.forecast`): their design
matrices and grids, posterior weights, parametric draws, and where each draw's curve reaches a target.

A draw is a dict of arrays (B,) holding every model's keys, so that draws of several models mix in one array::

    log H(t) = a + b·g(t; s) + c·g((t − τ)₊; sc),    g(t; s) = s·log(1 + t/s)   (t itself where s = inf)

- ``log_linear`` — a decline at a steady rate (s = sc = inf, c = 0);
- ``hinge`` — a decline whose rate changed at τ (sc = inf): the *current* rate, not averaged with the calm before;
- ``power`` — a power law in the time since the decline began, its clock s before the window's first point
  (c = 0);
- ``fading`` — a hinge whose change of rate fades on a clock sc from its knee.

The first two are the steady declines ("at this rate"); the last two slow down as real collapses do (their
second-half/first-half log-slope 0.24-0.65), their clocks on that slowdown (:func:`_clocks`). Weights are BIC
posteriors with equal priors (:func:`model_weights`); draws are parametric, from a robust fit (:func:`fit_draws`).
"""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis.hygiene import MAD_TO_SIGMA
from entropy_watch.analysis.trend import lag1_autocorr, median

HUBER_K, HUBER_ITERATIONS = 1.345, 3  # Huber's tuning constant (95% efficiency under normal noise)
CLOCK_FRACS = (0.034, 0.71)  # a slowing decline's s / (time since it began): see _clocks
STEADY, SLOWING = ("hinge", "log_linear"), ("fading", "power")  # the log-space models, in the order drawn
PARAMS = {"log_linear": ("a", "b"), "hinge": ("a", "b", "c", "tau"), "power": ("a", "b", "s"),
          "fading": ("a", "b", "c", "tau", "sc")}  # fmt: skip


def _loglin_fit(t: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS ``y = a + b·t`` per row of ``Y`` (B, n): arrays a, b of shape (B,)."""
    tc = t - t.mean()
    b = (Y - Y.mean(1, keepdims=True)) @ tc / float(tc @ tc)
    return Y.mean(1) - b * t.mean(), b


def _hinge_fit(t: np.ndarray, Y: np.ndarray, grid: int = 12) -> tuple[np.ndarray, ...]:
    """Best ``y = a + b·t + c·(t − τ)₊`` per row of ``Y`` (B, n) over a grid of τ (at least 3 points before it and
    4 after): arrays a, b, c, τ and the residual sum of squares, each of shape (B,). The rate now is b + c."""
    taus = _taus(t, grid)
    X = _designs("hinge", t, taus)  # (K, n, 3)
    inv = np.linalg.pinv(np.einsum("kni,knj->kij", X, X))  # (K, 3, 3)
    beta = np.einsum("kij,knj,bn->kbi", inv, X, Y)  # (K, B, 3)
    rss = ((Y[None, :, :] - np.einsum("kni,kbi->kbn", X, beta)) ** 2).sum(-1)  # (K, B)
    best = np.argmin(rss, axis=0)
    rows = np.arange(Y.shape[0])
    b3 = beta[best, rows]
    return b3[:, 0], b3[:, 1], b3[:, 2], taus[best], rss[best, rows]


def line_or_hinge(t: np.ndarray, y: np.ndarray) -> str:
    """ "hinge" when a decline that changed its rate is the likelier model (:func:`model_weights`), else a line."""
    return "hinge" if model_weights(t, y, {}, slowing=False).get("hinge", 0.0) > 0.5 else "log_linear"


def fit_rows(model: str, t: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """Parameters of a log-space ``model`` ("log_linear" or "hinge") per row of ``Y`` (B, n)."""
    if model == "hinge":
        a, b, c, tau, _ = _hinge_fit(t, Y)
        return {"a": a, "b": b, "c": c, "tau": tau}
    a, b = _loglin_fit(t, Y)
    return {"a": a, "b": b}


def _clocks(span: float, n: int = 8) -> np.ndarray:
    """Clock scales s (steps) of a decline that has run ``span`` steps since it began and slowed down as the real
    collapse logs did: on ``g(t; s) = s·log(1 + t/s)`` the log-slope of its second half over its first's is
    ``ln((x+1)/(x+½)) / ln((x+½)/x)`` with x = s/span, and the real collapses that slow down read 0.24-0.65 (Theil–Sen;
    ``entropy_watch.synthetic``, ``decelerating_collapse``): x from 0.034 to 0.71, ``n`` log-spaced points."""
    return max(span, 1e-9) * np.geomspace(CLOCK_FRACS[0], CLOCK_FRACS[1], n)


def _power_grid(t: np.ndarray) -> np.ndarray:
    """The power law's clock scales s over the window's time t: its clock starts s steps before the window's first
    point, and the decline from there to now slowed as the real ones did (:func:`_clocks`): s/(s + t_now) in
    :data:`CLOCK_FRACS`. A power law in the time since the decline began, ``H ∝ (s + t)^(−α)``, is
    ``log H = a + b·s·log(1 + t/s)``."""
    lo, hi = (x / (1.0 - x) for x in CLOCK_FRACS)
    return max(float(t[-1]), 1e-9) * np.geomspace(lo, hi, 8)


def _designs(model: str, t: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The design matrices (K, n, p) of a log-space ``model`` at each of its ``grid`` values: a hinge's τ (K,), a
    fading hinge's (τ, sc) (K, 2), a power law's s (K,); the line's one matrix (1, n, 2)."""
    one = np.ones((len(grid), t.size))
    if model in ("hinge", "fading"):
        tau, sc = (grid, np.full(len(grid), np.inf)) if model == "hinge" else (grid[:, 0], grid[:, 1])
        after = np.maximum(t[None, :] - tau[:, None], 0.0)
        return np.stack([one, np.broadcast_to(t, one.shape), _g(after, sc[:, None])], axis=-1)
    if model == "power":
        return np.stack([one, _g(t[None, :], np.asarray(grid)[:, None])], axis=-1)
    return np.stack([np.ones(t.size), t], axis=-1)[None]


def _design(model: str, t: np.ndarray, knot: float | np.ndarray) -> np.ndarray:
    """The design matrix (n, p) of ``model`` at one grid value ``knot`` (:func:`_designs`)."""
    return _designs(model, t, np.asarray([knot], dtype=np.float64))[0]


def _grid(model: str, t: np.ndarray) -> np.ndarray:
    """The grid a model's nonlinear parameter is profiled over: a hinge's knots τ (:func:`_taus`), a power law's
    clock scales s (:func:`_power_grid`), a fading hinge's (τ, sc) pairs (K, 2) — every knot with every clock from
    it that slowed the decline since as the real collapses slowed (:func:`_clocks` of t_now − τ)."""
    if model == "hinge":
        return _taus(t)
    if model == "power":
        return _power_grid(t)
    taus = _taus(t)
    clocks = _clocks(1.0)[None, :] * np.maximum(float(t[-1]) - taus, 1e-9)[:, None]  # (τ, sc)
    return np.stack([np.repeat(taus, clocks.shape[1]), clocks.ravel()], axis=1)


def _profile(model: str, t: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Residual sum of squares (K,) of the least-squares ``model`` at each of its ``grid`` values."""
    X = _designs(model, t, grid)  # (K, n, p)
    beta = np.einsum("kij,knj,n->ki", np.linalg.pinv(np.einsum("kni,knj->kij", X, X)), X, y)
    return ((y[None, :] - np.einsum("kni,ki->kn", X, beta)) ** 2).sum(-1)


def _taus(t: np.ndarray, grid: int = 12) -> np.ndarray:
    """A hinge's knots: ``grid`` points from the 3rd to the 4th-last (the middle one under 8 points)."""
    n = t.size
    return np.unique(np.linspace(t[2], t[n - 4], grid)) if n >= 8 else np.array([t[n // 2]])


def _loglik(model: str, t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The profile log-likelihood (K,) of ``model`` over its grid (:func:`_grid`), Gaussian errors."""
    n = t.size
    return -0.5 * n * np.log(np.maximum(_profile(model, t, y, _grid(model, t)), 1e-300) / n)


def model_weights(t: np.ndarray, y: np.ndarray, lls: dict[str, np.ndarray], slowing: bool = True) -> dict[str, float]:
    """Posterior weights of the log-space decay models, equal priors, from BIC (exp(−BIC/2), Bayesian model
    averaging): a decline at a steady rate (a straight line, 2 parameters), one whose rate changed at τ (a hinge, 4,
    τ profiled), and two that slow down as real collapses do — a power law in the time since the decline began (2,
    its clock s integrated over :func:`_power_grid`) and a hinge whose change of rate fades on a clock from its knee
    (4, sc integrated over :func:`_clocks`). Hinges need 10 points, the power law 8. Without ``slowing``, the steady
    models alone (their weights relative to each other are the same). ``lls`` caches each model's profile
    log-likelihood (:func:`_loglik`) for the draws that follow."""
    n = t.size

    def ll(model: str) -> np.ndarray:
        if model not in lls:
            lls[model] = _loglik(model, t, y)
        return lls[model]

    def mean_ll(v: np.ndarray) -> float:  # log of the mean likelihood: the clock integrated over its grid
        return float(v.max() + np.log(np.mean(np.exp(v - v.max()))))

    bic = {"log_linear": -2.0 * float(ll("log_linear")[0]) + 2 * np.log(n)}
    if n >= 10:
        bic["hinge"] = -2.0 * float(ll("hinge").max()) + 4 * np.log(n)
    if n >= 10 and slowing:
        per_tau = ll("fading").reshape(_taus(t).size, -1)
        bic["fading"] = -2.0 * max(mean_ll(row) for row in per_tau) + 4 * np.log(n)
    if n >= 8 and slowing:
        bic["power"] = -2.0 * mean_ll(ll("power")) + 2 * np.log(n)
    low = min(bic.values())
    w = {m: float(np.exp(-(v - low) / 2)) for m, v in bic.items()}
    total = sum(w.values())
    return {m: v / total for m, v in w.items()}


def fit_draws(
    model: str, t: np.ndarray, y: np.ndarray, n_draw: int, rng: np.random.Generator, ll: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The fit of ``model`` to ``y`` (n,) and ``n_draw`` draws of its parameters from their sampling distribution:
    multivariate t (df = n − p) around a robust fit (Huber, k = 1.345, by iteratively reweighted least squares) with
    covariance s²·(XᵀWX)⁻¹, inflated by (1+φ)/(1−φ) for the residuals' lag-1 autocorrelation φ (clipped to
    [0, 0.9]). A hinge's τ, a power law's s or a fading hinge's (τ, sc) is drawn too, from its profile likelihood
    over its grid (:func:`_grid`; where a decline sped up is uncertain right after it did). Row 0 is the fit itself.
    Parametric rather than a residual bootstrap, which under-covers on the short windows of sparse logs. Every draw
    carries the keys of every model (c = τ = 0, s = sc = inf where its model has none), so they mix in one array."""
    out = {k: np.zeros(n_draw + 1) for k in ("a", "b", "c", "tau")}
    out |= {k: np.full(n_draw + 1, np.inf) for k in ("s", "sc")}
    if model == "log_linear":
        beta, z = _robust_draws(_design(model, t, 0.0), y, n_draw + 1, rng)
        z[0] = 0.0
        out["a"], out["b"] = beta[0] + z[:, 0], beta[1] + z[:, 1]
        return out
    grid = _grid(model, t)
    ll = _loglik(model, t, y) if ll is None else ll  # its profile over the grid (:func:`model_weights` keeps it)
    if model == "fading":  # the knot its clocks fit best together (as its weight reads it), its clocks drawn
        per_tau = ll.reshape(_taus(t).size, -1)
        keep = int(np.argmax(per_tau.max(1) + np.log(np.exp(per_tau - per_tau.max(1, keepdims=True)).mean(1))))
        grid, ll = grid.reshape(per_tau.shape[0], -1, 2)[keep], per_tau[keep]
    prob = np.exp(ll - ll.max())
    best = int(np.argmax(prob))
    pick = rng.choice(len(grid), size=n_draw, p=prob / prob.sum())
    knots = {"hinge": ("tau",), "power": ("s",), "fading": ("tau", "sc")}[model]
    for k in np.unique(np.concatenate([[best], pick])):
        rows = np.concatenate([[0], 1 + np.flatnonzero(pick == k)]) if k == best else 1 + np.flatnonzero(pick == k)
        beta, z = _robust_draws(_design(model, t, grid[k]), y, rows.size, rng)
        if k == best:
            z[0] = 0.0
        for j, name in enumerate(("a", "b", "c")[: beta.size]):
            out[name][rows] = beta[j] + z[:, j]
        for name, v in zip(knots, np.atleast_1d(grid[k]), strict=True):
            out[name][rows] = v
    return out


def mixture(
    t: np.ndarray,
    y: np.ndarray,
    n_draw: int,
    rng: np.random.Generator,
    models: tuple[str, ...],
    w: dict[str, float],
    lls: dict[str, np.ndarray],
) -> tuple[str, dict[str, np.ndarray]]:
    """(the likeliest of ``models``, 1 + ``n_draw`` draws from them in proportion to their weights ``w``,
    :func:`model_weights`): row 0 is the likeliest model's own fit. Model averaging, so that the ETA's interval
    holds what the window cannot tell apart."""
    weights = {m: w.get(m, 0.0) for m in models}
    total = sum(weights.values())
    best = max(models, key=lambda m: weights[m]) if total > 0 else models[-1]
    counts, left = {}, n_draw
    for m in models[:-1]:
        counts[m] = min(int(round(n_draw * weights[m] / total)), left) if total > 0 else 0
        left -= counts[m]
    counts[models[-1]] = left
    parts = []
    for m in models:  # the order the generator is drawn in (the last one always: the same stream whatever the weights)
        if counts[m] or m == best or m == models[-1]:
            d = fit_draws(m, t, y, max(counts[m], 1), rng, lls.get(m))
            parts.append((m, {k: v[0 if m == best else 1 : 1 + counts[m]] for k, v in d.items()}))
    parts.sort(key=lambda mp: mp[0] != best)  # the likeliest first: its row 0 is the fit
    return best, {k: np.concatenate([d[k] for _, d in parts]) for k in parts[0][1]}


def _robust_draws(X: np.ndarray, y: np.ndarray, n_draw: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(β, draws − β): the Huber fit of ``y`` on ``X`` and ``n_draw`` multivariate-t deviations from it."""
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    w = np.ones_like(y)
    for _ in range(HUBER_ITERATIONS):  # an outlier at the window's end must not set the rate
        resid = y - X @ beta
        scale = max(MAD_TO_SIGMA * float(median(np.abs(resid - median(resid)))), 1e-9)
        w = np.minimum(1.0, HUBER_K * scale / np.maximum(np.abs(resid), 1e-12))
        beta = np.linalg.lstsq(X * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    resid = y - X @ beta
    p = X.shape[1]
    df = max(y.size - p, 1)
    phi = lag1_autocorr(resid)
    s2 = float(np.sum(w * resid**2)) / max(float(w.sum()) - p, 1.0)
    cov = s2 * (1 + phi) / (1 - phi) * np.linalg.pinv((X * w[:, None]).T @ X)
    L = np.linalg.cholesky(cov + 1e-18 * np.eye(p))
    z = rng.standard_normal((n_draw, p)) @ L.T * np.sqrt(df / rng.chisquare(df, n_draw))[:, None]
    return beta, z


def _g(t: float | np.ndarray, s: np.ndarray) -> np.ndarray:
    """The power model's clock: ``s·log(1 + t/s)`` (t where s is inf, the straight line it tends to)."""
    with np.errstate(all="ignore"):
        return np.where(np.isfinite(s), s * np.log1p(t / s), t)


def _g_inv(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The t with ``_g(t, s) = v``: ``s·(exp(v/s) − 1)`` (v where s is inf)."""
    with np.errstate(all="ignore"):
        return np.where(np.isfinite(s), s * np.expm1(v / s), v)


def log_at(p: dict[str, np.ndarray], t: float | np.ndarray) -> np.ndarray:
    """log H of a log-space fit at ``t`` (rows of params: shape (B,) for scalar t):
    ``a + b·g(t; s) + c·g((t − τ)₊; sc)`` with g the power model's clock (:func:`_g`; t itself where s or sc is inf or
    absent): a line, a power law (s), a hinge (c, τ) whose change of rate may itself fade (sc)."""
    out = p["a"] + p["b"] * (_g(t, p["s"]) if "s" in p else t)
    if "c" not in p:
        return out
    after = np.maximum(t - p["tau"], 0.0)
    return out + p["c"] * (_g(after, p["sc"]) if "sc" in p else after)


def _rate_at(p: dict[str, np.ndarray], t: float) -> np.ndarray:
    """The log-space fit's slope at time ``t`` (per step): a hinge's second slope once past its knee, a power law's
    ``b/(1 + t/s)``."""
    b = p["b"] / (1.0 + t / p["s"]) if "s" in p else p["b"]
    if "c" not in p:
        return b
    c = p["c"] / (1.0 + np.maximum(t - p["tau"], 0.0) / p["sc"]) if "sc" in p else p["c"]
    return b + np.where(t > p["tau"], c, 0.0)


def log_eta(
    p: dict[str, np.ndarray], t_now: float, log_target: np.ndarray, sign: float, log_level: float
) -> np.ndarray:
    """Steps from ``t_now`` until a log-space fit reaches ``log_target`` (down: sign −1) along its curve from now —
    a straight line at the current rate for the line and the hinge (past its knee, which lies inside the window), a
    slowing one for the power law — from where the fit stands now unless it is past the target and the detector's
    level (``log_level``, log space) is not (:func:`from_level`): then from where the curve meets the level."""
    return log_eta_lags(p, t_now, log_target, sign, log_level)[0]


def _log_times(
    p: dict[str, np.ndarray], t_now: float, log_target: np.ndarray, sign: float, log_level: float
) -> tuple[np.ndarray, np.ndarray]:
    """(t_start, t_cross) of each draw (B,): the curve's time where "at this rate" starts (t_now, or where it meets the
    level: :func:`from_level`) and where it reaches the target (NaN: never, it moves the other way; t_start when
    the start is past the target already). Past the hinge's knee the curve is ``a' + b'·g(t)`` with a' = a − c·τ,
    b' = b + c (c = 0 for the power law), which :func:`_g_inv` inverts; a fading hinge's has no closed form and is
    solved along the curve (:func:`_first_past`), from the level back along its current rate."""
    fit = log_at(p, t_now)
    start = from_level(fit, log_level, log_target, sign)
    c = p["c"] if "c" in p else 0.0
    a_eff = p["a"] - c * (p["tau"] if "c" in p else 0.0)
    b_eff = p["b"] + c
    s = p["s"] if "s" in p else np.full(np.shape(fit), np.inf)
    with np.errstate(all="ignore"):
        moving = sign * b_eff > 0
        t_start = np.where((start == fit) | ~moving, t_now, _g_inv((start - a_eff) / b_eff, s))
        t_cross = _g_inv((log_target - a_eff) / b_eff, s)
    t_start = np.where(np.isfinite(t_start), t_start, t_now)
    past = sign * (start - log_target) >= 0
    t_cross = np.where(past, t_start, np.where(moving, t_cross, np.nan))
    fading = np.flatnonzero(np.isfinite(p["sc"]) & (p["c"] != 0)) if "sc" in p else np.zeros(0, int)
    if fading.size:  # a hinge whose change of rate fades: no closed form, solved along the curve
        q = {k: np.asarray(v)[fading] for k, v in p.items()}
        rate = _rate_at(q, t_now)
        with np.errstate(all="ignore"):  # from the level: back along the current rate (as a line's)
            back = np.where(sign * rate > 0, (fit[fading] - start[fading]) / rate, 0.0)
        t_start[fading] = t_now - np.where(np.isfinite(back), back, 0.0)
        target = np.broadcast_to(log_target, fit.shape)[fading]
        t_cross[fading] = np.where(past[fading], t_start[fading],
                                   _first_past(q, t_start[fading], target, sign, max(t_now, 1.0)))  # fmt: skip
    return t_start, t_cross


def _first_past(
    p: dict[str, np.ndarray], t_from: np.ndarray, log_target: np.ndarray, sign: float, span: float
) -> np.ndarray:
    """The first time ≥ ``t_from`` (B,) where each draw's curve is at or past ``log_target`` (B,) — down for sign −1
    — within 10⁶ ``span`` s (NaN: not by then): the first grid time past it on a log-spaced grid, then bisection."""
    rows = np.arange(t_from.size)
    grid = t_from[:, None] + span * np.concatenate([[0.0], np.geomspace(1e-4, 1e6, 96)])[None, :]  # (B, G)
    with np.errstate(all="ignore"):
        past = sign * (log_at({k: v[:, None] for k, v in p.items()}, grid) - log_target[:, None]) >= 0
        j = np.argmax(past, axis=1)
        lo, hi = grid[rows, np.maximum(j - 1, 0)], grid[rows, j]
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            now = sign * (log_at(p, mid) - log_target) >= 0
            lo, hi = np.where(now, lo, mid), np.where(now, mid, hi)
    return np.where(past.any(1), hi, np.nan)


def from_level(fit_now: np.ndarray, level: float, target: np.ndarray, sign: float) -> np.ndarray:
    """Where "at this rate" starts: the fit's value now, or the level the detector reads (what every message quotes)
    where the fit is past the target and that level is not. A climb that levelled off under the line, or a fall
    that paused above the floor, leaves a line fitted over the whole move past the target while the level is not
    there: the outlook said "above 6× H_ref (0.92 nats) now" beside "entropy 0.79 nats" (a real 40-point TRL log),
    or "about to reach the floor: 0.14 nats ...; at 10% of H_ref (0.05 nats) now". The reverse, a level that dipped
    past the target while the fit has not, keeps the fit's ETA: a noisy level under the floor is not the floor
    reached (the floor rule holds it first), and the trend placed the crossing better (held-out 4,000-point
    collapse: ETA 2,051 with the truth at 2,056, where "now" read 164 steps early). Unknown level: the fit."""
    past_fit, past_level = sign * (fit_now - target) >= 0, sign * (level - target) >= 0
    return np.where(past_fit & ~past_level & np.isfinite(level), level, fit_now)


def log_eta_lags(
    p: dict[str, np.ndarray], t_now: float, log_target: np.ndarray, sign: float, log_level: float
) -> tuple[np.ndarray, np.ndarray]:
    """(ETA, :attr:`Forecast.lag`) of each log-space draw (B,): the ETA of :func:`log_eta`, and how far before
    ``t_now`` its curve stands at the level where its ETA runs from the level, else 0. Row 0, the central fit, gives
    the forecast's own lag; the others delay each draw's curve as its ETA is delayed, so the drawn median meets the
    target where the median ETA says."""
    t_start, t_cross = _log_times(p, t_now, log_target, sign, log_level)
    with np.errstate(invalid="ignore"):
        eta = np.where(np.isnan(t_cross), np.inf, np.maximum(t_cross - t_start, 0.0))
    lag = t_now - t_start
    return eta, np.where(np.isfinite(lag), lag, 0.0)
