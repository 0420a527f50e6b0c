"""L5 alert policy: persistence, context, cooldown (DETECTION §B.5).

* persistence — the forecast warns only when k of its last n evaluations were positive (:func:`persistent`);
  the level rules hold their condition for a few points and latch with hysteresis (guards.py, collapse.py);
* context — L4 flags are attached to every collapse alert as evidence and named in its message; they never change
  its severity (critical means "floor reached or imminent", nothing else). A collapse on a solved task (reward
  saturated) becomes an info-level ``saturation`` note (:func:`apply_context`);
* cooldown — at most one info note per detector within ``cooldown_points`` (:func:`cooldown`); warnings and
  critical alerts latch in their detectors instead. Evidence is kept on every alert that survives.

All functions are pure and process alerts in step order, so a prefix gives the prefix's alerts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from entropy_watch.analysis.alert import ACTIONS, Alert, severity_rank

CORROBORATING = (
    "reward_plateau",
    "law_headroom_low",
    "hist_drift",
    "pg_drive_positive",
    "zero_variance_groups",
    "clip_high_dominates",
)
"""L4 flags that corroborate a collapse (named in its message, never raising its severity)."""
SAID = {
    "reward_plateau": "a reward plateau",
    "law_headroom_low": "little reward left to gain from spending entropy (the R = -a·exp(H) + b fit's ceiling)",
    "hist_drift": "the token entropies drifting low (histogram)",
    "pg_drive_positive": "a log-prob/advantage covariance that keeps driving entropy down",
    "zero_variance_groups": "many groups whose samples all got one reward",
    "clip_high_dominates": "the high-side clip binding more than the low",
}
"""How each flag reads in a message (the flag names are the evidence's keys)."""


def persistent(flags: list[bool], k: int, n: int) -> bool:
    """True when at least ``k`` of the last ``n`` flags are True and the newest one is."""
    return bool(flags and flags[-1] and sum(flags[-n:]) >= k)


def apply_context(alert: Alert, fl: dict[str, Any]) -> Alert:
    """A collapse alert with the L4 flags attached and the corroborating ones named; on a solved task, an info
    ``saturation`` note instead (a new alert: alerts are immutable)."""
    if alert.kind != "collapse":
        return alert
    evidence = {**alert.evidence, "corroboration": fl}
    if fl.get("reward_saturated") is True:
        return replace(
            alert,
            kind="saturation",
            severity="info",
            detector=alert.detector + "+saturation",
            message=alert.message + f"; reward is saturated ({fl.get('reward_recent', float('nan')):.2f}): the task "
            "looks solved, so this is benign convergence",
            evidence=evidence,
            actions=list(ACTIONS["saturation"]),
        )
    seen = [k for k in CORROBORATING if fl.get(k) is True]
    if not seen:
        return replace(alert, evidence=evidence)
    return replace(
        alert,
        evidence={**evidence, "corroborated_by": seen},
        message=alert.message + "; corroborated by " + ", ".join(SAID[k] for k in seen),
    )


def cooldown(alerts: list[Alert], steps: np.ndarray, points: int) -> list[Alert]:
    """Drop an info note when the same detector noted something within ``points`` points before. ``steps`` (n,)
    maps logged steps to point indices. Warnings and critical alerts pass (their detectors latch)."""
    kept: list[Alert] = []
    last: dict[str, int] = {}
    for a in sorted(alerts, key=_order):
        if a.severity != "info":
            kept.append(a)
            continue
        key = a.detector.split("+")[0]
        v = int(np.searchsorted(steps, a.step))
        if key in last and v - last[key] < points:
            continue
        last[key] = v
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
