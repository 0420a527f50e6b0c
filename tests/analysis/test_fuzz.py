"""Fuzzing the analysis (the harness that found the H_ref-of-zero crash, kept so that class stays fixed).

Properties, whatever the values a log holds (zeros before the entropy is measured, NaN, ±inf, values below 0,
1e300, 1e-300, resets, a reward on any scale, a vocabulary size that contradicts the entropy): ``analyze`` returns
a verdict whose headline and alert messages are one short line each, and following the run live yields the alerts
the whole-run analysis gives. Derandomized with modest example counts, so the default suite stays fast and
deterministic.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from entropy_watch.analysis import RunSeries, analyze

from ._series import polled

FUZZ = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
ODD = st.sampled_from([0.0, -1e-9, -0.5, float("nan"), float("inf"), float("-inf"), 1e300, 1e-300, 1e-7])
VALUES = st.one_of(st.floats(0.001, 12.0), ODD)
REWARDS = st.one_of(st.floats(-5.0, 5.0), st.sampled_from([0.0, 1.0, float("nan"), 1e300, -1e300]))


@st.composite
def runs(draw: st.DrawFn) -> RunSeries:
    h = draw(st.lists(VALUES, min_size=draw(st.sampled_from([1, 6, 20])), max_size=50))
    n = len(h)
    lead = draw(st.integers(0, n))  # a logger's placeholders before the entropy is computed
    h = [0.0] * min(lead, draw(st.integers(0, 5))) + h
    n = len(h)
    spacing = draw(st.sampled_from([1, 5, 12]))
    steps = np.arange(n) * spacing
    reward = draw(st.one_of(st.none(), st.lists(REWARDS, min_size=n, max_size=n)))
    meta: dict = {}
    if draw(st.booleans()):
        meta["vocab_size"] = draw(st.sampled_from([2, 10, 151_936]))
    if draw(st.booleans()):
        meta["reward_max"] = draw(st.sampled_from([0.5, 1.0, 2.0]))
    ev = []
    if n > 1 and draw(st.booleans()):
        ev = [(int(steps[draw(st.integers(0, n - 1))]), draw(st.sampled_from(["resume", "lr_change", "config"])))]
    return RunSeries.from_arrays("fuzz", steps, np.array(h), reward=reward, meta=meta, events=ev)


def _short(text: str) -> bool:
    return "\n" not in text and len(text) < 600


@FUZZ
@given(runs())
@example(RunSeries.from_arrays("fuzz", np.arange(12), np.r_[np.zeros(3), np.full(9, 0.5)]))  # H_ref was 0 nats
@example(RunSeries.from_arrays("fuzz", np.arange(12), np.r_[0.5, np.zeros(5), np.linspace(0.1, 3, 6)]))
@example(RunSeries.from_arrays("fuzz", np.arange(30), np.r_[np.full(15, 0.5), np.full(5, 1e300), np.full(10, 0.5)]))
def test_any_values_give_a_verdict_in_short_lines(series: RunSeries) -> None:
    res = analyze(series)
    v = res.verdict
    assert v is not None and v.health in ("too-short", "ok", "info", "warning", "critical")
    assert _short(v.headline), v.headline
    assert all(_short(a.message) for a in res.alerts), [a.message for a in res.alerts]
    assert v.to_dict()["schema"] == 1


@settings(FUZZ, max_examples=40)
@given(runs())
def test_any_values_read_the_same_live_and_post_hoc(series: RunSeries) -> None:
    """With a known change logged anywhere too: one logged after a cliff alert took it back post hoc (stop 33)."""
    assert [a.key for a in polled(series)] == [a.key for a in analyze(series).alerts]
