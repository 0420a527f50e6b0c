"""A change point every rank of a multi-GPU run logged (each applied the LR change) is one change point: ``show``,
the report and the app listed it once per rank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.analysis import RunSeries
from entropy_watch.analysis.changes import change_points, describe
from entropy_watch.store import RunWriter, Store


def test_one_change_logged_by_every_rank_is_one(tmp_path: Path) -> None:
    for rank in range(3):
        w = RunWriter(tmp_path, "rw", rank=rank)
        w.write("scalars", {"step": np.arange(10), "name": [M.ENTROPY_MEAN] * 10, "value": np.linspace(1, 0.8, 10)})
        w.write("events", {"step": [5], "kind": ["lr_change"], "payload": [json.dumps({"lr": 1e-5})]})
        w.close()
    series = RunSeries.from_reader(Store(tmp_path), "rw")
    assert [c["step"] for c in series.changes] == [5]
    assert len(describe(series.changes)) == 1


def test_different_changes_at_one_step_are_kept() -> None:
    rows = [
        {"step": 5, "kind": "lr_change", "payload": '{"lr": 1e-5}'},
        {"step": 5, "kind": "lr_change", "payload": '{"lr": 1e-5}'},
        {"step": 5, "kind": "lr_change", "payload": '{"lr": 2e-5}'},
        {"step": 5, "kind": "resume", "payload": "{}"},
    ]
    got = change_points(rows)
    assert [(c["kind"], c["payload"]) for c in got] == [
        ("lr_change", {"lr": 1e-5}),
        ("lr_change", {"lr": 2e-5}),
        ("resume", {}),
    ]
