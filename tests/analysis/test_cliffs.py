"""L2 cliffs: CUSUM on pre-whitened residuals finds level shifts, ignores steady decay, respects known events."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import DetectorConfig, analyze
from entropy_watch.analysis.cliffs import KNOWN_CHANGE_MARGIN, detect, innovations
from entropy_watch.analysis.hygiene import prepare

from ._series import healthy, noisy, polled, series


def test_a_recovering_cliff_is_reported_as_info_with_its_onset() -> None:
    clean = np.full(300, 0.8)
    clean[150:170] = 0.35  # a one-off drop that recovers
    al, _ = detect(prepare(series(noisy(clean, 0.04)), DetectorConfig()), DetectorConfig())
    assert al, "the cliff layer must see a 55% drop"
    first = al[0]
    assert first.kind == "cliff" and first.severity == "info"
    assert 148 <= first.evidence["onset_step"] <= 153 and first.evidence["direction"] == "down"


def test_no_cliff_on_smooth_decay_or_noise() -> None:
    cfg = DetectorConfig()
    for seed in range(5):
        assert not detect(prepare(series(healthy(400, seed=seed)), cfg), cfg)[0]


def test_innovations_are_standardised_under_ar1_noise() -> None:
    rng = np.random.default_rng(1)
    x = np.zeros(2000)
    for t in range(1, x.size):
        x[t] = 0.8 * x[t - 1] + rng.normal(0, 0.05)
    z = innovations(prepare(series(np.exp(x)), DetectorConfig()), DetectorConfig())
    z = z[np.isfinite(z)]
    assert 0.7 < np.std(z) < 1.5  # pre-whitening: without it the level noise would be ~1.7x the innovations
    # the level's lag-1 autocorrelation is 0.8; pre-whitening with a 50-point estimate of phi removes most of it
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.4


def test_cliff_at_a_known_change_point_is_explained() -> None:
    clean = np.concatenate([np.full(150, 0.8), np.full(150, 0.3)])
    h = noisy(clean, 0.03)
    cfg = DetectorConfig()
    assert detect(prepare(series(h), cfg), cfg)[0]
    with_event = series(h, events=[(150, "config")])
    assert not detect(prepare(with_event, cfg), cfg, with_event.change_steps())[0]


def test_an_event_logged_after_a_cliff_alert_does_not_take_it_back() -> None:
    """An event explains a cliff only if it was logged by the alert's step: a reader polling the run had the alert
    before the event existed, and the whole run's analysis must give the alerts the reader got."""
    clean = np.concatenate([np.full(150, 0.8), np.full(150, 0.3)])
    h = noisy(clean, 0.03)
    cliff = [a for a in analyze(series(h)).alerts if a.kind == "cliff"]
    assert cliff
    for after in (1, 3, KNOWN_CHANGE_MARGIN):
        s = series(h, events=[(cliff[0].step + after, "resume")])
        post = analyze(s).alerts
        assert [a.key for a in post if a.kind == "cliff"] == [cliff[0].key], after
        assert [(a.key, a.message) for a in polled(s, first=140)] == [
            (a.key, a.message) for a in post if a.step >= s.steps[140]
        ]
    s = series(h, events=[(cliff[0].step, "resume")])  # logged with the drop: explained, live and post hoc
    assert not [a for a in analyze(s).alerts if a.kind == "cliff"]


def test_a_cliff_says_what_the_level_did() -> None:
    """A decay levelling off toward 0 (a solved task) shifts the innovations up while the level is still lower:
    'entropy jumped at step 60: median 0.0056 -> 0.0039 nats (−31%)'. Every cliff reported moves the level the way
    its word says, and on these runs only such cliffs are left."""
    from entropy_watch.synthetic import generate

    for kind in ("solved", "fast_collapse", "explosion"):
        for seed in range(6):
            for a in analyze(generate(kind, seed, 400).to_series()).alerts:
                if a.kind == "cliff":
                    e = a.evidence
                    assert (e["direction"] == "up") == (e["median_after"] > e["median_before"]), a.message
                    assert ("jumped" in a.message) == (e["direction"] == "up"), a.message


def test_a_resumed_scan_finds_what_a_full_scan_finds() -> None:
    clean = np.full(400, 0.8)
    clean[150:170], clean[300:] = 0.35, 0.3
    h = noisy(clean, 0.04, seed=3)
    cfg = DetectorConfig()
    full, _ = detect(prepare(series(h), cfg), cfg)
    scan = None
    for end in (60, 155, 171, 290, 333, 400):
        got, scan = detect(prepare(series(h[:end]), cfg), cfg, None, scan)
    assert [a.key for a in got] == [a.key for a in full] and len(full) >= 2
    assert np.allclose(scan.z, innovations(prepare(series(h), cfg), cfg), equal_nan=True)


def test_innovations_of_every_prefix_are_the_whole_runs_first_entries() -> None:
    """Entry i uses points ≤ i only, from the first point that has a full reference window (index R) on: a live
    scan resumed point by point finds the same innovations, so the same cliff onsets, as the whole run's scan."""
    cfg = DetectorConfig()
    R = cfg.cliff_ref_versions
    h = noisy(np.full(R + 20, 0.8), 0.1, seed=4)
    full = innovations(prepare(series(h), cfg), cfg)
    assert np.isnan(full[:R]).all() and np.isfinite(full[R:]).all()
    scan = None
    for end in range(R - 2, R + 20):
        cut = innovations(prepare(series(h[: end + 1]), cfg), cfg)
        np.testing.assert_allclose(cut, full[: end + 1], equal_nan=True)
        _, scan = detect(prepare(series(h[: end + 1]), cfg), cfg, None, scan)
    np.testing.assert_allclose(scan.z, full, equal_nan=True)
