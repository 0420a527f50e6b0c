"""``MonitorRelay``: notifications for ``entropy-watch watch --notify`` — the monitor's analyses in, messages out.

    relay = MonitorRelay(Notifier.build(["env:EW_SLACK_URL"]))
    Monitor(reader, on_analysis=relay.on_analysis, ...).follow(10.0)

Each finished analysis of a run (:class:`entropy_watch.monitor.RunState`) goes through that run's
:class:`~entropy_watch.notify.Follower` (the same one the in-process live analysis uses): new alerts become alert
notices with the run's verdict, cleared problems become the one recovery message, and the notifier's policy decides
what is sent. The first analysis of a run sets the baseline: what the run already shows when ``watch`` starts is
printed by ``watch`` but not sent (a restarted ``watch`` does not page again for what an earlier one sent, and a
store of finished runs does not flood the channel); everything that appears afterwards is. Past a few runs the
messages go out as digests (:mod:`entropy_watch.notify.digest`, ``DigestPolicy``): a sweep that collapses
everywhere is a few messages, not one per run.

``watch`` runs no training: a message that is not delivered is said as such (:class:`SayOnce`, one line per
destination) and counted for the exit status (:func:`summary`), not worded for the training hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from entropy_watch.notify.delivery import Delivery, Undelivered
from entropy_watch.notify.digest import DigestPolicy
from entropy_watch.notify.follow import Follower
from entropy_watch.notify.notifier import Notifier


class SayOnce:
    """``on_failure`` of ``watch --notify``'s delivery: the first undelivered message to each destination becomes one
    line through ``say``; later ones to it are only counted (:attr:`Delivery.errors`, summed up by :func:`summary`)."""

    def __init__(self, say: Callable[[str], Any]) -> None:
        self.say = say
        self._told: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, failure: Undelivered) -> None:
        with self._lock:
            if failure.label in self._told:
                return
            self._told.add(failure.label)
        self.say(undelivered_line(failure))


def undelivered_line(failure: Undelivered) -> str:
    """``entropy-watch: could not deliver a notification to slack:https://hooks.slack.com/… (HTTP 404, not retried):
    check the webhook URL`` (the destination by its label only: kind and host)."""
    where = f" to {failure.label}" if failure.label else ""
    advice = f": {failure.advice}" if failure.advice else ""
    return f"entropy-watch: could not deliver a notification{where} ({failure.reason}){advice}"


def summary(delivery: Delivery) -> tuple[int, str | None]:
    """After :meth:`Delivery.close`: how many messages were not delivered, and the line that says so (None when every
    one was)."""
    left = delivery.abandoned  # still queued or in flight when watch stopped waiting: lost when the process ends
    failed = delivery.errors + left
    if not failed:
        return 0, None
    handed = delivery.sent + failed
    tail = f" ({left} still being sent when watch stopped waiting)" if left else ""
    noun = "notification" if handed == 1 else "notifications"
    return failed, f"error: {failed} of {handed} {noun} could not be delivered{tail}"


class MonitorRelay:
    """Turns monitor analyses into notifications (one :class:`Follower` per run; the monitor's thread only).
    ``digest``: the store-wide budget the notifier gets unless it has one (None: every run on its own)."""

    def __init__(self, notifier: Notifier, digest: DigestPolicy | None = DigestPolicy()) -> None:  # noqa: B008
        self.notifier = notifier
        if digest is not None and notifier.digest is None:
            notifier.use_digest(digest)
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

    def close(self, timeout_s: float | None = 10.0) -> bool:
        """Deliver what is queued, waiting at most ``timeout_s`` (None: until every message is delivered or has
        failed, retries included)."""
        return self.notifier.close(timeout_s)
