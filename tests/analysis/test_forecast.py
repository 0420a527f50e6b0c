"""L3 forecast: fits, ETA with a bootstrap interval, gates; the primary collapse detector."""

from __future__ import annotations

import dataclasses

import numpy as np

from entropy_watch.analysis import DetectorConfig, analyze_series
from entropy_watch.analysis import forecast as F
from entropy_watch.analysis.forecast import _exp_eta, _exp_fit, _wquantile, evaluate, evaluate_rise, trend_p
from entropy_watch.analysis.hygiene import prepare
from entropy_watch.analysis.logfits import log_at as _log_at
from entropy_watch.analysis.logfits import log_eta as _log_eta
from entropy_watch.analysis.trend import theil_sen

from ._series import collapsing, healthy, noisy, series


def test_exp_fit_recovers_parameters() -> None:
    t = np.arange(200, dtype=float)
    y = 0.1 + 0.9 * np.exp(-t / 50.0)
    c, A, k = _exp_fit(t, y[None, :], 1.0 / np.geomspace(5, 2000, 200))
    assert abs(c[0] - 0.1) < 0.01 and abs(A[0] - 0.9) < 0.02 and abs(1 / k[0] - 50) < 3
    # asymptote above the floor: never crosses; below it: crosses where the curve says
    at_199 = float(c[0] + A[0] * np.exp(-k[0] * 199.0))  # the level where the curve stands
    assert np.isinf(_exp_eta(c, A, k, 199.0, 0.05, at_199))[0]
    eta = _exp_eta(np.array([0.0]), np.array([1.0]), np.array([0.02]), 0.0, np.exp(-2.0), 1.0)
    assert abs(eta[0] - 100.0) < 1e-6


def test_eta_runs_from_the_level_where_fit_and_level_disagree_about_the_target() -> None:
    """'at this rate' starts where the fit stands, unless the fit is past the target and the level every message
    quotes is not (then from the level, at the fit's rate): 'now' needs both. A level past while the fit is not keeps
    the fit's ETA (a noisy dip under the floor is not the floor reached)."""
    one = np.array([1.0])
    # exp curve exp(-0.02 t): at t=100 it stands at e^-2; a floor of e^-2.5 is 25 steps on from there
    curve = (np.array([0.0]), one, np.array([0.02]))
    assert abs(_exp_eta(*curve, 100.0, np.exp(-2.5), np.exp(-2.0))[0] - 25.0) < 1e-6
    # the curve at t=150 is under the floor (e^-3), the level (e^-2) is not: from where the curve meets the level
    assert abs(_exp_eta(*curve, 150.0, np.exp(-2.5), np.exp(-2.0))[0] - 25.0) < 1e-6
    assert _exp_eta(*curve, 150.0, np.exp(-2.5), np.exp(-3.0))[0] == 0.0  # both under the floor: now
    assert abs(_exp_eta(*curve, 100.0, np.exp(-2.5), np.exp(-3.0))[0] - 25.0) < 1e-6  # only the level: the curve's
    assert _exp_eta(*curve, 150.0, np.exp(-2.5), float("nan"))[0] == 0.0  # level unknown: the curve decides
    line = {"a": np.array([0.0]), "b": np.array([0.01])}  # rising 0.01 per step in log space: at t=100 it is at 1.0
    target = np.array([1.5])
    assert abs(_log_eta(line, 100.0, target, 1.0, 1.0)[0] - 50.0) < 1e-9  # they agree: from the fit
    assert abs(_log_eta(line, 200.0, target, 1.0, 1.0)[0] - 50.0) < 1e-9  # fit at 2.0, level 1.0: from the level
    assert _log_eta(line, 200.0, target, 1.0, 1.6)[0] == 0.0  # both past: now
    assert abs(_log_eta(line, 100.0, target, 1.0, 1.6)[0] - 50.0) < 1e-9  # only the level past: the fit's ETA
    assert _log_eta(line, 200.0, target, 1.0, float("nan"))[0] == 0.0  # level unknown: the fit (past) decides
    falling = {"a": np.array([0.0]), "b": np.array([-0.01])}
    assert abs(_log_eta(falling, 300.0, np.array([-2.0]), -1.0, -1.0)[0] - 100.0) < 1e-9


def test_a_climb_that_levelled_off_under_the_line_is_forecast_from_its_level() -> None:
    """A climb 0.15 -> 1.0 that fell back to 0.8: the line over the climb is past 0.9 at the last point, the level is
    not. The ETA is not 'now', and the drawn forecast starts at the level (delayed by ``lag``), so the chart's
    curve meets 0.9 where the ETA says, not before the last point."""
    cfg = DetectorConfig()
    h = noisy(np.r_[np.full(10, 0.15), np.geomspace(0.15, 1.0, 20), np.full(10, 0.8)], 0.03, seed=1)
    prep = prepare(series(h), cfg)
    i = h.size - 1
    f = evaluate_rise(prep, i, cfg, 0.9)
    assert f is not None and f.curve(np.array([float(f.step)]))[0] > 0.9  # the fit itself is past the line
    level = float(prep.smooth[i])
    assert level < 0.9 and f.eta_median > 0 and f.lag > 0
    after = f.curve(np.array([f.step + 1e-6]))[0]
    assert abs(after - level) < 1e-3 * level  # the forecast starts where the level stands
    at_eta = f.curve(np.array([f.step + f.eta_median]))[0]
    assert 0.8 < at_eta / 0.9 < 1.25  # and reaches the line about where the (bootstrap median) ETA says
    lo, hi = f.band(np.array([f.step + 1e-6]), cfg.eta_interval)
    assert lo[0] <= after <= hi[0]  # the band moves with it
    g = evaluate_rise(prep, 29, cfg, 0.9)  # mid-climb: fit and level agree, nothing delayed
    assert g is not None and g.lag == 0.0


def test_eta_interval_covers_the_true_crossing() -> None:
    cfg = DetectorConfig()
    t = np.arange(300, dtype=float)
    clean = np.exp(-t / 100.0)  # floor = 0.1 * H_ref ~ 0.1: crossing near t = 230
    h = noisy(clean, 0.03, seed=3)
    prep = prepare(series(h), cfg)
    f = evaluate(prep, 159, cfg)
    assert f is not None and f.gates and f.positive and f.direction == "decay"
    true_eta = 100.0 * np.log(prep.h_ref[159] / f.floor) - 159
    assert f.eta_lo <= true_eta <= f.eta_hi
    assert f.eta_lo < f.eta_median < f.eta_hi
    lo, hi = f.band(np.array([159.0, 250.0]), cfg.eta_interval)  # the drawable band brackets the fit
    c = f.curve(np.array([159.0, 250.0]))
    assert (lo <= c + 1e-12).all() and (c <= hi + 1e-12).all() and hi[1] > lo[1]


def test_healthy_plateau_predicts_no_crossing() -> None:
    cfg = DetectorConfig()
    for n in (40, 400):
        prep = prepare(series(healthy(n, tau=n / 10)), cfg)
        fs = [evaluate(prep, i, cfg) for i in range(cfg.forecast_min_points, n)]
        assert not any(f.positive for f in fs if f is not None), n


def test_windows_scale_with_the_points_a_run_has() -> None:
    cfg = DetectorConfig()
    prep = prepare(series(collapsing(40, onset=5, tau=10.0)), cfg)
    assert evaluate(prep, cfg.forecast_min_points - 2, cfg) is None  # too few points yet
    f = evaluate(prep, 30, cfg)
    assert f is not None and f.n_points == round(cfg.window_frac * 31) and f.gates


def test_gates_block_a_fit_on_noise() -> None:
    cfg = DetectorConfig()
    h = noisy(np.full(300, 0.5), 0.15, seed=2)
    prep = prepare(series(h), cfg)
    assert all(not evaluate(prep, i, cfg).gates for i in range(20, 300, 7))


def test_a_drop_that_levelled_off_is_no_trend() -> None:
    cfg = DetectorConfig()
    h = noisy(np.concatenate([np.full(100, 1.0), np.full(100, 0.3)]), 0.03)
    prep = prepare(series(h), cfg)
    assert not evaluate(prep, 170, cfg).trend  # the window's recent half is flat


def test_recovery_from_an_explosion_is_not_a_collapse() -> None:
    t = np.arange(300, dtype=float)
    clean = np.where(t < 100, 0.3, np.where(t < 150, 3.0, 3.0 * np.exp(-(t - 150) / 30) + 0.05))
    al = analyze_series(series(noisy(clean, 0.03)))
    assert not [a for a in al if a.kind == "collapse" and a.step < 250]


def test_rise_forecast_reaches_its_target() -> None:
    cfg = DetectorConfig()
    t = np.arange(60, dtype=float)
    h = noisy(np.where(t < 30, 0.2, 0.2 * np.exp((t - 30) / 8.0)), 0.02, seed=4)
    prep = prepare(series(h), cfg)
    f = evaluate_rise(prep, 45, cfg, target=20.0)  # log(100)*8 = 37 points after the rise began: ETA ~22
    assert f is not None and f.direction == "rise" and f.trend
    assert f.eta_lo <= 22 <= f.eta_hi and 15 < f.eta_median < 30


def test_rise_eta_interval_covers_the_crossing_on_noisy_climbs() -> None:
    """On noisy exponential climbs (σ 0.3 in log units, the real logs' range) the 80% interval of the rise forecast
    an explosion warning quotes holds the noiseless curve's crossing of the critical line in most runs. A window that
    starts at the last raw point under the re-arm line (a low point the noise picked) held it in about a third."""
    from entropy_watch.analysis import RunSeries, analyze
    from entropy_watch.synthetic import NoiseFit, generate

    held, scored = 0, 0
    for seed in range(30):
        sr = generate("explosion", seed, 100, noise=NoiseFit(sigma=0.3, phi=0.0, outliers=0.0))
        res = analyze(RunSeries.from_arrays("x", sr.steps, sr.entropy, reward=sr.reward))
        a = next((a for a in res.alerts if a.kind == "explosion" and a.severity == "warning"), None)
        if a is None or "forecast" not in a.evidence:
            continue
        f, crit = a.evidence["forecast"], a.evidence["crit_level"]
        cross = np.flatnonzero(sr.clean >= crit)
        if cross.size == 0 or cross[0] <= a.step:
            continue
        scored += 1
        lo = np.inf if f["eta_lo"] is None else a.step + f["eta_lo"]
        hi = np.inf if f["eta_hi"] is None else a.step + f["eta_hi"]  # None: "never" (an alert's JSON-able evidence)
        held += bool(lo <= sr.steps[cross[0]] <= hi)
    assert scored >= 15
    assert held >= 0.6 * scored, (held, scored)


def test_eta_interval_carries_the_error_of_h_ref_over_the_points_it_was_taken_from() -> None:
    """The floor is a share of H_ref, whose error 1.25σ/√k shrinks with the k points it was taken from
    (``Prepared.ref_n``): the same decline forecast from an H_ref of 13 points has a narrower ETA interval than from
    3."""
    cfg = DetectorConfig()
    t = np.arange(40, dtype=float)
    h = noisy(1.0 * np.exp(-np.clip(t - 5, 0, None) / 25.0), 0.25, seed=3)  # a 40-point log, σ 0.25, falling
    prep = prepare(series(h), cfg)
    widths = {}
    for k in (3, 13):
        p = dataclasses.replace(prep, ref_n=np.where(np.isfinite(prep.ref_n), float(k), np.nan))
        f = evaluate(p, 39, cfg, always_fit=True)
        assert f is not None and f.model in ("log_linear", "hinge") and np.isfinite(f.eta_hi), (k, f)
        widths[k] = np.log1p(f.eta_hi) - np.log1p(f.eta_lo)
    assert widths[13] < widths[3], widths


def test_a_trend_without_noise_is_significant() -> None:
    """A series exactly on a line (a noise-free reward, a synthetic ramp): the residuals around the Theil–Sen line
    are rounding error, whose lag-1 autocorrelation is meaningless — it could read 0.5 or more and inflate the variance
    enough that 3 in 20,000 such ramps (5–40 points) were "not significant". They have none: every ramp is."""
    rng = np.random.default_rng(0)
    for _ in range(20_000):
        n, a = int(rng.integers(5, 41)), float(rng.uniform(-2, 2))
        b = float(10 ** rng.uniform(-4, 0)) * (1 if rng.uniform() < 0.5 else -1)
        t = np.arange(n, dtype=np.float64)
        y = a + b * t
        s, i = theil_sen(t, y)
        assert trend_p(y, s, i, float(np.sign(b))) < 0.05, (n, a, b)


def test_the_loss_reads_the_level_now_on_a_steady_decline_not_one_that_lags() -> None:
    """On a noiseless exponential decline the window's trend line is exact, so the level the loss reads
    (``level_now``) is the entropy at i itself; a median of the last tenth of the run (what the loss read before)
    sits half a tenth back, higher. With the detector's level (a short causal median: the point before i here) the
    higher of the two is what the loss is measured against."""
    cfg = DetectorConfig()
    t = np.arange(400, dtype=float)
    h = np.exp(-t * np.log(1 / 0.3) / 399)  # 70% lost by the end, at a steady rate
    prep = prepare(series(h), cfg)
    for i in range(200, 400, 37):
        f = evaluate(prep, i, cfg, always_fit=True)
        assert f is not None and f.trend
        # (block means, when the window reads them, sit at their blocks' centres: 1e-6 of convexity)
        assert np.isclose(f.level_now, h[i], rtol=1e-5), (i, f.level_now, h[i])
        k = (i + 1) // 10
        assert f.level_now < np.median(h[i - k + 1 : i + 1])  # the old reading lagged
        ref = float(prep.h_ref[i])
        assert np.isclose(f.lost, 1 - max(float(prep.smooth[i]), h[i]) / ref)


def test_ols_matches_polyfit_and_stays_quiet_on_huge_x(recwarn) -> None:
    """The entropy-reward law fits R on exp(H): on an entropy summed over a completion (hundreds of nats) exp(H)
    overflowed numpy's polyfit with a RuntimeWarning and a RankWarning on every analysis. The centred normal
    equations give polyfit's line (the reference) and NaN, quietly, where no line can be fitted."""
    from entropy_watch.analysis.trend import ols

    rng = np.random.default_rng(3)
    x = rng.uniform(0, 5, 200)
    y = 0.7 - 0.2 * x + rng.normal(0, 0.05, 200)
    a, b, r2 = ols(x, y)
    ref_b, ref_a = np.polyfit(x, y, 1)
    np.testing.assert_allclose([a, b], [ref_a, ref_b], rtol=1e-9)
    ref_r2 = 1 - ((y - ref_a - ref_b * x) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert abs(r2 - ref_r2) < 1e-9
    huge = np.exp(np.linspace(300, 700, 50))  # exp of a summed entropy: up to 1e304
    ols(huge, rng.normal(size=50))
    assert not [w for w in recwarn if issubclass(w.category, (RuntimeWarning, np.exceptions.RankWarning))]


def _crossing(o) -> float | None:
    """Where the drawn median curve of outlook ``o`` first passes its target after the last point (interpolated)."""
    x, c = np.asarray(o.steps), np.asarray(o.curve)
    sign = -1.0 if o.direction == "decay" else 1.0
    k = np.flatnonzero((x > o.fitted_at) & (sign * (c - o.target) >= 0))
    if not k.size:
        return None
    k = int(k[0])
    w = (o.target - c[k - 1]) / (c[k] - c[k - 1])
    return float(x[k - 1] + w * (x[k] - x[k - 1]))


def test_the_drawn_forecast_meets_its_target_at_the_eta_every_surface_quotes() -> None:
    """The chart's dashed line is the median of the draws, each against its own target and delayed as its ETA is,
    so it crosses the line where the quoted ETA says (within one of its 60 points); the central fit alone crossed
    35 steps early on a real log. A level already past its target draws no forecast at all."""
    from entropy_watch.analysis.outlook import from_forecast

    cfg = DetectorConfig()
    checked = 0
    for seed in range(6):
        decay = noisy(np.exp(-np.arange(300) / 200.0), 0.08, seed=seed)  # noisy start: H_ref has its own error
        climb = noisy(np.r_[np.full(12, 0.2), np.geomspace(0.2, 1.0, 16), np.full(6, 0.85)], 0.05, seed=seed)
        cases = (
            (decay, lambda p, i: evaluate(p, i, cfg, always_fit=True)),
            (climb, lambda p, i: evaluate_rise(p, i, cfg, 1.2)),
            (climb, lambda p, i: evaluate_rise(p, i, cfg, 0.95)),  # the fit past it, the level not: lags
        )
        for h, build in cases:
            prep = prepare(series(h), cfg)
            f = build(prep, h.size - 1)
            o = from_forecast(f, "the line", cfg.eta_interval, level=float(prep.smooth[h.size - 1]))
            if o.eta_step is None or o.reached:
                continue
            spacing = (o.steps[-1] - o.steps[0]) / (len(o.steps) - 1)
            assert abs(_crossing(o) - o.eta_step) <= spacing, (seed, o.direction, _crossing(o), o.eta_step)
            assert (np.asarray(o.lo) <= np.asarray(o.curve) + 1e-12).all()
            assert (np.asarray(o.curve) <= np.asarray(o.hi) + 1e-12).all()
            checked += 1
    assert checked >= 15
    high = noisy(np.r_[np.full(10, 0.2), np.full(20, 2.0)], 0.05, seed=1)  # far past 6× H_ref: "now"
    prep = prepare(series(high), cfg)
    f = evaluate_rise(prep, high.size - 1, cfg, 1.2)
    o = from_forecast(f, "6× H_ref", cfg.eta_interval, level=float(prep.smooth[-1]))
    assert o.reached and o.steps == () and o.curve == () and o.text == "above 6× H_ref now"


def _power_decline(n: int = 100, onset: int = 5, tau: float = 3.0, alpha: float = 0.9) -> np.ndarray:
    """A decline that slows as the real collapses do: calm until ``onset``, then ``(1 + u/τ)^(−α)``."""
    t = np.arange(n, dtype=float)
    return np.where(t < onset, 1.0, (1 + np.clip(t - onset, 0, None) / tau) ** -alpha)


def test_slowing_curves_are_solved_where_they_reach_the_target() -> None:
    """Power-law and fading-hinge draws (no straight line past 'now') reach the target where their own curve does:
    against a dense scan of ``_log_at``, from the fit and from the level."""
    p = {"a": np.array([0.0, 0.0, 0.5]), "b": np.array([-0.2, -0.02, -0.01]), "c": np.array([0.0, 0.0, -0.2]),
         "tau": np.array([0.0, 0.0, 10.0]), "s": np.array([8.0, np.inf, np.inf]),
         "sc": np.array([np.inf, np.inf, 4.0])}  # fmt: skip  # a power law, a line, a fading hinge
    target = np.array([-3.0, -3.0, -3.0])
    t_now = 20.0
    dense = np.linspace(0.0, 1_000.0, 2_000_001)

    def first(row: dict, level: float) -> float:  # the first dense time the curve is at or under ``level``
        past = _log_at(row, dense) <= level
        assert past.any()
        return float(dense[np.argmax(past)])

    for k in range(3):
        row = {key: v[k] for key, v in p.items()}
        want = first(row, target[k]) - t_now
        got = _log_eta(p, t_now, target, -1.0, float(_log_at(row, t_now)))[k]
        assert want > 10 and abs(got - want) <= 1e-3 * want, (k, got, want)
    # from the level: the power law is past -1.5 at t_now, the level (-1.2) is not: from where the curve meets it
    row0 = {key: v[0] for key, v in p.items()}
    assert float(_log_at(row0, t_now)) < -1.5
    eta = _log_eta(p, t_now, np.full(3, -1.5), -1.0, -1.2)[0]
    assert abs(eta - (first(row0, -1.5) - first(row0, -1.2))) < 1e-3


def test_weighted_quantile_matches_repeated_values() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    counts = np.array([1, 3, 2, 5, 1, 4, 2])
    for q in (0.1, 0.5, 0.9):
        naive = [np.sort(np.repeat(x[:, j], counts))[int(np.ceil(q * counts.sum())) - 1] for j in range(3)]
        assert np.allclose(_wquantile(x, counts.astype(float), q), naive)


def test_a_decline_that_may_slow_moves_only_the_late_end_of_the_interval(monkeypatch) -> None:
    """The slowing models (power law, fading hinge) widen the ETA interval's late end and the band's upper edge; the
    early end, the median, P(cross) and every alert stay those of the steady declines (the forecast without them)."""
    cfg = DetectorConfig()
    clean = _power_decline()
    got, steady = [], []
    for seed in range(6):
        prep = prepare(series(noisy(clean, 0.05, seed=seed)), cfg)
        got.append([evaluate(prep, i, cfg, always_fit=True) for i in (20, 30, 40)])
    monkeypatch.setattr(F, "SLOWING", ())
    for seed in range(6):
        prep = prepare(series(noisy(clean, 0.05, seed=seed)), cfg)
        steady.append([evaluate(prep, i, cfg, always_fit=True) for i in (20, 30, 40)])
    floor = float(prep.floor[-1])
    cross = float(np.argmax(clean <= floor))
    held = {"slow": 0, "steady": 0}
    steps = np.arange(20.0, 400.0)
    for fs, ss in zip(got, steady, strict=True):
        for f, s in zip(fs, ss, strict=True):
            assert (f.eta_lo, f.eta_median, f.p_cross, f.positive) == (s.eta_lo, s.eta_median, s.p_cross, s.positive)
            assert f.eta_hi_at_rate == s.eta_hi and s.slow_weight == 0.0
            assert (f.slow_weight > 0) == (f.model != "exp_asymptote")  # the log-space forecasts
            mid, lo, hi = f.drawn(steps)
            mid_s, lo_s, hi_s = s.drawn(steps)
            assert np.array_equal(mid, mid_s) and np.array_equal(lo, lo_s) and np.all(hi >= hi_s)
            held["slow"] += f.step + f.eta_lo <= cross <= f.step + f.eta_hi
            held["steady"] += s.step + s.eta_lo <= cross <= s.step + s.eta_hi
    assert held["slow"] >= held["steady"] + 3, held  # the steady declines' late end comes before the crossing


def test_slowing_never_changes_an_alert(monkeypatch) -> None:
    """What fires, when and how severe is the steady declines' reading ('about to reach the floor' reads the late
    end at this rate): the slowing models only widen the quoted interval."""
    runs = [noisy(_power_decline(80, onset=8, tau=t, alpha=a), 0.08, seed=k)
            for k, (t, a) in enumerate([(2.0, 1.2), (4.0, 1.0), (8.0, 1.4), (1.0, 0.8)])]  # fmt: skip
    keys = [[(a.step, a.kind, a.severity) for a in analyze_series(series(h))] for h in runs]
    monkeypatch.setattr(F, "SLOWING", ())
    assert keys == [[(a.step, a.kind, a.severity) for a in analyze_series(series(h))] for h in runs]
    assert any(any(k == "collapse" for _, k, _ in ks) for ks in keys)


def test_the_verdict_says_when_its_late_end_is_a_slowdown() -> None:
    """A decline that slows as collapses do: the verdict's interval holds the floor crossing because its late end
    allows for the slowdown, and its sentence says which end that is (the same text in the alert it quotes)."""
    from entropy_watch.analysis import verdict

    clean = _power_decline(80, onset=8, tau=4.0, alpha=1.0)
    s = series(noisy(clean, 0.08, seed=1))
    v = verdict(s, at_step=20)
    o = v.forecast
    assert o is not None and o.direction == "decay" and o.slowing and o.to_dict()["slowing"] is True
    assert "the late end if it slows down as collapses do)" in o.text and o.text in v.headline
    floor = float(prepare(s, DetectorConfig()).floor[20])
    cross = float(np.argmax(clean <= floor))
    assert o.eta_lo_step is not None and o.eta_hi_step is not None and o.eta_lo_step <= cross <= o.eta_hi_step
    # at this rate alone the interval ends before the crossing
    f = evaluate(prepare(s.prefix(20), DetectorConfig()), 20, DetectorConfig(), always_fit=True)
    assert f is not None and f.step + f.eta_hi_at_rate < cross
    first = next(a for a in analyze_series(s) if a.kind == "collapse")
    assert "the late end if it slows down as collapses do)" in first.message
