"""Follower: successive analyses of a growing run -> each alert once, and one recovery when the problem clears."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import Analyzer, RunSeries
from entropy_watch.notify import Follower


def _entropy(n: int, recover_at: int | None, seed: int = 0) -> np.ndarray:
    """1 nat for 30 steps, then an exponential fall to the floor; back at 1 nat from ``recover_at`` (if given)."""
    t = np.arange(n)
    h = np.where(t < 30, 1.0, np.maximum(np.exp(-(t - 30) / 12.0), 0.02))
    if recover_at is not None:
        h = np.where(t >= recover_at, 1.0, h)
    return h * np.exp(np.random.default_rng(seed).normal(0, 0.05, n))


def _follow(h: np.ndarray) -> tuple[list, list]:
    analyzer, follower = Analyzer(), Follower("r")
    alerts, recoveries = [], []
    for k in range(10, h.size + 1, 10):
        changes = follower.update(analyzer.analyze(RunSeries.from_arrays("r", np.arange(k), h[:k])))
        alerts += changes.alerts
        recoveries += changes.recoveries
    return alerts, recoveries


def test_each_alert_once_and_one_recovery() -> None:
    alerts, recoveries = _follow(_entropy(200, recover_at=100))
    keys = [a.key for a in alerts]
    assert len(keys) == len(set(keys))
    collapse = [a for a in alerts if a.kind == "collapse" and a.rank >= 1]
    assert collapse
    (rec,) = recoveries
    assert rec.kind == "collapse" and rec.since == collapse[0].step and rec.step >= 100
    assert rec.key == collapse[0].key and "back above the floor" in rec.summary and "cleared" in rec.summary


def test_no_recovery_while_collapsed() -> None:
    alerts, recoveries = _follow(_entropy(200, recover_at=None))
    assert any(a.kind == "collapse" for a in alerts) and recoveries == []
