"""``Gate.forget``: a resume replaced the history a run's gate was primed from (hooks/live.py's ``Live._known``)."""

from __future__ import annotations

from entropy_watch.analysis import Alert
from entropy_watch.notify import Gate, Notice, NotifyPolicy, notice_for


def _n(run: str, kind: str, severity: str, step: int) -> Notice:
    return notice_for(run, Alert(step, "d", kind, severity, f"{kind} at {step}"))


def test_forget_drops_one_runs_primed_alerts_and_keeps_the_rest() -> None:
    t = [1000.0]
    gate = Gate(NotifyPolicy(cooldown_s=600), clock=lambda: t[0])
    gate.prime("a", "collapse", "critical")  # the replaced trajectory's collapse
    gate.prime("b", "collapse", "critical")
    held = dict(gate.held)

    gate.forget("a")

    assert not gate.alerted("a", "collapse") and gate.alerted("b", "collapse")  # b untouched
    assert gate.admit(_n("a", "collapse", "warning", 6)).event == "alert"
    t[0] += 60
    assert gate.admit(_n("a", "collapse", "critical", 7)).event == "escalation"  # primed, it was held (cooldown)
    assert gate.admit(_n("b", "collapse", "warning", 6)).event == "alert"
    t[0] += 60
    assert gate.admit(_n("b", "collapse", "critical", 7)) is None  # what forget spared still holds
    assert gate.held["cooldown"] == held["cooldown"] + 1  # counted on, not reset
