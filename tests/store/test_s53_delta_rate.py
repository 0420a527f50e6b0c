"""The app's observed ΔH is a change per step (its axis says "nats/token per step", as the predicted ΔH is): on a
log every 5 steps, TRL's default cadence, it was the change per logged interval, five times the rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter, Store, TailReader


def test_observed_change_is_per_step_whatever_the_logging_cadence(tmp_path: Path) -> None:
    steps = np.array([5, 10, 15, 20, 30, 31])  # every 5 steps, then a gap of 10 and of 1
    h = np.array([0.2, 0.25, 1.5, 4.6, 5.6, 5.0])
    w = RunWriter(tmp_path, "r")
    w.write("scalars", {"step": steps.tolist(), "name": [M.ENTROPY_MEAN] * 6, "value": h.tolist()})
    w.close()
    tail = TailReader(tmp_path)
    tail.poll()
    for reader in (Store(tmp_path), tail):
        d = reader.delta("r", M.ENTROPY_MEAN)
        assert d is not None and d.steps.tolist() == steps[:-1].tolist()
        np.testing.assert_allclose(d.mean, np.diff(h) / np.diff(steps))  # 0.62 nats/step from 15 to 20, not 3.1
