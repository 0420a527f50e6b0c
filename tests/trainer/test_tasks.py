"""Tasks, tokenizer, pass@k and the config validation."""

from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.trainer.config import AlgoConfig, ConfigError, ModelConfig, RLConfig, algo_config, preset
from entropy_watch.trainer.evaluate import pass_at_k
from entropy_watch.trainer.tasks import TASKS, distinct_correct, get_task, sft_examples
from entropy_watch.trainer.tokenizer import build_tokenizer, load_tokenizer


def test_sum3_answers_and_rewards() -> None:
    a = TASKS["sum3"]
    assert len(a.correct_answers(13)) == 75 and len(a.correct_answers(0)) == 1 and len(a.correct_answers(27)) == 1
    assert sum(len(a.correct_answers(s)) for s in range(28)) == 1000  # every digit triple once
    assert a.prompt(7) == "S=07>"
    assert a.reward(13, "4+5+4") == 1.0 and a.reward(13, "4+5+5") == 0.0
    assert a.reward(13, "4+5") == 0.0 and a.reward(13, "4+5+4+0") == 0.0 and a.reward(13, "") == 0.0


def test_sum3sorted_is_the_non_decreasing_subset() -> None:
    b = TASKS["sum3sorted"]
    assert b.reward(13, "1+3+9") == 1.0 and b.reward(13, "9+3+1") == 0.0
    assert len(b.correct_answers(13)) == 15
    assert set(b.correct_answers(13)) <= set(TASKS["sum3"].correct_answers(13))
    with pytest.raises(ConfigError):
        get_task("nope")


def test_distinct_correct_and_sft_examples() -> None:
    a = TASKS["sum3"]
    assert distinct_correct(a, 3, ["1+1+1", "1+1+1", "0+0+3", "9+9+9", "0+1+2"]) == 3
    pairs = sft_examples(a, np.random.default_rng(0), 200)
    assert all(a.reward(int(p[2:4]), ans) == 1.0 for p, ans in pairs)
    assert pairs == sft_examples(a, np.random.default_rng(0), 200)  # seeded


def test_pass_at_k_unbiased_estimator() -> None:
    assert pass_at_k(16, 0, 8) == 0.0 and pass_at_k(16, 16, 1) == 1.0
    assert pass_at_k(16, 4, 1) == pytest.approx(4 / 16)
    assert pass_at_k(16, 4, 8) == pytest.approx(1 - comb(12, 8) / comb(16, 8))
    assert pass_at_k(4, 1, 4) == 1.0  # n - c < k
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_tokenizer_round_trip(tmp_path: Path) -> None:
    tok = build_tokenizer()
    assert len(tok) == 15 and tok.eos_token_id == 0 and tok.pad_token_id == 0
    ids = tok("S=13>4+5+4", add_special_tokens=False)["input_ids"]
    assert len(ids) == 10 and tok.decode(ids + [0], skip_special_tokens=True) == "S=13>4+5+4"
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(str(tmp_path))
    assert again("S=13>4+5+4", add_special_tokens=False)["input_ids"] == ids


def test_config_validation_and_presets() -> None:
    with pytest.raises(ConfigError, match="precision"):
        ModelConfig(precision="fp8")
    with pytest.raises(ConfigError, match="unknown algorithm"):
        algo_config("ppo-magic")
    with pytest.raises(ConfigError, match="minibatches"):
        RLConfig(prompts=3, group_size=3, minibatches=2)
    with pytest.raises(ConfigError, match="zeta"):
        AlgoConfig(controller="zeta")
    tiny = preset("tiny", "repo-r", seed=3)
    assert tiny.run == "repo-r-s3" and tiny.algo_cfg.zeta_max == 0.25 and tiny.algo_cfg.repo == "r"
    assert preset("tiny", "grpo").algo_cfg == AlgoConfig()  # GRPO is the defaults
    assert preset("tiny", "adapo").algo_cfg.eps_high == 0.28
    assert preset("gpu", "grpo").model.precision == "bf16-fp32head"
    with pytest.raises(ConfigError):
        preset("huge")
