"""Runs whose entropy no real trainer should log, written to a store as a hook or an import would: the app renders
every page and tab of each with the verdict's headline, never an exception."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter

from .test_pages import all_tabs, app, metric, texts, verdict

EDGE_RUNS = {
    "placeholder-zeros": np.zeros(30),  # a logger's 0.0 before the entropy is computed: nothing measured
    "leading-zeros": np.r_[np.zeros(3), np.full(27, 0.5)],  # crashed the analysis (H_ref 0) before
    "all-nan": np.full(20, np.nan),
    "corrupt-cells": np.r_[np.full(15, 0.5), np.full(5, 1e300), np.full(10, 0.5)],
}


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edge")
    for name, h in EDGE_RUNS.items():
        w = RunWriter(root, name)
        w.update_run_meta(framework="tests")
        n = h.size
        w.write(
            "scalars",
            {
                "step": [*range(n), *range(n)],
                "name": [M.ENTROPY_MEAN] * n + [M.REWARD_MEAN] * n,
                "value": [float(x) for x in h] + [0.5] * n,
            },
        )
        w.heartbeat(step=n - 1)
        w.close()
    return root


@pytest.mark.parametrize("run", list(EDGE_RUNS))
def test_edge_runs_render_their_verdict_on_every_tab(
    monkeypatch: pytest.MonkeyPatch, edge_store: Path, run: str
) -> None:
    at = app(monkeypatch, edge_store, "views/run.py", {"run": run})  # asserts no exception
    v = verdict(edge_store, run)
    assert v.headline in texts(at, "error", "warning", "info", "success")
    assert metric(at, "health") == v.health
    all_tabs(at)  # asserts no exception on each
    if run == "placeholder-zeros":
        assert v.health == "too-short" and "0 measured points" in v.headline
    if run == "leading-zeros":
        assert v.health == "ok" and v.reference.value == 0.5
    if run == "corrupt-cells":
        assert any("1e+300 nats" in a.message and len(a.message) < 200 for a in v.alerts)
