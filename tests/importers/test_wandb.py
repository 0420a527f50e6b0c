"""W&B chart CSV exports: one or many runs per file, __MIN/__MAX kept as extra series."""

from __future__ import annotations

import csv

import pytest

from entropy_watch import metrics as M
from entropy_watch.importers import detect_format, load_log


def _export(path, runs: dict[str, list[tuple[int, float | None]]]) -> None:
    header = ["Step"]
    for run in runs:
        header += [f"{run} - actor/entropy", f"{run} - actor/entropy__MIN", f"{run} - actor/entropy__MAX"]
    steps = sorted({s for pts in runs.values() for s, _ in pts})
    with open(path, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)  # W&B quotes every field
        w.writerow(header)
        for s in steps:
            row: list[object] = [s]
            for pts in runs.values():
                v = dict(pts).get(s)
                row += ["", "", ""] if v is None else [v, v - 0.01, v + 0.01]
            w.writerow(row)


def test_multi_run_export(tmp_path) -> None:
    path = tmp_path / "wandb_export_2025-01-01T00_00_00.csv"
    _export(path, {"grpo seed 0": [(0, 0.5), (10, 0.4), (20, 0.3)], "repo-r/s1": [(0, 0.6), (20, 0.55)]})
    assert detect_format(path) == "wandb-csv"
    runs = {r.name: r for r in load_log(path)}
    assert set(runs) == {"grpo_seed_0", "repo-r_s1"}
    grpo = runs["grpo_seed_0"]
    assert grpo.meta["wandb_run"] == "grpo seed 0" and grpo.fmt == "wandb-csv"
    assert grpo.series(M.ENTROPY_MEAN)[0].tolist() == [0, 10, 20]
    assert runs["repo-r_s1"].series(M.ENTROPY_MEAN)[0].tolist() == [0, 20]
    assert grpo.series("actor/entropy__MIN")[1].tolist() == pytest.approx([0.49, 0.39, 0.29])
    assert grpo.mapping[M.ENTROPY_MEAN] == "actor/entropy"  # never the __MIN/__MAX series


def test_single_run_export_takes_run_option(tmp_path) -> None:
    path = tmp_path / "export.csv"
    _export(path, {"only": [(1, 0.5), (2, 0.4)]})
    assert [r.name for r in load_log(path)] == ["only"]
    assert [r.name for r in load_log(path, run="renamed")] == ["renamed"]
    assert sorted(r.name for r in load_log(tmp_path / "export.csv", run="p")) == ["p"]


def test_run_history_saved_with_pandas_has_no_index_metric(tmp_path) -> None:
    """``wandb.Api().run(...).history()`` is a DataFrame; ``.to_csv(path)`` writes its index as a first column with
    an empty name. That column is row labels, not a metric named ''."""
    pd = pytest.importorskip("pandas")
    rows = [
        {"_step": i, "_runtime": 10.0 * i, "train/global_step": 5 * i, "train/entropy": 0.9 - 0.01 * i}
        for i in range(8)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "history.csv")
    assert (tmp_path / "history.csv").read_text().startswith(",_step,")
    (run,) = load_log(tmp_path / "history.csv")
    assert "" not in run.scalars and run.mapping["step"] == "train/global_step"
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [5 * i for i in range(8)]
    assert any(n.startswith("left out the unnamed column(s) '': the index of a pandas DataFrame") for n in run.notes)
    pd.read_csv(tmp_path / "history.csv").to_csv(tmp_path / "again.csv")  # read back and saved again: "Unnamed: 0"
    (again,) = load_log(tmp_path / "again.csv")
    assert not any(name == "" or name.startswith("Unnamed") for name in again.scalars)
