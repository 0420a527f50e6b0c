"""L5 policy: persistence, cooldown, saturation and escalation, filtering."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import Alert
from entropy_watch.analysis.policy import apply_context, cooldown, filter_alerts, persistent


def _a(step: int, sev: str = "warning", det: str = "forecast.eta", kind: str = "collapse") -> Alert:
    return Alert(step=step, detector=det, kind=kind, severity=sev, message="m")


def test_persistence_needs_k_of_n_ending_now() -> None:
    assert persistent([False, True, True], 2, 3)
    assert persistent([True, False, True], 2, 3)
    assert not persistent([True, True, False], 2, 3)
    assert not persistent([False, False, True], 2, 3)


def test_cooldown_drops_repeats_but_keeps_a_rise_in_severity() -> None:
    steps = np.arange(1000)
    out = cooldown([_a(100), _a(120), _a(130, "critical"), _a(160), _a(200)], steps, 50)
    assert [(a.step, a.severity) for a in out] == [(100, "warning"), (130, "critical"), (200, "warning")]
    other = cooldown([_a(100), _a(110, det="guard.depletion")], steps, 50)
    assert len(other) == 2  # cooldown is per detector


def test_saturation_turns_collapse_into_info_and_corroboration_escalates() -> None:
    sat = apply_context(_a(10), {"reward_saturated": True, "reward_recent": 0.99}, [])
    assert (sat.kind, sat.severity) == ("saturation", "info") and "solved" in sat.message
    esc = apply_context(_a(10), {"reward_plateau": True}, ["reward_plateau"])
    assert esc.severity == "critical" and esc.evidence["escalated_by"] == ["reward_plateau"]
    expl = apply_context(_a(10, kind="explosion"), {"reward_saturated": True}, [])
    assert expl.kind == "explosion"  # only collapse alerts are recontextualised


def test_filter_by_step_and_severity() -> None:
    al = [_a(5, "info", kind="cliff"), _a(10), _a(20, "critical")]
    assert [a.step for a in filter_alerts(al, since=10)] == [10, 20]
    assert [a.step for a in filter_alerts(al, min_severity="critical")] == [20]
