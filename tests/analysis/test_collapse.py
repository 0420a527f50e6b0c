"""Collapse: floor and 'imminent' (critical), depletion, steady decline and the forecast's early warning (warning)."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import DetectorConfig, analyze_series, verdict

from ._series import collapsing, healthy, noisy, series


def _collapse(alerts: list) -> list:
    return [a for a in alerts if a.kind == "collapse"]


def test_floor_is_critical_after_the_hold_and_latches() -> None:
    cfg = DetectorConfig()
    h = noisy(np.concatenate([np.full(100, 1.0), np.full(100, 0.05)]), 0.02)  # floor = max(0.1*1.0, 0.02) = 0.1
    al = _collapse(analyze_series(series(h)))
    crit = [a for a in al if a.severity == "critical"]
    assert len(crit) == 1 and crit[0].detector == "collapse.floor"  # latched: not re-fired under the floor
    assert 100 <= crit[0].step <= 100 + cfg.hold_points + 2
    assert crit[0].evidence["floor"] == cfg.floor_rel * crit[0].evidence["h_ref"]


def test_absolute_floor_applies_to_low_entropy_models() -> None:
    cfg = DetectorConfig()
    h = noisy(np.concatenate([np.full(60, 0.1), np.full(60, 0.015)]), 0.02)  # 10% of 0.1 = 0.01 < abs floor 0.02
    crit = [a for a in _collapse(analyze_series(series(h))) if a.severity == "critical"]
    assert crit and crit[0].evidence["floor"] == cfg.floor_abs_nats


def test_a_quarter_of_h_ref_is_a_warning() -> None:
    h = noisy(np.concatenate([np.full(100, 1.0), np.full(100, 0.2)]), 0.03)
    al = _collapse(analyze_series(series(h)))
    assert al and al[0].severity == "warning" and al[0].detector in ("collapse.depletion", "collapse.decline")
    assert 100 <= al[0].step <= 105 and not [a for a in al if a.severity == "critical"]


def test_steady_mild_decline_on_a_40_point_log_warns_with_an_eta_beyond_the_end() -> None:
    # 0.155 -> ~0.035 over 40 logged points (one every 5 steps), reward on a plateau: the rho2.00 shape
    t = np.arange(40)
    h = noisy(0.155 * np.exp(-t / 26.0), 0.12, seed=5)
    s = series(h, reward=noisy(np.full(40, 0.9), 0.03, seed=6))
    s = type(s).from_arrays("mild", 5 * (t + 1), h, reward=s.scalars["reward/mean"][1])
    al = _collapse(analyze_series(s))
    assert al and al[0].severity == "warning"
    v = verdict(s)
    assert v.health == "warning" and v.kind == "collapse"
    assert v.forecast is not None and v.forecast.direction == "decay" and v.forecast.eta_step is not None
    assert v.forecast.eta_step > s.steps[-1]  # the floor lies beyond the run's end, the warning stands
    assert "at this rate" in v.headline and "by step" in v.headline


def test_healthy_runs_that_halve_early_stay_quiet() -> None:
    for seed in range(6):
        for n in (40, 100, 400):
            h = healthy(n, plateau=0.5, tau=n / 8, seed=seed)
            assert not [a for a in analyze_series(series(h)) if a.severity != "info"], (seed, n)


def test_fast_collapse_warns_before_the_floor_then_goes_critical() -> None:
    floor_step = 150 + 60 * np.log(5)  # 0.5 * exp(-(t-150)/60) = 0.1
    for seed in range(4):
        al = _collapse(analyze_series(series(collapsing(onset=150, tau=60.0, seed=seed))))
        assert al[0].severity == "warning" and 150 <= al[0].step < floor_step, seed
        assert al[0].evidence["eta_step_median"] > al[0].step
        assert "80% interval" in al[0].message
        assert any(a.severity == "critical" for a in al)


def test_collapse_on_a_solved_task_is_an_info_saturation_note() -> None:
    h = collapsing(300, onset=80, tau=30.0)
    al = analyze_series(series(h, reward=np.full(300, 1.0)))
    assert not _collapse(al) and {a.severity for a in al if a.kind == "saturation"} == {"info"}
