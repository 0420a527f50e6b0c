"""W&B as users have it: a chart exported against another x axis than Step, and a run folder's summary file."""

from __future__ import annotations

import csv
import json

import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import detect_format, load_log


@pytest.mark.parametrize("axis", ["Wall Time", "Relative Time (Process)", "train/epoch"])
def test_chart_exported_against_another_x_axis_keeps_its_runs_apart(tmp_path, axis) -> None:
    """Before: read as one plain CSV, run ``export``, entropy = the first run's column, the second run dropped."""
    path = tmp_path / "export.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        header = [axis]
        for run in ("grpo-a", "grpo-b"):
            header += [f"{run} - train/entropy", f"{run} - train/entropy__MIN", f"{run} - train/entropy__MAX"]
        w.writerow(header)
        for i in range(8):
            a, b = 0.6 * 0.8**i, 0.9
            w.writerow([1733000000 + 60 * i if axis == "Wall Time" else 0.05 * i, a, a, a, b, b, b])
    assert detect_format(path) == "wandb-csv"
    runs = {r.name: r for r in load_log(path)}
    assert set(runs) == {"grpo-a", "grpo-b"}
    assert runs["grpo-b"].series(M.ENTROPY_MEAN)[1].tolist() == [0.9] * 8
    assert runs["grpo-a"].series(M.ENTROPY_MEAN)[0].tolist() == list(range(8))
    assert axis not in runs["grpo-a"].scalars  # a time or epoch axis is no metric of the run
    assert any(f"x axis is {axis!r}, not the step" in n for n in runs["grpo-a"].notes)


def test_step_axis_export_has_no_axis_note(tmp_path) -> None:
    path = tmp_path / "export.csv"
    path.write_text('"Step","grpo-a - train/entropy","grpo-b - train/entropy"\n1,0.5,0.6\n2,0.4,0.6\n3,0.3,0.6\n')
    runs = {r.name: r for r in load_log(path)}
    assert runs["grpo-a"].series(M.ENTROPY_MEAN)[0].tolist() == [1, 2, 3]
    assert not any("x axis" in n for n in runs["grpo-a"].notes)


def _summary_and_history(run_dir) -> None:
    files = run_dir / "files"
    files.mkdir(parents=True)
    rows = [{"train/entropy": 0.6 - 0.02 * i, "train/reward": 0.1 * i, "train/global_step": 10 * i, "_step": i,
             "_runtime": 30.0 * i, "_timestamp": 1.7e9 + 30 * i} for i in range(1, 11)]  # fmt: skip
    (files / "wandb-history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (files / "wandb-summary.json").write_text(json.dumps({**rows[-1], "_wandb": {"runtime": 300}}))


def test_run_summary_is_refused_and_names_the_history(tmp_path) -> None:
    """Before: ``wandb-summary.json`` imported as a run of one point (``too-short``, exit 0) without a word that the
    history is elsewhere."""
    run_dir = tmp_path / "wandb" / "run-20260101_000000-abc123"
    _summary_and_history(run_dir)
    with pytest.raises(ImportFormatError, match="W&B run summary .* import .*wandb-history.jsonl"):
        load_log(run_dir / "files" / "wandb-summary.json")
    (run_dir / "run-abc123.wandb").write_bytes(b":W&B\xe1\xbe\x00")
    with pytest.raises(ImportFormatError, match="import the run folder .*run-abc123.wandb"):
        load_log(run_dir / "files" / "wandb-summary.json")
    (run,) = load_log(run_dir / "files" / "wandb-history.jsonl")  # the history itself, read on the trainer's step
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(10, 101, 10))


def test_summary_under_another_name_is_recognised_by_its_wandb_entry(tmp_path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"train/entropy": 0.3, "_step": 99, "_wandb": {"runtime": 300}}))
    with pytest.raises(ImportFormatError, match="W&B run summary"):
        load_log(path)
