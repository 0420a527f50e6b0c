"""L0 hygiene: robust noise, H_ref, segments at events, warm-up, sawtooth period, causality."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import DetectorConfig, RunSeries, analyze
from entropy_watch.analysis.hygiene import causal_median, prepare, robust_sigma, sawtooth_period

from ._series import collapsing, healthy, noisy, polled, series


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


def test_href_is_the_early_level_known_from_the_sixth_point() -> None:
    cfg = DetectorConfig()
    h = healthy(200, h0=0.8)
    p = prepare(series(h), cfg)
    assert np.isnan(p.h_ref[: cfg.warmup_points]).all() and not p.armed[: cfg.warmup_points].any()
    assert p.armed[cfg.warmup_points] and abs(p.h_ref[-1] - np.median(h[: cfg.ref_points])) < 1e-12
    assert p.ref_at(len(p) - 1).method.startswith("the median of the first 3")
    assert np.all(p.ref_n == cfg.ref_points)  # how many points H_ref's error (Prepared.ref_se) is counted over
    np.testing.assert_allclose(p.ref_se(slice(None)), 1.25 * p.sigma / np.sqrt(3))


def test_href_includes_a_fast_early_drop_that_keeps_falling() -> None:
    cfg = DetectorConfig()
    # 0.77 nats at step 0, ~0.003 by step 10 (the Tinker shape): H_ref is the early level, not the post-drop one
    g = np.concatenate([0.77 * np.exp(-0.55 * np.arange(12)), np.full(30, 1e-3)])
    p = prepare(series(g), cfg)
    r = p.ref_at(len(p) - 1)
    assert r.value == 0.77 and "already falling fast" in r.method
    assert "before the detector armed" in r.note and "kept falling" in r.note
    assert not p.armed[: cfg.warmup_points + cfg.adapt_points].any() and p.armed[cfg.warmup_points + cfg.adapt_points]
    assert p.floor[-1] == cfg.floor_rel * 0.77
    assert np.all(p.ref_n == 1)  # one point: the first


def test_an_early_drop_that_settles_is_an_adaptation() -> None:
    cfg = DetectorConfig()
    # three points at ~1.25 nats, then a drop to a steady ~0.15 (format learning): the settled level is H_ref
    g = np.concatenate([[1.33, 1.24, 1.2], noisy(np.full(60, 0.15), 0.1, seed=1)])
    p = prepare(series(g), cfg)
    r = p.ref_at(len(p) - 1)
    assert 0.12 < r.value < 0.19 and "held steady" in r.note and "1.24" in r.note
    assert p.ref_n[-1] == r.last - r.first + 1 > cfg.ref_points  # the settled points, all finite


def _causal_refs(g: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """H_ref per point of ``g`` analysed whole, checked equal to the run cut at every point (live = post hoc)."""
    p = prepare(series(g), cfg)
    for j in range(cfg.warmup_points, g.size):
        np.testing.assert_array_equal(prepare(series(g[: j + 1]), cfg).h_ref, p.h_ref[: j + 1])
    return p.h_ref


def test_a_noisy_start_decides_its_reference_from_the_points_it_has() -> None:
    cfg = DetectorConfig()
    e = np.random.default_rng(4).normal(0.0, 0.45, 80)
    flat = 0.3 * np.exp(e)  # σ 0.45: a level needs more first points than three
    r = prepare(series(flat), cfg).ref_at(79)
    need = r.last - r.first + 1
    assert "noisy start" in r.method and r.value == np.median(flat[:need]) and r.known_at == need - 1
    refs = _causal_refs(flat, cfg)
    assert np.all(np.isnan(refs[: need - 1])) and np.all(refs[need - 1 :] == r.value)
    # the same noise on a start that climbs from point 8: judged on its first three points, from the point where
    # the trend showed, before the points a noisy level needs are in (the rules are not left blind meanwhile)
    climbing = 0.3 * np.exp(e + 0.08 * np.clip(np.arange(80) - 8, 0, None))
    c = prepare(series(climbing), cfg).ref_at(79)
    assert c.value == np.median(climbing[:3]) and "noisy" not in c.method and cfg.warmup_points < c.known_at < need - 1
    refs = _causal_refs(climbing, cfg)
    assert np.all(np.isnan(refs[: c.known_at])) and np.all(refs[c.known_at :] == c.value)


def test_a_dip_at_arming_that_climbs_past_the_first_points_is_no_adaptation() -> None:
    cfg = DetectorConfig()
    # the rasbt 7_5 run logged every 12 steps: a noisy start, a dip at the arming point, then uniform noise (11.9 nats)
    g = np.array([0.16, 0.8, 1.69, 0.39, 0.33, 7.9, 11.7, *np.full(30, 11.9)])
    refs = _causal_refs(g, cfg)
    assert refs[-1] == np.median(g[:3])  # the first points' level, not the 11.7 nats "it settled at"
    # known from the first point whose median since the dip is above it (7.9 and 11.7 in), not before
    assert np.isnan(refs[cfg.warmup_points]) and refs[cfg.warmup_points + 1] == refs[-1]
    note = prepare(series(g), cfg).ref_at(g.size - 1).note
    assert "dipped" in note and "climbed back" in note and "median of the first 3 logged points" in note


def test_a_dip_at_arming_that_climbs_again_is_no_adaptation_either() -> None:
    cfg = DetectorConfig()
    # the rasbt 7_5 run averaged over every 2 steps: a high first point, a dip, then a steady climb that stays under
    # the first point; the climb's median would read a level on the way up (0.53 nats)
    g = np.array([0.78, 0.196, 0.174, 0.209, 0.306, 0.235, 0.529, 0.606, 0.825, 0.825, *np.full(20, 1.5)])
    refs = _causal_refs(g, cfg)
    end = cfg.warmup_points + cfg.adapt_points
    assert np.isnan(refs[end - 1]) and refs[end] == np.median(g[:3]) == refs[-1]
    assert "climbed back" in prepare(series(g), cfg).ref_at(g.size - 1).note
    # the same first points with a level that holds after the dip stay an adaptation
    held = np.concatenate([g[:6], 0.22 * np.exp(np.random.default_rng(0).normal(0, 0.05, 24))])
    r = prepare(series(held), cfg).ref_at(held.size - 1)
    assert "held steady" in r.note and 0.19 < r.value < 0.26


def test_a_dip_at_arming_whose_last_points_are_back_above_the_first_is_no_adaptation() -> None:
    cfg = DetectorConfig()
    # the Sunshine rho 0.50 TRL log (40 points): a dip to half at the arming point, then two points at 3-4x the first
    # points and one back at their level; the seven points' median (0.153) is no level the run "held steady" at
    g = np.array([0.158, 0.142, 0.18, 0.175, 0.076, 0.069, 0.076, 0.502, 0.652, 0.153, 0.435, 0.382, *np.full(20, 0.5)])
    r = prepare(series(g), cfg).ref_at(g.size - 1)
    assert r.value == np.median(g[:3]) and "held steady" not in r.note and "climbed back" in r.note
    assert "52% (0.158 -> 0.076 nats) by step 5" in r.note
    refs = _causal_refs(g, cfg)
    end = cfg.warmup_points + cfg.adapt_points
    assert np.isnan(refs[end - 1]) and np.all(refs[end:] == r.value)
    # the same start whose last points stay under the first points' level still held there
    low = g.copy()
    low[7:] = [0.09, 0.12, 0.08, *np.full(g.size - 10, 0.09)]
    assert "held steady" in prepare(series(low), cfg).ref_at(low.size - 1).note


def test_three_decreasing_noisy_points_are_no_early_drop_and_a_noisy_start_uses_more_points() -> None:
    cfg = DetectorConfig()
    # a noisy flat start (σ 0.4 in log) whose first three points happen to fall by half, then bounce back
    rng = np.random.default_rng(0)
    g = 0.3 * np.exp(rng.normal(0, 0.4, 80))
    g[:6] = [0.42, 0.3, 0.2, 0.48, 0.15, 0.4]
    p = prepare(series(g), cfg)
    r = p.ref_at(79)
    assert "falling fast" not in r.method and 0.2 < r.value < 0.45
    assert "noisy start" in r.method and p.ref_n[79] == r.last - r.first + 1 > cfg.ref_points


def test_the_early_level_is_retaken_from_more_points_once_the_noise_is_known() -> None:
    """A start that looked calm when the detector armed (H_ref from three points) of a run that turns out noisy: at
    some point of its first ``noise_points`` the level is retaken as the median of the first k points, with k more
    than H_ref's three and at most ``smooth_max_points``, no more than the points in by then, and from that point on
    only (causal: the run cut there gives the same values). H_ref itself does not move. A start that falls fast keeps
    no retaken level."""
    cfg = DetectorConfig()
    rng = np.random.default_rng(3)
    g = 0.36 * np.exp(rng.normal(0.0, 0.4, 120))
    g[:6] = 0.3 * np.exp(rng.normal(0.0, 0.02, 6))
    p = prepare(series(g), cfg)
    assert np.all(p.ref_n[p.armed] == cfg.ref_points) and np.all(p.h_ref[p.armed] == np.median(g[:3]))
    known = np.flatnonzero(np.isfinite(p.early_more))
    assert known.size and known[0] > cfg.warmup_points and np.all(np.isfinite(p.early_more[known[0] :]))
    for j in np.flatnonzero(np.diff(np.concatenate([[np.nan], p.early_more])) != 0):  # where a new value applies
        if not np.isfinite(p.early_more[j]):
            continue
        ks = [k for k in range(cfg.ref_points + 1, min(j + 1, cfg.smooth_max_points) + 1)
              if np.median(g[:k]) == p.early_more[j]]  # fmt: skip
        assert ks, j
        assert j < cfg.noise_points
        cut = prepare(series(g[: j + 1]), cfg)
        np.testing.assert_array_equal(cut.early_more, p.early_more[: j + 1])
    # a start that falls fast keeps the first point as H_ref: no average of its first points stands for it
    fast = np.concatenate([0.77 * np.exp(-0.55 * np.arange(12)), 1e-3 * np.exp(rng.normal(0, 0.4, 60))])
    assert np.all(np.isnan(prepare(series(fast), cfg).early_more))


def test_segments_restart_at_known_change_points() -> None:
    cfg = DetectorConfig()
    h = healthy(300)
    for kind in ("lr_schedule", "config", "reset"):
        p = prepare(series(h, events=[(150, kind), (200, "note")]), cfg)
        assert p.seg_start[149] == 0 and p.seg_start[150] == 150 and p.seg_start[-1] == 150  # "note" is no reset
        assert not p.armed[150 : 150 + cfg.warmup_points].any() and p.armed[150 + cfg.warmup_points]
        assert abs(p.h_ref[-1] - np.median(h[150:153])) < 1e-12


def test_a_resume_keeps_the_baseline() -> None:
    """A resume continues the run from its checkpoint: no new segment, the run's own H_ref (and everything else)."""
    cfg = DetectorConfig()
    h = collapsing(300)
    plain = prepare(series(h), cfg)
    resumed = prepare(series(h, events=[(200, "resume")]), cfg)
    assert not resumed.seg_start.any()
    for name in ("h_ref", "floor", "armed", "smooth", "sigma"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(plain, name), err_msg=name)


def test_noise_sigma_is_causal_and_per_segment() -> None:
    cfg = DetectorConfig()
    h = noisy(np.full(300, 0.5), 0.1, seed=4)
    p = prepare(series(h), cfg)
    q = prepare(series(h[:180]), cfg)
    assert np.allclose(p.sigma[:180], q.sigma, equal_nan=True)
    assert 0.07 < np.nanmedian(p.sigma[60:]) < 0.13


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


def test_a_negative_entropy_reads_as_zero(recwarn) -> None:
    """An entropy is never below 0; a value that is (an estimator's rounding, a loss -H mapped by mistake) reads as 0
    everywhere — the level, the guards' messages — as log H already read it, and warns nothing on the way."""
    h = healthy(200, seed=4)
    h[[50, 51, 120]] = 0.0
    neg = h.copy()
    neg[[50, 51, 120]] = [-0.3, -1e-9, -12.0]
    zero_res, neg_res = analyze(series(h)), analyze(series(neg))
    assert [(a.key, a.message) for a in neg_res.alerts] == [(a.key, a.message) for a in zero_res.alerts]
    p = prepare(series(neg), DetectorConfig())
    assert (p.h >= 0).all() and np.array_equal(p.h, prepare(series(h), DetectorConfig()).h)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_the_floor_is_a_fall_from_the_early_level_at_any_scale() -> None:
    """The floor is 10% of H_ref, or the absolute 0.02 nats when that is higher, but never more than a quarter of
    H_ref: a run whose entropy sits at 0.03 nats from the start (a low-temperature model, a normalised entropy) was
    'at the floor' after any dip within its noise ("reached the floor: 0.013 nats, 121% of H_ref 0.011"). The same
    healthy runs, scaled down, get no collapse alarm, and a note says why the floor is a share of H_ref."""
    cfg = DetectorConfig()
    h_ref = np.array([0.01, 0.05, 0.08, 0.1, 0.2, 1.0])
    np.testing.assert_allclose(cfg.floor(h_ref), [0.0025, 0.0125, 0.02, 0.02, 0.02, 0.1])
    assert np.all(cfg.floor(h_ref) <= cfg.depletion_frac * h_ref + 1e-15)
    from entropy_watch.analysis import analyze
    from entropy_watch.synthetic import generate

    for seed in range(6):
        run = generate("healthy", seed=seed, n_steps=60)
        base = analyze(series(run.entropy))
        assert not [a for a in base.alerts if a.kind == "collapse" and a.severity != "info"]
        for scale in (0.1, 0.02):
            low = analyze(series(run.entropy * scale))
            fired = [a.message for a in low.alerts if a.kind == "collapse" and a.severity != "info"]
            assert not fired, (seed, scale, fired)
            ref = low.verdict.reference.value
            if 4 * ref < cfg.floor_abs_nats:  # a note says why the floor is not the absolute one
                assert any(n.startswith("entropy starts low") for n in low.notes), low.notes


def test_leading_exact_zeros_are_not_measured_yet() -> None:
    """A logger's placeholder 0.0 before the entropy is computed made H_ref 0 nats and crashed the explosion rule with
    ZeroDivisionError (`alerts` said 'internal error'); one such zero inflated the early noise (the real rasbt 7_5
    log with a 0 logged a step before its first entropy was alarmed 39 points late). The zeros are left out like
    missing values: the run reads as the same run without them, live and post hoc alike, and a note says so."""
    h, r = collapsing(160, onset=60), np.linspace(0.2, 0.6, 160)
    for k in (1, 3, 10):
        measured = np.arange(k, 160 + k)  # the measured run's own steps, after the placeholders at steps 0..k-1
        plain = analyze(RunSeries.from_arrays("t", measured, h, reward=(measured, r)))
        assert {a.kind for a in plain.alerts} >= {"collapse"}
        s = RunSeries.from_arrays("t", np.arange(160 + k), np.r_[np.zeros(k), h], reward=(measured, r))
        res = analyze(s)
        assert res.reference is not None and res.reference.value == plain.reference.value
        assert res.reference.first_step == k  # the first measured point
        assert res.reference.method == plain.reference.method.replace("logged", "measured")
        assert [(a.step, a.kind, a.message) for a in res.alerts] == [(a.step, a.kind, a.message) for a in plain.alerts]
        assert any(f"exactly 0 (step{'s' if k > 1 else ''} 0" in n for n in res.notes), res.notes
        assert not np.isfinite(res.prep.log_h[:k]).any() and res.prep.unmeasured[:k].all()
        assert [a.key for a in polled(s)] == [a.key for a in res.alerts]


def test_zeros_after_a_measured_entropy_are_measurements() -> None:
    """Only zeros before the first positive value are placeholders: a run that had entropy and fell to exactly 0 has
    collapsed; its H_ref may then be 0 nats (the median of 0.5, 0, 0), and a later rise is no multiple of nothing."""
    h = np.r_[0.5, np.zeros(9), np.linspace(0.1, 3.0, 30)]
    res = analyze(series(h))
    assert not res.prep.unmeasured.any() and res.reference.value == 0.0
    assert [(a.kind, a.severity) for a in res.alerts] == [("collapse", "critical")]
    assert "H_ref 0: no entropy early on" in res.alerts[0].message


def test_a_run_of_zeros_only_is_not_judged() -> None:
    for k in (4, 30):
        res = analyze(series(np.zeros(k)))
        v = res.verdict
        assert v.health == "too-short" and not res.alerts
        assert "0 measured points" in v.headline and f"{k} more logged as 0" in v.headline
        assert any("every logged entropy so far is exactly 0" in n for n in res.notes)
    # values below 0 read as 0 (an estimator's rounding, a loss −H logged by mistake): the note says what was logged
    res = analyze(series(np.r_[-np.full(3, 0.5), healthy(40)]))
    assert any("the first 3 logged entropies are 0 or negative (steps 0-2)" in n for n in res.notes), res.notes
