"""L5 alert policy: persistence, corroboration-based severity, saturation, cooldown (DETECTION §B.5).

* persistence — the forecast warns only when k of its last n evaluations were positive (:func:`persistent`);
  the guards hold their condition for k versions and latch with hysteresis (guards.py);
* severity — a collapse warning with corroborating L4 flags becomes critical; a collapse on a solved task
  (reward saturated) becomes an info-level ``saturation`` note (:func:`apply_context`);
* cooldown — at most one alert per (detector, kind) within ``cooldown_versions`` unless its severity rises
  (:func:`cooldown`). Evidence is kept on every alert that survives.

All functions are pure and process alerts in step order, so a prefix gives the prefix's alerts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from entropy_watch.analysis.alert import ACTIONS, Alert, severity_rank


def persistent(flags: list[bool], k: int, n: int) -> bool:
    """True when at least ``k`` of the last ``n`` flags are True and the newest one is."""
    return bool(flags and flags[-1] and sum(flags[-n:]) >= k)


def apply_context(
    alert: Alert, fl: dict[str, Any], escalate: list[str], *, collapse_kinds: tuple[str, ...] = ("collapse",)
) -> Alert:
    """Attach L4 flags to a collapse alert; escalate it, or turn it into a saturation note on a solved task."""
    if alert.kind not in collapse_kinds:
        return alert
    alert.evidence["corroboration"] = fl
    if fl.get("reward_saturated") is True:
        alert.kind = "saturation"
        alert.severity = "info"
        alert.detector = alert.detector + "+saturation"
        alert.message = (
            alert.message + f"; reward is saturated ({fl.get('reward_recent', float('nan')):.2f}): the task looks "
            "solved, so this is benign convergence"
        )
        alert.actions = list(ACTIONS["saturation"])
        return alert
    if escalate:
        alert.evidence["escalated_by"] = escalate
        if alert.severity == "warning":
            alert.severity = "critical"
        alert.message = alert.message + "; corroborated by " + ", ".join(e.replace("_", " ") for e in escalate)
    return alert


def cooldown(alerts: list[Alert], steps: np.ndarray, versions: int) -> list[Alert]:
    """Drop an alert when the same (detector, kind) fired within ``versions`` versions before at the same or a
    higher severity. ``steps`` (n,) maps logged steps to version indices."""
    kept: list[Alert] = []
    last: dict[tuple[str, str], tuple[int, int]] = {}
    for a in sorted(alerts, key=_order):
        key = (a.detector.split("+")[0], a.kind)
        v = int(np.searchsorted(steps, a.step))
        prev = last.get(key)
        if prev is not None and v - prev[0] < versions and a.rank <= prev[1]:
            continue
        last[key] = (v, a.rank)
        kept.append(a)
    return kept


def _order(a: Alert) -> tuple[int, int, str]:
    return (a.step, -severity_rank(a.severity), a.detector)


def filter_alerts(
    alerts: list[Alert],
    *,
    since: int | None = None,
    min_severity: str = "info",
    pred: Callable[[Alert], bool] | None = None,
) -> list[Alert]:
    """Alerts at or after ``since`` with at least ``min_severity`` (and ``pred`` if given)."""
    r = severity_rank(min_severity)
    return [a for a in alerts if (since is None or a.step >= since) and a.rank >= r and (pred is None or pred(a))]
