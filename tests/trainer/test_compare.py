"""``entropy-watch compare`` end to end on a shrunken budget, and the probe's level-crossing rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from entropy_watch.trainer.compare import format_table, steps_to_level


def test_steps_to_level() -> None:
    r = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert steps_to_level(r, 0.5, window=2) == 4  # mean(0.4, 0.6) = 0.5 after 4 iterations
    assert steps_to_level(r, 0.5, window=1) == 4
    assert steps_to_level(r, 0.95, window=3) is None
    assert steps_to_level([1.0], 0.5, window=10) == 1  # shorter than the window: the whole history


def test_compare_command_writes_runs_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from entropy_watch.cli import main
    from entropy_watch.store import Store

    try:
        main(["--store", str(tmp_path), "compare", "--algos", "grpo,repo-r", "--seed", "3", "--steps", "2",
              "--sft-steps", "10", "--probe-steps", "2", "--jobs", "1",
              "--epochs", "1", "--minibatches", "4"])  # fmt: skip
    except SystemExit as e:  # main() exits only on errors
        pytest.fail(f"compare exited with {e.code}")
    out = capsys.readouterr().out
    assert "H_end/H0" in out and "repo-r" in out and "grpo@bf16-naive" in out and "clip-high" in out
    names = {r.name for r in Store(tmp_path).runs()}
    assert {"sft-s3", "grpo-s3", "repo-r-s3", "grpo-s3.probe-b", "repo-r-s3.probe-b"} <= names
    rl = Store(tmp_path).run_meta("repo-r-s3")["config"]["rl"]
    assert (rl["epochs"], rl["minibatches"]) == (1, 4)  # the overrides reach every task-A run, the precision study too
    assert Store(tmp_path).run_meta("grpo@bf16-naive-s3")["config"]["rl"]["epochs"] == 1
    result = json.loads((tmp_path / "_compare-tiny.json").read_text())
    assert [r["algo"] for r in result["rows"]] == ["grpo", "repo-r"]
    assert all(r["h_ratio"] is not None and r["h_ratio"] > 0 for r in result["rows"])
    prec = result["precision"]
    assert [r["algo"] for r in prec["rows"]] == ["grpo@fp32", "grpo@bf16-fp32head", "grpo@bf16-naive"]
    assert prec["rows"][0]["h_ratio"] == result["rows"][0]["h_ratio"]  # the fp32 row is the grpo run itself
    naive, fp32 = prec["summary"]["grpo@bf16-naive"], prec["summary"]["grpo@fp32"]
    assert abs(naive["logp_gap"][0]) > 1e-4 > abs(fp32["logp_gap"][0])  # the bf16 log-softmax gap, none in fp32
    assert names >= {"grpo@bf16-naive-s3", "grpo@bf16-fp32head-s3"}
    assert format_table(result).row_count == 2 and format_table(result, "precision").row_count == 3
    assert not math.isnan(result["summary"]["grpo"]["pass1"][0])


def test_compare_checks_its_rl_overrides_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from entropy_watch.cli import main

    with pytest.raises(SystemExit) as e:  # 8 prompts x 8 samples do not split into 7 mini-batches
        main(["--store", str(tmp_path), "compare", "--algos", "grpo", "--minibatches", "7", "--steps", "1"])
    assert e.value.code == 2 and "'--minibatches'" in capsys.readouterr().err  # a usage error naming the flag
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
    with pytest.raises(SystemExit) as e:
        main(["--store", str(tmp_path), "compare", "--epochs", "0"])
    assert e.value.code == 2  # the CLI framework's usage error
