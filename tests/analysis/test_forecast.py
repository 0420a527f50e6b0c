"""L3 forecast: fits, ETA with a bootstrap interval, gates; the primary collapse detector."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import DetectorConfig, analyze_series
from entropy_watch.analysis.forecast import _exp_eta, _exp_fit, evaluate
from entropy_watch.analysis.hygiene import prepare

from ._series import collapsing, healthy, noisy, series


def test_exp_fit_recovers_parameters() -> None:
    t = np.arange(200, dtype=float)
    y = 0.1 + 0.9 * np.exp(-t / 50.0)
    c, A, k = _exp_fit(t, y[None, :], 1.0 / np.geomspace(5, 2000, 200))
    assert abs(c[0] - 0.1) < 0.01 and abs(A[0] - 0.9) < 0.02 and abs(1 / k[0] - 50) < 3
    # asymptote above the floor: never crosses; below it: crosses where the curve says
    assert np.isinf(_exp_eta(c, A, k, 199.0, 0.05))[0]
    eta = _exp_eta(np.array([0.0]), np.array([1.0]), np.array([0.02]), 0.0, np.exp(-2.0))
    assert abs(eta[0] - 100.0) < 1e-6


def test_eta_interval_covers_the_true_crossing() -> None:
    cfg = DetectorConfig()
    t = np.arange(300, dtype=float)
    clean = np.exp(-t / 100.0)  # floor = 0.1 * H_ref ~ 0.1: crossing near t = 230
    h = noisy(clean, 0.03, seed=3)
    f = evaluate(prepare(series(h), cfg), 159, cfg)
    assert f is not None and f.gates and f.positive
    true_eta = 100.0 * np.log(np.median(h[:5]) / f.floor) - 159
    assert f.eta_lo <= true_eta <= f.eta_hi
    assert f.eta_lo < f.eta_median < f.eta_hi


def test_healthy_plateau_predicts_no_crossing() -> None:
    cfg = DetectorConfig()
    prep = prepare(series(healthy(400, tau=40.0)), cfg)
    fs = [evaluate(prep, i, cfg) for i in range(59, 400, 10)]
    assert not any(f.positive for f in fs if f is not None)


def test_collapse_is_forecast_before_the_floor_and_healthy_runs_stay_quiet() -> None:
    hits = []
    for seed in range(4):
        al = analyze_series(series(collapsing(onset=150, tau=60.0, seed=seed)))
        fc = [a for a in al if a.detector == "forecast.eta"]
        assert fc, f"seed {seed}: the forecast layer must warn on a collapse"
        hits.append(fc[0].step)
        assert fc[0].evidence["eta_step_median"] > fc[0].step
        assert "reaches the floor" in fc[0].message and "90% interval" in fc[0].message
        assert not [a for a in analyze_series(series(healthy(seed=seed))) if a.severity != "info"]
    floor_step = 150 + 60 * np.log(5)  # 0.5 * exp(-(t-150)/60) = 0.1
    assert all(150 <= s < floor_step for s in hits)


def test_gates_block_a_fit_on_noise() -> None:
    cfg = DetectorConfig()
    h = noisy(np.full(300, 0.5), 0.15, seed=2)
    prep = prepare(series(h), cfg)
    assert all(not evaluate(prep, i, cfg).gates for i in range(59, 300, 10))


def test_recovery_from_an_explosion_is_not_a_collapse() -> None:
    t = np.arange(300, dtype=float)
    clean = np.where(t < 100, 0.3, np.where(t < 150, 3.0, 3.0 * np.exp(-(t - 150) / 30) + 0.05))
    al = analyze_series(series(noisy(clean, 0.03)))
    assert not [a for a in al if a.detector == "forecast.eta"]
