"""``MonitorRelay``: notifications for ``entropy-watch watch --notify`` — the monitor's analyses in, messages out.

    relay = MonitorRelay(Notifier.build(["env:EW_SLACK_URL"]))
    Monitor(reader, on_analysis=relay.on_analysis, ...).follow(10.0)

Each finished analysis of a run (:class:`entropy_watch.monitor.RunState`) goes through that run's
:class:`~entropy_watch.notify.Follower` (the same one the in-process live analysis uses): new alerts become alert
notices with the run's verdict, cleared problems become the one recovery message, and the notifier's policy decides
what is sent. The first analysis of a run sets the baseline: what the run already shows when ``watch`` starts is
printed by ``watch`` but not sent (a restarted ``watch`` does not page again for what an earlier one sent, and a
store of finished runs does not flood the channel); everything that appears afterwards is.
"""

from __future__ import annotations

from typing import Any

from entropy_watch.notify.follow import Follower
from entropy_watch.notify.notifier import Notifier


class MonitorRelay:
    """Turns monitor analyses into notifications (one :class:`Follower` per run; the monitor's thread only)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._followers: dict[str, Follower] = {}

    def on_analysis(self, state: Any) -> None:
        """``Monitor(on_analysis=...)``: ``state`` has ``run``, ``result`` (an AnalysisResult) and ``verdict``."""
        result = getattr(state, "result", None)
        if result is None or getattr(state, "error", None):
            return
        run = state.run
        first = run not in self._followers
        follower = self._followers.setdefault(run, Follower(run))
        changes = follower.update(result)
        if first:
            return
        for a in changes.alerts:
            self.notifier.alert(run, a, getattr(state, "verdict", None))
        for r in changes.recoveries:
            self.notifier.recovery(run, r.kind, r.step, r.summary, key=r.key)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Deliver what is queued (bounded wait)."""
        return self.notifier.close(timeout_s)
