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


def test_cooldown_thins_info_notes_only() -> None:
    steps = np.arange(1000)
    notes = [_a(100, "info", "cliff.cusum", "cliff"), _a(110, "info", "cliff.cusum", "cliff"),
             _a(130, "info", "cliff.cusum", "cliff"), _a(105, "info", "guard.spike", "spike")]  # fmt: skip
    out = cooldown([*notes, _a(101), _a(102)], steps, 20)
    assert [(a.step, a.detector) for a in out if a.severity == "info"] == [
        (100, "cliff.cusum"),
        (105, "guard.spike"),
        (130, "cliff.cusum"),
    ]
    assert [a.step for a in out if a.severity == "warning"] == [101, 102]  # warnings latch in their detectors


def test_saturation_turns_collapse_into_info_and_context_is_named_not_escalated() -> None:
    sat = apply_context(_a(10), {"reward_saturated": True, "reward_recent": 0.99})
    assert (sat.kind, sat.severity) == ("saturation", "info") and "solved" in sat.message
    ctx = apply_context(_a(10), {"reward_plateau": True})
    assert ctx.severity == "warning" and ctx.evidence["corroborated_by"] == ["reward_plateau"]
    expl = apply_context(_a(10, kind="explosion"), {"reward_saturated": True})
    assert expl.kind == "explosion"  # only collapse alerts are recontextualised


def test_filter_by_step_and_severity() -> None:
    al = [_a(5, "info", kind="cliff"), _a(10), _a(20, "critical")]
    assert [a.step for a in filter_alerts(al, since=10)] == [10, 20]
    assert [a.step for a in filter_alerts(al, min_severity="critical")] == [20]


def test_every_corroborating_flag_reads_as_words() -> None:
    from entropy_watch.analysis.policy import CORROBORATING, SAID

    assert set(CORROBORATING) <= set(SAID) and all("_" not in SAID[k] for k in CORROBORATING)
