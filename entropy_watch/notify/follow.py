"""Follow one run's successive analyses and say what changed: alerts not seen before, and problems that cleared.

The live analyser in the training process (``entropy_watch.hooks.live``) and ``entropy-watch watch --notify``
(:mod:`entropy_watch.notify.relay`) both feed each new :class:`~entropy_watch.analysis.AnalysisResult` of a run to a
:class:`Follower`; the new alerts drive notifications and alert actions, the recoveries the one "back above the
floor" message.

What counts as cleared is the analysis' own answer, never recomputed here: a collapse or an explosion is a problem
(``AnalysisResult.problems``, the verdict's ``problems``) that opens with its first warning or critical alarm and
clears where its detector re-arms. Each cleared problem is reported once (by the key of the alert that opened it).
Other kinds (cliff, precision, non-finite, ...) are events, not states: they have no recovery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from entropy_watch.analysis import AnalysisResult
from entropy_watch.analysis.alert import Alert, fmt_nats


@dataclass
class Recovery:
    """A problem that cleared at ``step``; ``since`` is the step of the alert that opened it, ``key`` its key."""

    kind: str
    step: int
    since: int
    key: str
    summary: str


@dataclass
class Changes:
    """What one analysis added: ``alerts`` not returned before (step order) and ``recoveries``."""

    alerts: list[Alert] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)


class Follower:
    """Diffs successive analyses of one run (one thread at a time)."""

    def __init__(self, run: str) -> None:
        self.run = run
        self._seen: set[str] = set()
        self._recovered: set[str] = set()

    def update(self, result: AnalysisResult) -> Changes:
        """New alerts and recoveries since the previous call."""
        out = Changes()
        for a in sorted(result.alerts, key=lambda a: (a.step, -a.rank)):
            k = a.key
            if k not in self._seen:
                self._seen.add(k)
                out.alerts.append(a)
        for p in getattr(result, "problems", ()):
            if p.cleared is None or p.key in self._recovered:
                continue
            self._recovered.add(p.key)
            out.recoveries.append(Recovery(p.kind, int(p.cleared), int(p.since), p.key, _summary(result, p)))
        return out

    def mark_said(self, alerts: Iterable[str], recovered: Iterable[str] = ()) -> None:
        """Take the alerts of the keys ``alerts`` as returned already, and the problems of the keys ``recovered`` as
        reported cleared: what a follower made afresh (after a resume replaced part of the run) must not say again."""
        self._seen.update(alerts)
        self._recovered.update(recovered)


def _summary(result: AnalysisResult, p: object) -> str:
    kind, severity, since, cleared = (getattr(p, k) for k in ("kind", "severity", "since", "cleared"))
    if getattr(p, "solved", False):
        return (f"the task looks solved (the reward is saturated): the {severity} {kind} from step {since} is "
                f"benign convergence, cleared at step {cleared}")  # fmt: skip
    where = "back above the floor" if kind == "collapse" else "back down from its rise"
    v = getattr(result, "verdict", None)
    level = getattr(v, "level", None)
    now = f" ({fmt_nats(level)} nats at step {v.step})" if isinstance(level, float) and v is not None else ""
    return f"entropy is {where}{now}: the {severity} {kind} from step {since} cleared at step {cleared}"
