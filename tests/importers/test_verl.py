"""verl JSONL file logger and console lines, including old verl's actor/entropy_loss."""

from __future__ import annotations

import json
import math

import pytest

from entropy_watch import metrics as M
from entropy_watch.importers import detect_format, load_log


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
    return path


def test_verl_jsonl(tmp_path) -> None:
    rows = [
        {
            "step": s,
            "data": {
                "actor/entropy": 0.5 - 0.01 * s,
                "actor/entropy_loss": 0.49 - 0.01 * s,
                "actor/pg_clipfrac": 0.02,
                "actor/pg_clipfrac_lower": 0.001,
                "actor/ppo_kl": 1e-4,
                "critic/score/mean": 0.1 * s,
                "critic/advantages/mean": 0.0,
                "critic/advantages/max": 2.0,
                "critic/advantages/min": -2.0,
                "response_length/mean": 200.0,
                "response_length/clip_ratio": 0.05,
                "timing_s/gen": 3.2,
            },
        }
        for s in range(1, 6)
    ]
    rows[2]["data"]["actor/entropy"] = None  # verl writes NaN/inf as null
    rows[4]["data"]["val-core/openai/gsm8k/reward/mean@1"] = 0.6
    path = _jsonl(tmp_path / "exp1.jsonl", rows)
    assert detect_format(path) == "verl-jsonl"
    (run,) = load_log(path)
    assert run.fmt == "verl-jsonl" and run.name == "exp1" and run.meta["framework"] == "verl"
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert run.mapping[M.ENTROPY_MEAN] == "actor/entropy"  # pi_old preferred over the update-time entropy_loss
    assert steps.tolist() == [1, 2, 3, 4, 5] and math.isnan(ent[2])
    assert "pi_old" in run.meta["entropy_definition"]
    assert run.mapping[M.REWARD_MEAN] == "critic/score/mean"  # training reward beats the validation one
    assert run.mapping[M.CLIP_REGION_FRAC] == "actor/pg_clipfrac"
    # pg_clipfrac_lower is the dual clip under verl's vanilla loss only, which the log does not name: kept as verl's
    assert M.CLIP_DUAL_FRAC not in run.mapping and "actor/pg_clipfrac_lower" in run.scalars
    assert M.CLIP_LOW_FRAC not in run.mapping  # never the low side
    assert run.mapping[M.ADV_MAX] == "critic/advantages/max" and run.mapping[M.KL_OLD] == "actor/ppo_kl"
    assert run.mapping[M.LENGTH_TRUNC_FRAC] == "response_length/clip_ratio"


def test_old_verl_entropy_loss_means_entropy(tmp_path) -> None:
    path = _jsonl(tmp_path / "old.jsonl", [{"step": s, "data": {"actor/entropy_loss": 1.0 / s}} for s in (1, 2, 3)])
    (run,) = load_log(path)
    assert run.mapping[M.ENTROPY_MEAN] == "actor/entropy_loss"
    assert run.series(M.ENTROPY_MEAN)[1].tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert "policy during update" in run.meta["entropy_definition"]


def test_verl_console_lines(tmp_path) -> None:
    lines = [
        "2025-01-01 12:00:00,000 INFO ray started",
        "(TaskRunner pid=1234) step:1 - actor/entropy:0.812 - critic/score/mean:0.1 - timing_s/step:12.5",
        "(TaskRunner pid=1234) Training Progress:  1%|          | 1/100",
        "(TaskRunner pid=1234) step:2 - actor/entropy:np.float64(0.75) - critic/score/mean:0.2 - timing_s/step:12.1",
        "step:3 - actor/entropy:0.70 - critic/score/mean:nan - val-core/gsm8k/reward/mean@1:0.55",
    ]
    path = tmp_path / "verl_stdout.log"
    path.write_text("\n".join(lines) + "\n")
    assert detect_format(path) == "verl-console"
    (run,) = load_log(path)
    assert run.fmt == "verl-console" and run.name == "verl_stdout"
    assert run.series(M.ENTROPY_MEAN)[1].tolist() == pytest.approx([0.812, 0.75, 0.70])
    assert math.isnan(run.series(M.REWARD_MEAN)[1][2])
    assert run.series("timing_s/step")[0].tolist() == [1, 2]
    assert run.series("val-core/gsm8k/reward/mean@1")[0].tolist() == [3]
    assert any("2 console line(s)" in n for n in run.notes)
