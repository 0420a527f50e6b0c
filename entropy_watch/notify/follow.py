"""Follow one run's successive analyses and say what changed: alerts not seen before, and problems that cleared.

The live analyser in the training process (``entropy_watch.hooks.live``) and ``entropy-watch watch`` both feed each
new :class:`~entropy_watch.analysis.AnalysisResult` of a run to a :class:`Follower`; the new alerts drive
notifications and alert actions, the recoveries drive the one "back above the floor" message.

A collapse or explosion alerted at warning or above is *active* until it clears; it clears when the detectors' own
re-arm condition holds at the newest step (their hysteresis, :func:`rearm_level`):

* collapse: the smoothed entropy is back above the re-arm level ("back above the floor") and the last two forecast
  evaluations no longer predict the floor;
* explosion: the smoothed entropy is back under the re-arm level.

Other kinds (cliff, precision, non-finite, ...) are events, not states: they have no recovery message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from entropy_watch.analysis import AnalysisResult, DetectorConfig
from entropy_watch.analysis.alert import Alert, fmt_nats, severity_rank
from entropy_watch.notify.notifier import alert_key

STATE_KINDS: tuple[str, ...] = ("collapse", "explosion")
"""Alert kinds that describe a lasting state, so their recovery is reported."""


def rearm_level(prep: Any, config: DetectorConfig, kind: str, i: int) -> float:
    """The level (nats) past which the detectors re-arm at point ``i``: a collapse clears above it, an explosion
    below it. Collapse: ``rearm_frac``·H_ref and ``rearm_floor_mult``·floor, whichever the config has (the higher);
    explosion: ``rearm_explode_mult``·H_ref (else 0.8·``explode_warn_mult``·H_ref)."""
    h_ref, floor = float(prep.h_ref[i]), float(prep.floor[i])
    if kind == "collapse":
        levels = [getattr(config, "rearm_frac", 0.0) * h_ref, getattr(config, "rearm_floor_mult", 0.0) * floor]
        return max(x for x in levels if np.isfinite(x)) if any(np.isfinite(x) for x in levels) else float("nan")
    mult = getattr(config, "rearm_explode_mult", None)
    return (mult if mult is not None else 0.8 * getattr(config, "explode_warn_mult", 3.0)) * h_ref


@dataclass
class Recovery:
    """An active problem that cleared at ``step``; ``since`` is the step of the alert that opened it."""

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

    def __init__(self, run: str, config: DetectorConfig | None = None) -> None:
        self.run = run
        self.config = config or DetectorConfig()
        self._seen: set[str] = set()
        self._active: dict[str, Alert] = {}  # kind -> the alert that opened the episode

    def update(self, result: AnalysisResult) -> Changes:
        """New alerts and recoveries since the previous call."""
        out = Changes()
        for a in sorted(result.alerts, key=lambda a: (a.step, -a.rank)):
            k = alert_key(a)
            if k in self._seen:
                continue
            self._seen.add(k)
            out.alerts.append(a)
            if a.kind in STATE_KINDS and a.rank >= severity_rank("warning"):
                self._active.setdefault(a.kind, a)
        for kind, opened in list(self._active.items()):
            step = self._cleared(result, kind, opened)
            if step is not None:
                del self._active[kind]
                out.recoveries.append(
                    Recovery(kind, step, opened.step, alert_key(opened), self._summary(result, kind, opened, step))
                )
        return out

    @property
    def active(self) -> dict[str, Alert]:
        """Kind -> the alert that opened each problem still active."""
        return dict(self._active)

    def _cleared(self, result: AnalysisResult, kind: str, opened: Alert) -> int | None:
        """The newest step when ``kind`` has cleared there (the detector's own re-arm level), else None."""
        prep = result.prep
        if prep is None or len(prep) == 0:
            return None
        i = len(prep) - 1
        step = int(prep.steps[i])
        if step <= opened.step or any(a.kind == kind and a.step == step for a in result.alerts):
            return None
        level = float(prep.smooth[i])
        rearm = rearm_level(prep, self.config, kind, i)
        if not (np.isfinite(level) and np.isfinite(rearm)):
            return None
        if kind == "collapse":
            recent = [f for _, f in sorted(result.forecasts.items())][-2:]
            quiet = all(not getattr(f, "positive", False) for f in recent)
            return step if level > rearm and quiet else None
        return step if level < rearm else None

    def _summary(self, result: AnalysisResult, kind: str, opened: Alert, step: int) -> str:
        prep = result.prep
        now = fmt_nats(float(prep.smooth[-1])) if prep is not None else "?"
        if kind == "collapse":
            floor = fmt_nats(float(prep.floor[-1])) if prep is not None else "?"
            where = f"entropy is back above the floor ({now} nats vs floor {floor})"
        else:
            where = f"entropy is back down to {now} nats"
        return f"{where} at step {step}; the {opened.severity} {kind} alert from step {opened.step} has cleared"
