"""L0 hygiene: robust noise, H_ref, segments at events, warm-up, sawtooth period, causality."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import DetectorConfig
from entropy_watch.analysis.hygiene import causal_median, prepare, robust_sigma, sawtooth_period

from ._series import healthy, series


def test_robust_sigma_ignores_trend() -> None:
    rng = np.random.default_rng(0)
    x = np.linspace(0, 50, 2000) + rng.normal(0, 1.0, 2000)  # a strong trend plus unit noise
    assert 0.85 < robust_sigma(x) < 1.15
    assert np.std(x) > 10  # the plain standard deviation is dominated by the trend


def test_causal_median_uses_only_the_past() -> None:
    x = np.array([1.0, 5.0, 2.0, 100.0, 3.0])
    m = causal_median(x, 3)
    assert m[0] == 1.0 and m[2] == 2.0 and m[3] == 5.0
    assert np.array_equal(causal_median(x[:3], 3), m[:3])


def test_href_is_early_level_and_rebased_after_a_warmup_transient() -> None:
    cfg = DetectorConfig()
    h = healthy(200, h0=0.8)
    p = prepare(series(h), cfg)
    assert np.isnan(p.h_ref[: cfg.ref_versions - 1]).all()
    assert abs(p.h_ref[-1] - np.median(h[: cfg.ref_early])) < 1e-12
    # entropy drops 10x within the first steps (format learning): H_ref re-bases on the first 20 versions
    g = np.concatenate([[1.3, 1.2, 1.1], np.full(197, 0.12)])
    q = prepare(series(g), cfg)
    assert abs(q.h_ref[-1] - np.median(g[:20])) < 1e-12
    assert not q.armed[: cfg.warmup_versions].any() and q.armed[-1]


def test_segments_restart_at_known_change_points() -> None:
    h = healthy(300)
    p = prepare(series(h, events=[(150, "resume"), (200, "note")]), DetectorConfig())
    assert p.seg_start[149] == 0 and p.seg_start[150] == 150 and p.seg_start[-1] == 150  # "note" is no reset
    assert not p.armed[150:170].any()  # warm-up again after the resume
    assert abs(p.h_ref[-1] - np.median(h[150:155])) < 1e-12


def test_log_transform_keeps_zero_finite_and_marks_nan() -> None:
    h = np.concatenate([np.full(30, 0.5), [0.0, np.nan, np.inf], np.full(30, 0.5)])
    p = prepare(series(h), DetectorConfig())
    assert np.isfinite(p.log_h[30]) and np.isnan(p.log_h[31]) and np.isnan(p.log_h[32])
    assert not p.finite[31] and not p.finite[32]


def test_sawtooth_period_found_and_absent_on_smooth_decay() -> None:
    t = np.arange(300)
    saw = np.exp(-t / 200) * np.exp(-0.2 * (t % 4) / 3)
    assert sawtooth_period(np.log(saw)) == 4
    assert sawtooth_period(np.log(healthy(300))) == 1
