"""Whole-run vs incremental analysis (alerts and verdicts agree at every step), bad input, the alert row format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from entropy_watch.analysis import Alert, Analyzer, analyze, analyze_series, verdict
from entropy_watch.analysis.alert import rows
from entropy_watch.analysis.run import eval_indices
from entropy_watch.synthetic import generate

from ._series import collapsing, polled, series


def _key(a: Alert) -> tuple:
    return (a.key, a.message)


def test_eval_schedule_is_dense_on_short_runs_and_thins_on_long_ones() -> None:
    from entropy_watch.analysis import DetectorConfig

    cfg = DetectorConfig()
    idx = eval_indices(100_000, cfg)
    assert idx[:91] == list(range(cfg.forecast_min_points - 1, 100))  # every point while the run is short
    assert len(idx) < 600 and eval_indices(5000, cfg) == [i for i in idx if i < 5000]  # a prefix: same indices


def test_live_prefixes_give_the_post_hoc_alerts_at_every_step() -> None:
    cases = [("collapse_step", 1, 400), ("explosion", 2, 400), ("spike", 3, 400), ("lr_kink", 4, 400)]
    cases += [("steady_collapse", 5, 40), ("explosion", 6, 40), ("healthy", 7, 40)]
    for kind, seed, n in cases:
        s = generate(kind, seed, n).to_series()
        post = analyze_series(s)
        if n <= 40:  # polled at every point: each alert arrives at its own step, not found later
            got = polled(s, first=4)
        else:
            live, got = Analyzer(), []
            step = max(1, n // 11)
            for end in range(5, n + step, step):  # a reader that sees `step` new points per poll
                got += live.update(s.prefix(end))
        assert [_key(a) for a in got] == [_key(a) for a in post], kind
        for cut in (n // 3, 2 * n // 3):  # and a fresh analysis of any prefix agrees up to its last step
            assert [_key(a) for a in analyze_series(s.prefix(cut))] == [_key(a) for a in post if a.step <= cut]


def _verdicts_agree(kind: str, seed: int, n: int) -> None:
    s = generate(kind, seed, n).to_series()
    live = Analyzer()
    for end in s.steps.tolist():
        a = live.verdict(s, at_step=end).to_dict()
        assert a == verdict(s.prefix(end)).to_dict(), (kind, end)


def test_live_and_post_hoc_verdicts_agree_at_every_step() -> None:
    for kind, seed in (("steady_collapse", 1), ("explosion", 3)):
        _verdicts_agree(kind, seed, 40)


@pytest.mark.slow
def test_live_and_post_hoc_verdicts_agree_at_every_step_of_a_longer_run() -> None:
    _verdicts_agree("fast_collapse", 2, 100)
    s = generate("spike", 4, 120).to_series()
    assert verdict(s, at_step=60).to_dict() == verdict(s.prefix(60)).to_dict()


def test_rewritten_history_invalidates_the_cache() -> None:
    h = collapsing(300)
    live = Analyzer()
    live.update(series(h[:200]))
    h2 = h.copy()
    h2[:200] = 0.5  # a restart re-logged the same steps with other values
    assert [_key(a) for a in live.analyze(series(h2)).alerts] == [_key(a) for a in analyze_series(series(h2))]


def test_too_short_series_gives_no_alert_and_a_reason() -> None:
    res = analyze(series(np.linspace(1.0, 0.01, 5)))
    assert res.alerts == [] and res.verdict is not None and res.verdict.health == "too-short"
    assert res.notes and "decides from the 6th" in res.notes[0]


def test_constant_series_is_quiet_and_zero_entropy_is_at_the_floor() -> None:
    assert analyze_series(series(np.full(300, 0.7))) == []
    # entropy measured, then exactly 0: the floor. Zeros before any measured value are a logger's placeholder, not
    # a policy with no entropy (test_hygiene): a run of zeros only is not judged
    for h in (np.r_[np.full(20, 0.7), np.zeros(80)], np.r_[0.7, np.zeros(99)]):
        al = analyze_series(series(h))
        assert [a.detector for a in al if a.severity != "info"] == ["collapse.floor"]
    assert analyze_series(series(np.zeros(100))) == []


def test_nan_and_inf_raise_the_nonfinite_guard_without_breaking_the_rest() -> None:
    h = collapsing(400)
    h[[50, 51, 300]] = [np.nan, np.inf, -np.inf]
    al = analyze_series(series(h))
    assert [a.step for a in al if a.kind == "nonfinite"] == [50, 300]
    assert any(a.kind == "collapse" for a in al)


def test_alert_rows_are_json_with_actions_inside_evidence() -> None:
    al = analyze_series(series(collapsing(400)))
    cols = rows(al, wall_time=1.0)
    assert set(cols) == {"step", "detector", "kind", "severity", "message", "evidence", "wall_time"}
    ev = json.loads(cols["evidence"][0])
    assert ev["actions"] and any("clip" in x for x in ev["actions"])
    back = Alert.from_row({k: v[0] for k, v in cols.items()})
    assert _key(back) == _key(al[0]) and back.actions == al[0].actions
    json.dumps([a.to_dict() for a in al])  # evidence is JSON-serialisable (no numpy, no NaN)


def test_a_series_built_with_meta_none_is_analysed() -> None:
    """``RunSeries.from_arrays(..., meta=None)`` raised AttributeError deep in the corroboration (meta.get)."""
    from entropy_watch.analysis import RunSeries, analyze

    steps = np.arange(60)
    series = RunSeries.from_arrays("m", steps, np.linspace(2.0, 0.05, 60), meta=None)
    assert series.meta == {} and analyze(series).verdict.health in ("warning", "critical")
