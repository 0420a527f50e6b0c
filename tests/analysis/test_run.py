"""Whole-run vs incremental analysis, bad input, and the alert row format."""

from __future__ import annotations

import json

import numpy as np

from entropy_watch.analysis import Alert, Analyzer, analyze, analyze_series
from entropy_watch.analysis.alert import rows
from entropy_watch.synthetic import generate

from ._series import collapsing, series


def _key(a: Alert) -> tuple:
    return (a.step, a.detector, a.kind, a.severity, a.message)


def test_live_prefixes_give_the_post_hoc_alerts_at_every_step() -> None:
    for kind, seed in (("collapse_step", 1), ("explosion", 2), ("cliff_recover", 3), ("lr_kink", 4)):
        s = generate(kind, seed, 400).to_series()
        post = analyze_series(s)
        assert kind in ("cliff_recover", "lr_kink") or post, kind
        live = Analyzer()
        got: list[Alert] = []
        for end in range(25, 400 + 37, 37):  # a reader that sees 37 new steps per poll
            got += live.update(s.prefix(end))
        assert [_key(a) for a in got] == [_key(a) for a in post], kind
        for cut in (120, 250):  # and a fresh analysis of any prefix agrees up to its last step
            assert [_key(a) for a in analyze_series(s.prefix(cut))] == [_key(a) for a in post if a.step <= cut]


def test_rewritten_history_invalidates_the_cache() -> None:
    h = collapsing(300)
    live = Analyzer()
    live.update(series(h[:200]))
    h2 = h.copy()
    h2[:200] = 0.5  # a restart re-logged the same steps with other values
    assert [_key(a) for a in live.analyze(series(h2)).alerts] == [_key(a) for a in analyze_series(series(h2))]


def test_too_short_series_gives_no_alert_and_a_reason() -> None:
    res = analyze(series(np.linspace(1.0, 0.01, 12)))
    assert res.alerts == []
    assert res.notes and "needs at least 20" in res.notes[0]


def test_constant_series_is_quiet_and_zero_entropy_is_at_the_floor() -> None:
    assert analyze_series(series(np.full(300, 0.7))) == []
    al = analyze_series(series(np.zeros(100)))
    assert [a.detector for a in al if a.severity != "info"] == ["guard.floor"]


def test_nan_and_inf_raise_the_nonfinite_guard_without_breaking_the_rest() -> None:
    h = collapsing(400)
    h[[50, 51, 300]] = [np.nan, np.inf, -np.inf]
    al = analyze_series(series(h))
    assert [a.step for a in al if a.kind == "nonfinite"] == [50, 300]
    assert any(a.detector == "forecast.eta" for a in al)


def test_alert_rows_are_json_with_actions_inside_evidence() -> None:
    al = analyze_series(series(collapsing(400)))
    cols = rows(al, wall_time=1.0)
    assert set(cols) == {"step", "detector", "kind", "severity", "message", "evidence", "wall_time"}
    ev = json.loads(cols["evidence"][0])
    assert ev["actions"] and any("clip" in x for x in ev["actions"])
    back = Alert.from_row({k: v[0] for k, v in cols.items()})
    assert _key(back) == _key(al[0]) and back.actions == al[0].actions
    json.dumps([a.to_dict() for a in al])  # evidence is JSON-serialisable (no numpy, no NaN)
