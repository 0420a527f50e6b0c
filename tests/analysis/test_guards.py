"""L1 guards: non-finite, floor, depletion, explosion (with hysteresis)."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import DetectorConfig, analyze_series
from entropy_watch.analysis.guards import detect
from entropy_watch.analysis.hygiene import prepare

from ._series import noisy, series


def _by(alerts: list, detector: str) -> list:
    return [a for a in alerts if a.detector.startswith(detector)]


def test_nonfinite_is_critical_at_once_even_in_warmup() -> None:
    h = np.full(100, 0.5)
    h[3] = np.nan
    h[60:63] = np.inf
    al = _by(analyze_series(series(h)), "guard.nonfinite")
    assert [(a.step, a.severity, a.kind) for a in al] == [(3, "critical", "nonfinite"), (60, "critical", "nonfinite")]
    assert al[1].evidence["count"] == 3


def test_floor_guard_fires_after_hold_and_latches() -> None:
    cfg = DetectorConfig()
    h = noisy(np.concatenate([np.full(100, 1.0), np.full(100, 0.05)]), 0.02)  # floor = max(0.1*1.0, 0.02) = 0.1
    al = _by(detect(prepare(series(h), cfg), cfg), "guard.floor")
    assert len(al) == 1  # latched: not re-fired while it stays under the floor
    assert al[0].severity == "critical" and al[0].kind == "collapse"
    assert 100 + cfg.floor_hold - 1 <= al[0].step <= 100 + cfg.floor_hold + 3
    assert abs(al[0].evidence["floor"] - 0.1) < 0.01


def test_absolute_floor_applies_to_low_entropy_models() -> None:
    cfg = DetectorConfig()
    h = noisy(np.concatenate([np.full(60, 0.1), np.full(60, 0.015)]), 0.02)  # 10% of 0.1 = 0.01 < abs floor 0.02
    al = _by(detect(prepare(series(h), cfg), cfg), "guard.floor")
    assert al and al[0].evidence["floor"] == cfg.floor_abs_nats


def test_depletion_warns_when_a_quarter_is_left() -> None:
    cfg = DetectorConfig()
    h = noisy(np.concatenate([np.full(100, 1.0), np.full(100, 0.2)]), 0.03)
    al = _by(detect(prepare(series(h), cfg), cfg), "guard.depletion")
    assert len(al) == 1 and al[0].severity == "warning" and al[0].kind == "collapse"
    assert 100 <= al[0].step <= 100 + cfg.depletion_hold


def test_explosion_warning_then_critical_and_nothing_on_a_twofold_rise() -> None:
    cfg = DetectorConfig()
    up = noisy(np.concatenate([np.full(100, 0.3), np.full(40, 1.2), np.full(40, 4.0)]), 0.03)
    al = _by(detect(prepare(series(up), cfg), cfg), "guard.explosion")
    assert [a.severity for a in al] == ["warning", "critical"]
    assert al[0].step >= 100 and al[1].step >= 140
    rise = noisy(np.concatenate([np.full(100, 0.3), np.full(100, 0.6)]), 0.03)  # healthy runs may double
    assert not _by(detect(prepare(series(rise), cfg), cfg), "guard.explosion")


def test_near_ln_v_is_critical() -> None:
    cfg = DetectorConfig()
    h = noisy(np.concatenate([np.full(60, 2.0), np.full(30, 9.0)]), 0.02)  # 4.5x: above 0.5 ln V, below 6x
    s = series(h, meta={"vocab_size": 32_000})
    al = _by(detect(prepare(s, cfg), cfg), "guard.explosion")
    assert any(a.severity == "critical" for a in al)
