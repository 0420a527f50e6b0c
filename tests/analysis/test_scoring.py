"""Scoring rules shared by the benchmark and the real-run tests: crossings on the smoothed curve, hits, ETA quality."""

from __future__ import annotations

import math

import numpy as np

from entropy_watch.analysis.scoring import (
    Alarm,
    Outcome,
    crossing,
    eta_quality,
    eta_records,
    floor_of,
    share_counts,
    summarize,
    worse_p,
)


def test_crossing_reads_the_centered_median_and_ignores_a_lone_outlier() -> None:
    h = np.array([1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0])
    assert crossing(h, 3.0, above=True) == 5  # the single 5.0 at index 3 is no crossing; 3 of 5 above from 5 on
    assert crossing(h, 3.0, above=True, smooth=False) == 3
    assert crossing(h, 3.0, above=True, start=8) == 8
    assert crossing(h, 0.5, above=False) is None
    assert floor_of(0.1) == 0.02 and floor_of(1.0) == 0.1


def test_outcomes_hits_false_alarms_and_delays() -> None:
    col = Outcome("collapse", 100, [Alarm(40, "collapse", 70.0, 60.0, 80.0)], onset=30, truth=72, truth_step=72)
    assert col.detected and col.before_floor and col.delay == 10 and col.wrong_kind == 0
    late = Outcome("collapse", 100, [Alarm(80, "collapse")], onset=30, truth=72)
    assert late.before_floor is False
    exp = Outcome("explosion", 50, [Alarm(20, "collapse"), Alarm(33, "explosion")], onset=25, truth=31)
    assert exp.detected and exp.delay == 2 and exp.wrong_kind == 1
    healthy = Outcome("healthy", 50, [Alarm(10, "other")], None, None)
    assert not healthy.false_alarm  # an alarm of another kind (zero-variance groups, ...) is not a false alarm
    assert Outcome("collapse-benign", 50, [Alarm(10, "collapse")], 0, 4).false_alarm
    s = summarize([col, late, exp, healthy])
    assert s["collapse_recall"] == 1.0 and s["collapse_before_floor"] == 0.5 and s["wrong_kind"] == 1.0
    assert s["healthy_fa_rate"] == 0.0 and s["explosion_delay_median"] == 2.0


def test_eta_coverage_needs_an_interval_and_error_counts_in_points() -> None:
    inside = Outcome("collapse", 100, [Alarm(40, "collapse", 70.0, 60.0, 80.0)], 30, 72, 72.0)
    outside = Outcome("collapse", 100, [Alarm(40, "collapse", 50.0, 45.0, 55.0)], 30, 72, 72.0)
    point = Outcome("collapse", 100, [Alarm(40, "collapse", 72.0)], 30, 72, 72.0)  # a point ETA: no coverage
    never = Outcome("collapse", 100, [Alarm(40, "collapse", 70.0, 65.0, None)], 30, 72, 72.0)  # open end covers
    cover, err = eta_quality([inside, outside, point, never])
    assert cover == 2 / 3 and err == np.median([2.0, 22.0, 0.0, 2.0])
    # per alarm: (interval holds the crossing, error in points, lead = points from the alarm to the crossing)
    assert eta_records([inside, outside, point, never]) == [(True, 2.0, 32), (False, 22.0, 32), (None, 0.0, 32),
                                                            (True, 2.0, 32)]  # fmt: skip
    late = Outcome("collapse", 100, [Alarm(75, "collapse", 80.0, 70.0, 90.0)], 30, 72, 72.0)  # after the floor
    assert eta_records([late]) == [] and np.isnan(eta_quality([late])[1])
    coarse = Outcome("collapse", 100, [Alarm(40, "collapse", 700.0, 600.0, 800.0)], 30, 72, 720.0, spacing=10.0)
    assert eta_quality([coarse]) == (1.0, 2.0)


def test_share_counts_are_the_runs_behind_each_rate() -> None:
    col = Outcome("collapse", 100, [Alarm(40, "collapse")], onset=30, truth=72)
    late = Outcome("collapse", 100, [Alarm(80, "collapse")], onset=30, truth=72)
    missed = Outcome("collapse", 100, [], onset=30, truth=72)
    exp = Outcome("explosion", 50, [Alarm(20, "collapse"), Alarm(22, "collapse"), Alarm(33, "explosion")], 25, 31)
    fa = Outcome("healthy", 50, [Alarm(10, "explosion")], None, None)
    ok = Outcome("healthy", 50, [Alarm(10, "other")], None, None)
    ben = Outcome("collapse-benign", 50, [], 0, 4)
    outs = [col, late, missed, exp, fa, ok, ben]
    c = share_counts(outs)
    assert c["healthy_fa_rate"] == (1, 2) and c["collapse_recall"] == (2, 3) and c["explosion_recall"] == (1, 1)
    assert c["collapse_before_floor"] == (1, 2) and c["benign_alarm_rate"] == (0, 1)
    assert c["wrong_kind"] == (1, 4)  # one run with wrong-kind alarms (two of them) among the four labelled runs
    s = summarize(outs)
    for col_name in ("healthy_fa_rate", "collapse_recall", "collapse_before_floor", "benign_alarm_rate"):
        k, n = c[col_name]
        assert s[col_name] == k / n


def _hypergeom_tail(k1: int, n1: int, k2: int, n2: int, greater: bool) -> float:
    """Naive one-sided Fisher exact p: the chance that ours gets at least (at most) k1 of the k1 + k2 events."""
    total, events = n1 + n2, k1 + k2
    ks = range(k1, min(n1, events) + 1) if greater else range(max(0, events - n2), k1 + 1)
    return sum(math.comb(n1, k) * math.comb(n2, events - k) for k in ks) / math.comb(total, events)


def test_worse_p_is_the_one_sided_fisher_exact_tail() -> None:
    assert worse_p((1, 360), (0, 360), higher_is_worse=True) == 0.5  # the lone event is ours with chance 1/2
    for ours, peer in (((8, 360), (3, 360)), ((8, 360), (0, 360)), ((2, 50), (9, 60))):
        for greater in (True, False):
            ref = _hypergeom_tail(*ours, *peer, greater)
            assert math.isclose(worse_p(ours, peer, higher_is_worse=greater), ref, rel_tol=1e-9), (ours, peer)
    assert worse_p((117, 120), (120, 120), higher_is_worse=False) < 0.25  # recall: fewer is worse
    assert worse_p((0, 0), (3, 360), higher_is_worse=True) == 1.0


def test_logged_every_is_the_mean_over_each_interval_stamped_at_its_end() -> None:
    from entropy_watch.analysis.scoring import logged_every

    rng = np.random.default_rng(0)
    steps = np.arange(3, 3 + 2 * 23, 2)  # 23 points two steps apart
    h, r = rng.random(23), rng.random(23)
    r[5:10] = np.nan  # the reward's second interval of 5 has none logged
    st, hh, rr = logged_every(5, steps, h, r)
    naive = [(steps[i + 4], np.mean(h[i : i + 5]), np.nanmean(r[i : i + 5]) if np.isfinite(r[i : i + 5]).any()
              else np.nan) for i in range(0, 20, 5)]  # fmt: skip
    assert st.tolist() == [x[0] for x in naive] and len(st) == 4  # the last 3 points, a partial interval, dropped
    np.testing.assert_allclose(hh, [x[1] for x in naive])
    np.testing.assert_allclose(rr, [x[2] for x in naive], equal_nan=True)
    assert np.isnan(rr[1]) and logged_every(5, steps, h)[2] is None
