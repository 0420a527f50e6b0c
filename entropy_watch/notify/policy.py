"""Which notices are sent: minimum severity, per-(run, kind) cooldown, escalation, recovery once, hourly cap.

Rules, in order (W&B's ``wait_duration`` and rlwatch's per-detector cooldown are the same idea, keyed on time
here because a 3 a.m. page is about minutes, not steps):

1. an alert below ``min_severity`` is not sent;
2. an **escalation** — an alert more severe than any offered before for its (run, kind), e.g. warning → critical,
   even when the warning was held back — is always sent (it skips the cooldown and the hourly cap, and counts
   toward the cap);
3. otherwise an alert for a (run, kind) sent less than ``cooldown_s`` ago is held back;
4. at most ``max_per_hour`` messages per run in any sliding hour;
5. a **recovery** is sent once per (run, kind) after an alert for it was sent, never otherwise; it also skips the
   cooldown and the cap. After a recovery the (run, kind) starts over (its next alert is a plain alert).

What an earlier session of a training sent (one resumed under the same run name) is told to the gate by
:meth:`Gate.prime`: its escalation is then one and its recovery is sent; nothing is held back for it.

:class:`Gate` holds the state; it is used from one thread (the live analyser's, or the CLI's loop).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from entropy_watch.analysis.alert import SEVERITIES, severity_rank
from entropy_watch.notify.payloads import Notice
from entropy_watch.notify.targets import NotifyConfigError

HOUR_S = 3600.0


@dataclass(frozen=True)
class NotifyPolicy:
    """When to send. Times in seconds."""

    min_severity: str = "warning"
    """Alerts below this severity are not sent (info | warning | critical)."""
    cooldown_s: float = 3600.0
    """Hold back another alert of the same (run, kind) at the same or a lower severity for this long."""
    max_per_hour: int = 10
    """At most this many messages per run in any sliding hour (escalations and recoveries always go out)."""
    recovery: bool = True
    """Send one "back above the floor" message when an alerted problem clears."""

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITIES:
            raise NotifyConfigError(
                f"notify: min_severity must be one of {', '.join(SEVERITIES)}, got {self.min_severity!r}"
            )
        if self.cooldown_s < 0:
            raise NotifyConfigError(f"notify: cooldown_s must be >= 0, got {self.cooldown_s}")
        if self.max_per_hour < 1:
            raise NotifyConfigError(f"notify: max_per_hour must be >= 1, got {self.max_per_hour}")


class Gate:
    """Applies a :class:`NotifyPolicy`: :meth:`admit` returns the notice to send (its ``event`` set to
    ``escalation`` when it is one) or None, and remembers what was sent."""

    def __init__(self, policy: NotifyPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or NotifyPolicy()
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # (run, kind) -> (time, severity rank) sent
        self._seen: dict[tuple[str, str], int] = {}  # (run, kind) -> highest severity rank offered since recovery
        self._sent: dict[str, deque[float]] = {}  # run -> send times within the last hour
        self.held: dict[str, int] = {"severity": 0, "cooldown": 0, "hourly_cap": 0, "recovery": 0}

    def admit(self, notice: Notice) -> Notice | None:
        """The notice to send now, or None (and why, counted in :attr:`held`)."""
        now = self._clock()
        key = (notice.run, notice.kind)
        prev = self._last.get(key)
        if notice.event == "recovery":
            if not self.policy.recovery or prev is None:
                self.held["recovery"] += 1
                return None
            del self._last[key]
            self._seen.pop(key, None)
            self._count(notice.run, now)
            return notice
        rank = severity_rank(notice.severity)
        if rank < severity_rank(self.policy.min_severity):
            self.held["severity"] += 1
            return None
        seen = self._seen.get(key)
        self._seen[key] = max(rank, -1 if seen is None else seen)
        if seen is not None and rank > seen:  # also when the lower one was held back
            self._last[key] = (now, rank)
            self._count(notice.run, now)
            return replace(notice, event="escalation")
        if prev is not None and now - prev[0] < self.policy.cooldown_s:
            self.held["cooldown"] += 1
            return None
        if self._recent(notice.run, now) >= self.policy.max_per_hour:
            self.held["hourly_cap"] += 1
            return None
        self._last[key] = (now, rank)
        self._count(notice.run, now)
        return replace(notice, event="alert")

    def prime(self, run: str, kind: str, severity: str) -> None:
        """An alert for (run, kind) at ``severity`` was sent by an earlier process (the run's stored history shows it
        standing): a later, more severe one is an escalation and its recovery is sent. Its send time is unknown, so
        no cooldown holds anything back for it."""
        rank = severity_rank(severity)
        if rank < severity_rank(self.policy.min_severity):
            return
        key = (run, kind)
        self._seen[key] = max(rank, self._seen.get(key, -1))
        prev = self._last.get(key)
        self._last[key] = (float("-inf"), rank) if prev is None else (prev[0], max(rank, prev[1]))

    def forget(self, run: str) -> None:
        """Forget the alerts sent or primed for ``run`` (a resume replaced the history they were primed from): its
        next alert of a kind is a first one again, with no cooldown. Send times (the hourly cap) and :attr:`held`
        stay."""
        for key in [k for k in self._last if k[0] == run]:
            del self._last[key]
        for key in [k for k in self._seen if k[0] == run]:
            del self._seen[key]

    def alerted(self, run: str, kind: str) -> bool:
        """Whether an alert for (run, kind) was sent and has not recovered."""
        return (run, kind) in self._last

    def _recent(self, run: str, now: float) -> int:
        q = self._sent.setdefault(run, deque())
        while q and now - q[0] >= HOUR_S:
            q.popleft()
        return len(q)

    def _count(self, run: str, now: float) -> None:
        self._recent(run, now)
        self._sent[run].append(now)
