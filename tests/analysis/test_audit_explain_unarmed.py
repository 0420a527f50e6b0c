"""Audit of what the verdict says while H_ref is not known yet past the 6th point (an early fall of more than half
waits for the next points to show whether it held; a noisy start for as many first points as its noise needs): no
collapse or explosion is judged then, so the headline must not read "no collapse or explosion trend" — the tinker
arithmetic log at its 6th point, down 96% from its first, read "ok: entropy 0.15 nats; no collapse or explosion
trend" — nor the reference say it is "used from the 6th" at the 6th."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import DetectorConfig, RunSeries, analyze


def _early_fall(n: int) -> RunSeries:
    h = np.array([0.77, 0.5, 0.2, 0.05, 0.03, 0.03, 0.028, 0.027, 0.026, 0.025][:n])
    return RunSeries.from_arrays("early-fall", np.arange(n), h, meta={})


def test_unarmed_verdict_does_not_claim_a_trend_was_read() -> None:
    cfg = DetectorConfig()
    s = _early_fall(cfg.min_points)
    res = analyze(s, cfg)
    v = res.verdict
    assert v.n_points >= cfg.min_points and v.health != "too-short"
    assert v.reference.value is None and not bool(np.any(res.prep.armed)), "the premise: nothing armed yet"
    assert "no collapse or explosion trend" not in v.headline, v.headline
    assert "H_ref not known yet" in v.headline, v.headline
    assert f"used from the {cfg.min_points}th" not in v.reference.method, v.reference.method
    assert "no collapse or explosion is judged" in v.reference.method


def test_short_run_keeps_its_plain_reference_text() -> None:
    cfg = DetectorConfig()
    v = analyze(_early_fall(cfg.min_points - 1), cfg).verdict
    assert v.health == "too-short"
    assert f"used from the {cfg.min_points}th" in v.reference.method


def test_armed_ok_verdict_still_says_no_trend() -> None:
    t = np.arange(60)
    h = 0.5 * np.exp(0.02 * np.random.default_rng(0).standard_normal(t.size))
    v = analyze(RunSeries.from_arrays("flat", t, h, meta={})).verdict
    assert v.health == "ok" and v.reference.value is not None
    assert v.headline.endswith("no collapse or explosion trend"), v.headline
