"""The step column is the step name most rows carry: one stray line with a ``step`` field in a log whose steps are
``step_inferred`` (or ``global_step``) no longer leaves every other row without a step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.importers import load_log


def _log(path: Path, stray: bool) -> Path:
    lines = [
        json.dumps({"step_inferred": i, "entropy": 1.0 - 0.01 * i, "reward": 0.1 * (i % 5)}) for i in range(0, 50, 5)
    ]
    if stray:
        lines.insert(5, json.dumps({"step": 1, "junk": "y"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_stray_step_field_does_not_choose_the_step_column(tmp_path: Path) -> None:
    clean = load_log(_log(tmp_path / "clean.jsonl", stray=False))[0]
    damaged = load_log(_log(tmp_path / "damaged.jsonl", stray=True))[0]
    s0, h0 = clean.scalars[M.ENTROPY_MEAN]
    s1, h1 = damaged.scalars[M.ENTROPY_MEAN]
    np.testing.assert_array_equal(s0, s1)
    np.testing.assert_array_equal(h0, h1)
    assert s0.tolist() == list(range(0, 50, 5))


def test_a_trainer_step_on_half_the_log_calls_is_kept_over_wandbs_counter(tmp_path: Path) -> None:
    """A W&B history where every training log call is followed by an evaluation call: ``_step`` (W&B's call counter)
    is on every row, ``train/global_step`` on half; the steps are the trainer's."""
    p = tmp_path / "history.jsonl"
    with p.open("w") as fh:
        for k in range(60):
            fh.write(json.dumps({"_step": 2 * k, "train/global_step": 10 * (k + 1), "train/entropy": 1.0 - k / 100}))
            fh.write("\n" + json.dumps({"_step": 2 * k + 1, "eval/loss": 0.5}) + "\n")
    run = load_log(p)[0]
    steps, _ = run.scalars[M.ENTROPY_MEAN]
    assert steps.tolist() == [10 * (k + 1) for k in range(60)]
