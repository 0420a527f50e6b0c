"""Store-wide budget of ``entropy-watch watch --notify``: a few runs are notified one by one, the rest in digests.

A 64-run sweep with a bad learning rate collapses everywhere at once; one message per run (and one recovery each)
is 128 posts in a minute, and a muted channel misses the next real incident. The per-run :class:`NotifyPolicy`
cannot see that, so the watch process applies a second, store-wide rule after it (:class:`DigestPolicy`):

1. a run whose own message went out less than ``window_s`` ago keeps getting its own messages (its escalation and
   recovery read as one thread);
2. otherwise a run gets its own message while fewer than ``max_runs`` runs have had one within ``window_s``;
3. every other message the per-run policy admits — alerts, escalations, recoveries, criticals included — is folded
   into the next **digest**: one message that goes out ``gather_s`` after the first one folded into it (a monitor
   pass over a large store takes a while: the burst is gathered), at most one per ``every_s``, and at once when
   watch stops. Nothing admitted is dropped: a digest names each run with its worst severity (criticals first) and
   which recovered, and the JSON body lists every folded notice.

The budget lives in one watch process (no server, no shared state): training processes that each notify (``Watch(...,
notify=...)``) each send for their one run; for a sweep, notify from one ``watch --notify`` instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from entropy_watch.analysis.alert import severity_rank
from entropy_watch.notify.payloads import Notice
from entropy_watch.notify.targets import NotifyConfigError

SHOWN = 12
"""Runs named in a digest's text (each list); the rest are counted ("and 49 more"). The JSON body has them all."""
HINT = "entropy-watch alerts"
"""What a digest says to run for every run's alerts (every run of the store without arguments)."""


@dataclass(frozen=True)
class DigestPolicy:
    """How many runs of a store get their own messages; the rest are folded into digests. Times in seconds."""

    max_runs: int = 3
    """Runs that get their own messages within ``window_s`` (0: every message goes into a digest)."""
    window_s: float = 3600.0
    """A run keeps its own messages while its last one is younger than this; runs older than this free their place."""
    gather_s: float = 60.0
    """A digest goes out this long after the first message folded into it."""
    every_s: float = 600.0
    """At most one digest per this long."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_runs, int) or self.max_runs < 0:
            raise NotifyConfigError(f"notify: max_runs must be an integer >= 0, got {self.max_runs!r}")
        for name in ("window_s", "gather_s", "every_s"):
            if not getattr(self, name) >= 0:  # also NaN
                raise NotifyConfigError(f"notify: {name} must be >= 0 seconds, got {getattr(self, name)}")


class Digest:
    """Applies a :class:`DigestPolicy`: :meth:`fold` says whether a notice goes into the next digest; the digest is
    handed to ``emit`` by a timer thread when due, or by :meth:`close`. Thread-safe."""

    def __init__(
        self,
        policy: DigestPolicy,
        emit: Callable[[Notice], object],
        *,
        app_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[float, Callable[[], None]], object] | None = None,
    ) -> None:
        self.policy = policy
        self.app_url = app_url
        self._emit = emit
        self._clock = clock
        self._timer = timer or _daemon_timer
        self._own: dict[str, float] = {}  # run -> when its own last message went out
        self._pending: list[Notice] = []
        self._first: float | None = None  # when the first pending notice was folded
        self._last_digest = float("-inf")
        self._scheduled = False
        self._closed = False
        self._lock = threading.Lock()  # also held while a digest is handed over: close() never overtakes the timer
        self.digests = 0
        self.folded = 0

    def fold(self, notice: Notice) -> bool:
        """True: ``notice`` is folded into the next digest (do not send it); False: send it on its own."""
        with self._lock:
            if self._closed:  # watch is stopping: what comes now is sent (or not) as before, never kept
                return False
            now = self._clock()
            window = self.policy.window_s
            for run in [r for r, t in self._own.items() if now - t >= window]:
                del self._own[run]
            if notice.run in self._own or len(self._own) < self.policy.max_runs:
                self._own[notice.run] = now
                return False
            self._pending.append(notice)
            self.folded += 1
            if self._first is None:
                self._first = now
            if not self._scheduled:
                self._scheduled = True
                self._timer(max(0.0, self._due() - now), self._on_timer)
            return True

    def flush(self) -> Notice | None:
        """Emit the digest of what is pending now (None when nothing is)."""
        with self._lock:
            return self._flush()

    def close(self) -> Notice | None:
        """Emit what is pending (watch stops: nothing folded is lost); later notices are not folded."""
        with self._lock:
            self._closed = True
            return self._flush()

    def _flush(self) -> Notice | None:
        pending, self._pending, self._first = self._pending, [], None
        if not pending:
            return None
        self._last_digest = self._clock()
        self.digests += 1
        n = digest_notice(pending, others=len(self._own), app_url=self.app_url)
        self._emit(n)  # queues the POSTs, never blocks
        return n

    def _due(self) -> float:
        assert self._first is not None
        return max(self._first + self.policy.gather_s, self._last_digest + self.policy.every_s)

    def _on_timer(self) -> None:
        with self._lock:
            self._scheduled = False
            if self._first is None:
                return
            wait = self._due() - self._clock()
            if wait > 0:  # rescheduled (a flush in between moved the due time)
                self._scheduled = True
                self._timer(wait, self._on_timer)
                return
            self._flush()


def _daemon_timer(delay_s: float, fn: Callable[[], None]) -> object:
    t = threading.Timer(delay_s, fn)
    t.daemon = True  # a pending digest never keeps the process alive: watch flushes it on the way out
    t.start()
    return t


def digest_notice(pending: list[Notice], *, others: int = 0, app_url: str | None = None) -> Notice:
    """One message for ``pending`` (folded notices, in the order they came): per run its worst alert and whether
    it recovered since; ``others``: runs that got their own messages (the text then says "more runs")."""
    worst: dict[str, Notice] = {}
    recovered: dict[str, Notice] = {}
    for n in pending:
        if n.event == "recovery":
            recovered[n.run] = n
            continue
        best = worst.get(n.run)
        if best is None or severity_rank(n.severity) > severity_rank(best.severity):
            worst[n.run] = n
    alerting = sorted(worst.values(), key=lambda n: -severity_rank(n.severity))  # stable: arrival order within
    more = "more " if others else ""
    parts = []
    kinds = sorted({n.kind for n in pending if n.event != "recovery"} or {n.kind for n in pending})
    if alerting:
        crit = sum(n.severity == "critical" for n in alerting)
        every = crit == len(alerting)  # then "critical" is said once, not after each name
        verb = "warn" if len(alerting) > 1 else "warns"
        what = f"of a critical {' or '.join(kinds)}" if every else f"of {' or '.join(kinds)}"
        sev = f" ({crit} critical)" if crit and not every else ""
        parts.append(f"{_runs(len(alerting), more)} {verb} {what}{sev}: {_names(alerting, severity=not every)}")
    if alerting and (since := [n for n in alerting if n.run in recovered]):
        parts.append(
            f"{len(since)} of them {'has' if len(since) == 1 else 'have'} since recovered"
            if len(since) < len(alerting)
            else "all have since recovered"
        )
    if earlier := [r for r in recovered.values() if r.run not in worst]:  # alerted in an earlier message
        parts.append(f"{_runs(len(earlier), '' if alerting else more)} recovered: {_names(earlier)}")
    summary = "; ".join(parts) + f". Every run's alerts: {HINT}"
    severity = alerting[0].severity if alerting else "info"  # the worst: sorted above
    steps = [n.step for n in pending]
    return Notice(
        event="digest",
        run="",
        kind="/".join(kinds),
        severity=severity,
        step=min(steps),
        summary=summary,
        key=f"digest:{len(pending)}:{pending[0].key}",
        action=HINT,
        app_link=app_url.rstrip("/") if app_url else None,
        folded=tuple(pending),
    )


def _runs(n: int, more: str) -> str:
    return f"{n} {more}run" if n == 1 else f"{n} {more}runs"


def _names(notices: list[Notice], severity: bool = False) -> str:
    shown = [f"{n.run} (critical)" if severity and n.severity == "critical" else n.run for n in notices[:SHOWN]]
    rest = len(notices) - len(shown)
    return ", ".join(shown) + (f", and {rest} more" if rest else "")
