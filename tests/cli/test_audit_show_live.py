"""`show` of a run still being written: one read, one story. Rows a live writer publishes while `show` reads must
not make its header's "last step" older than the steps of the metrics and the verdict printed under it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from entropy_watch import metrics as M
from entropy_watch.cli import app
from entropy_watch.store import RunWriter, Store


def _rows(lo: int, hi: int) -> dict[str, list[Any]]:
    steps = list(range(lo, hi))
    return {
        "step": steps * 2,
        "name": [M.ENTROPY_MEAN] * len(steps) + [M.REWARD_MEAN] * len(steps),
        "value": [1.2 - 0.01 * s for s in steps] + [0.3] * len(steps),
    }


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A running run at step 29 whose writer publishes steps 30-39 while `show` reads the run's metrics (its next
    heartbeat not yet written: rows are published every `flush_secs`, heartbeats less often)."""
    root = tmp_path / "store"
    w = RunWriter(root, "live")
    w.write("scalars", _rows(0, 30))
    w.heartbeat(29)
    real_ends = Store.ends
    pending = [True]

    def ends(self: Store, run: str, names: Any) -> Any:
        if pending:  # the training goes on between two of show's reads
            pending.clear()
            w.write("scalars", _rows(30, 40))
        return real_ends(self, run, names)

    monkeypatch.setattr(Store, "ends", ends)
    return root


def test_show_json_last_step_not_behind_its_metrics(live: Path) -> None:
    got = json.loads(CliRunner().invoke(app, ["--store", str(live), "show", "live", "--json"]).stdout)
    newest = max(step for _, step in got["metrics"].values())
    assert got["state"] == "running"
    assert got["last_step"] >= newest == 39
    assert got["last_step"] >= got["verdict"]["step"]


def test_show_header_last_step_not_behind_its_metrics(live: Path) -> None:
    out = CliRunner().invoke(app, ["--store", str(live), "show", "live"], env={"COLUMNS": "200"}).stdout
    header = out.splitlines()[0]
    assert header.startswith("live (running, last step 39;"), out
    assert "│      39 │" in out, out  # the metrics' step, under it
