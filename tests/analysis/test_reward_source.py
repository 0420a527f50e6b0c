"""The reward the analysis reads is the training reward mean, whichever way the run arrives: a run built from arrays
that also carries a sparse evaluation (eval/pass@1) is judged as the same run read back from the store, which keeps
no eval/* series for analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.analysis.series import reward_name
from entropy_watch.store import RunWriter, Store
from entropy_watch.synthetic import generate


@pytest.mark.parametrize("kind", ["steady_collapse", "solved", "healthy"])
def test_arrays_with_an_evaluation_read_as_the_stored_run(tmp_path: Path, kind: str) -> None:
    sr = generate(kind, seed=3, n_steps=120)
    evals = (sr.steps[::40], np.linspace(0.2, 0.2, sr.steps[::40].size))  # a flat evaluation every 40 steps
    w = RunWriter(tmp_path, "r")
    n = sr.steps.size
    w.write("scalars", {"step": np.r_[sr.steps, sr.steps, evals[0]],
                        "name": [M.ENTROPY_MEAN] * n + [M.REWARD_MEAN] * n + [M.pass_at_k(1)] * evals[0].size,
                        "value": np.r_[sr.entropy, sr.reward, evals[1]]})  # fmt: skip
    w.close()
    stored = RunSeries.from_reader(Store(tmp_path), "r")
    arrays = RunSeries.from_arrays("r", sr.steps, sr.entropy, reward=sr.reward)
    arrays.scalars[M.pass_at_k(1)] = evals

    assert reward_name(arrays.scalars) == reward_name(stored.scalars) == M.REWARD_MEAN
    np.testing.assert_array_equal(arrays.reward(), stored.reward())
    a, b = analyze(arrays).verdict, analyze(stored).verdict
    assert (a.health, a.kind, a.headline) == (b.health, b.kind, b.headline)
    assert [x.key for x in a.alerts] == [x.key for x in b.alerts]


def test_no_training_reward_reads_none() -> None:
    s = RunSeries.from_arrays("r", np.arange(5), np.ones(5))
    s.scalars[M.pass_at_k(1)] = (np.arange(5), np.ones(5))
    assert reward_name(s.scalars) is None and s.reward() is None


def test_the_report_draws_the_reward_the_analysis_read(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    from entropy_watch.report import build_report

    sr = generate("steady_collapse", seed=3, n_steps=120)
    series = RunSeries.from_arrays("r", sr.steps, sr.entropy, reward=sr.reward)
    series.scalars[M.pass_at_k(1)] = (sr.steps[::40], np.full(sr.steps[::40].size, 0.2))
    doc = build_report(series, analyze(series), tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Reward (reward\\u002fmean)" in doc and "Reward (eval\\u002fpass@1)" not in doc  # in Plotly's JSON
