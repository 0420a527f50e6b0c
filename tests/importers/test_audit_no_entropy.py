"""A trainer's log without entropy: the error says which setting of that trainer logs it (INTEGRATIONS, update
2026-12: "say so in the docs and in the error when a verl run has no entropy"), not only ``--map``, which cannot
help when the column is not there."""

from __future__ import annotations

import json

import pytest

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import load_log


def _jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_verl_log_without_entropy_names_calculate_entropy(tmp_path) -> None:
    path = tmp_path / "verl.jsonl"
    data = {"actor/pg_loss": -0.01, "actor/pg_clipfrac": 0.002, "critic/score/mean": 0.4}
    _jsonl(path, [{"step": s, "data": data} for s in range(1, 11)])
    with pytest.raises(ImportFormatError, match=r"--map entropy=COLUMN, or for the next run: verl .*calculate_entropy"):
        load_log(path)


def test_verl_console_without_entropy_names_calculate_entropy(tmp_path) -> None:
    path = tmp_path / "verl.log"
    path.write_text("".join(f"(TaskRunner pid=7) step:{s} - actor/pg_loss:-0.01 - critic/score/mean:0.4\n"
                            for s in range(1, 11)))  # fmt: skip
    with pytest.raises(ImportFormatError, match="calculate_entropy"):
        load_log(path)


def test_openrlhf_log_without_entropy_names_entropy_coef(tmp_path) -> None:
    path = tmp_path / "openrlhf-history.jsonl"  # a W&B history of an OpenRLHF run: train/<key>
    _jsonl(path, [{"train/policy_loss": 0.1, "train/reward": 0.3, "train/ppo_clip_ratio": 0.01,
                   "train/global_step": s} for s in range(1, 11)])  # fmt: skip
    with pytest.raises(ImportFormatError, match=r"OpenRLHF .*--actor\.entropy_coef"):
        load_log(path)


def test_trl_state_before_0_20_says_trl_logs_no_entropy(tmp_path, logs) -> None:
    history = [{"loss": 0.0, "reward": 0.3, "reward_std": 0.2, "kl": 0.001, "completion_length": 180.0,
                "rewards/accuracy_reward": 0.3, "epoch": s / 100, "step": s} for s in range(10, 110, 10)]  # fmt: skip
    logs.write_trainer_state(tmp_path / "out", history, 100)
    with pytest.raises(ImportFormatError, match="TRL 0.20"):
        load_log(tmp_path / "out")


def test_a_log_of_no_known_trainer_gets_no_trainer_hint(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("step,reward,loss\n1,0.1,2\n2,0.2,1\n")
    with pytest.raises(ImportFormatError) as e:
        load_log(path)
    assert str(e.value).endswith("pass --map entropy=COLUMN")
