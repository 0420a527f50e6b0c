"""The sending policy: minimum severity, per-(run, kind) cooldown, escalation always, recovery once, hourly cap."""

from __future__ import annotations

import pytest

from entropy_watch.analysis import Alert
from entropy_watch.notify import Gate, Notice, NotifyConfigError, NotifyPolicy, notice_for
from entropy_watch.notify.notifier import recovery_notice


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _n(run: str, kind: str, severity: str, step: int) -> Notice:
    return notice_for(run, Alert(step, "d", kind, severity, f"{kind} at {step}"))


def _gate(**policy) -> tuple[Gate, Clock]:
    clock = Clock()
    return Gate(NotifyPolicy(**policy), clock=clock), clock


def test_minimum_severity() -> None:
    gate, _ = _gate(min_severity="warning")
    assert gate.admit(_n("r", "cliff", "info", 1)) is None
    assert gate.admit(_n("r", "cliff", "warning", 2)) is not None
    gate, _ = _gate(min_severity="critical")
    assert gate.admit(_n("r", "collapse", "warning", 1)) is None
    assert gate.held["severity"] == 1


def test_cooldown_is_per_run_and_kind() -> None:
    gate, clock = _gate(cooldown_s=600)
    assert gate.admit(_n("a", "collapse", "warning", 10)).event == "alert"
    clock.t += 60
    assert gate.admit(_n("a", "collapse", "warning", 20)) is None  # same (run, kind): held
    assert gate.admit(_n("a", "explosion", "warning", 20)) is not None  # another kind
    assert gate.admit(_n("b", "collapse", "warning", 20)) is not None  # another run
    clock.t += 600
    assert gate.admit(_n("a", "collapse", "warning", 30)) is not None  # cooled down: a reminder
    assert gate.held["cooldown"] == 1


def test_escalation_is_always_sent() -> None:
    gate, clock = _gate(cooldown_s=3600, max_per_hour=1)
    assert gate.admit(_n("a", "collapse", "warning", 10)).event == "alert"
    clock.t += 1
    esc = gate.admit(_n("a", "collapse", "critical", 11))  # inside the cooldown and over the cap
    assert esc is not None and esc.event == "escalation"
    assert gate.admit(_n("a", "collapse", "critical", 12)) is None  # same severity again: cooldown
    assert gate.admit(_n("a", "collapse", "warning", 13)) is None  # de-escalation: cooldown


def test_escalation_after_a_held_warning() -> None:
    gate, _ = _gate(max_per_hour=1)
    assert gate.admit(_n("a", "cliff", "warning", 1)) is not None
    assert gate.admit(_n("a", "collapse", "warning", 2)) is None  # over the hourly cap
    esc = gate.admit(_n("a", "collapse", "critical", 3))
    assert esc is not None and esc.event == "escalation"


def test_recovery_is_sent_once_and_only_after_an_alert() -> None:
    gate, clock = _gate(max_per_hour=2)
    rec = recovery_notice("a", "collapse", 50, "back above the floor")
    assert gate.admit(rec) is None  # nothing was alerted
    assert gate.admit(_n("a", "collapse", "critical", 10)) is not None
    assert gate.admit(_n("a", "cliff", "warning", 11)) is not None  # the cap (2) is now reached
    assert gate.admit(rec) is not None  # recovery skips the cap
    assert gate.admit(rec) is None  # once
    clock.t += 1
    again = gate.admit(_n("a", "collapse", "warning", 60))  # a new episode starts over: a plain alert...
    assert again is None  # ...held by the hourly cap (recoveries count toward it)
    assert not gate.alerted("a", "collapse")
    gate2, _ = _gate(recovery=False)
    gate2.admit(_n("a", "collapse", "critical", 10))
    assert gate2.admit(rec) is None


def test_hourly_cap_slides() -> None:
    gate, clock = _gate(max_per_hour=3, cooldown_s=0)
    sent = 0
    for i in range(10):
        sent += gate.admit(_n("a", "cliff", "warning", i)) is not None
        clock.t += 60
    assert sent == 3 and gate.held["hourly_cap"] == 7
    clock.t += 3600
    assert gate.admit(_n("a", "cliff", "warning", 99)) is not None


@pytest.mark.parametrize(
    "bad", [{"min_severity": "loud"}, {"cooldown_s": -1}, {"max_per_hour": 0}], ids=["severity", "cooldown", "cap"]
)
def test_policy_is_validated(bad) -> None:
    with pytest.raises(NotifyConfigError):
        NotifyPolicy(**bad)
