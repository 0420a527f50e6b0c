"""Tasks, tokenizer, pass@k and the config validation."""

from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.trainer.config import (
    AlgoConfig,
    ConfigError,
    ModelConfig,
    RLConfig,
    TaskConfig,
    algo_config,
    preset,
)
from entropy_watch.trainer.evaluate import pass_at_k
from entropy_watch.trainer.tasks import (
    ASCII,
    TASKS,
    Surface,
    canonical,
    distinct_correct,
    get_task,
    script_weights,
    sft_examples,
)
from entropy_watch.trainer.tokenizer import NUMERAL_SCRIPTS, PLUS_SIGNS, build_tokenizer, load_tokenizer, script_digits


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


def test_numerals_in_other_scripts_are_synonyms() -> None:
    a = TASKS["sum3"]
    for k in range(len(NUMERAL_SCRIPTS)):  # every script's digits are 0-9 in order, read by the reward
        digits = script_digits(k)
        assert a.reward(13, f"{digits[4]}+{digits[5]}+{digits[4]}") == 1.0
        assert a.reward(13, f"{digits[4]}+{digits[5]}+{digits[5]}") == 0.0
    assert script_digits(1) == "０１２３４５６７８９" and script_digits(4) == "०१२३४५६७८९"
    assert a.reward(13, "٤＋5⊕४") == 1.0  # scripts and plus signs mix freely within one answer
    assert canonical("٤ ＋ 5⊕४") == "4+5+4"
    # distinct answers are counted by value: the same triple in three spellings is one answer
    assert distinct_correct(a, 13, ["4+5+4", "٤+٥+٤", "４+５+４", "4+4+5"]) == 2


def test_sft_examples_write_digits_with_a_zipf_long_tail() -> None:
    a = TASKS["sum3"]
    w = script_weights(16, 2.5)
    assert w.sum() == pytest.approx(1.0) and w[0] / w[1] == pytest.approx(2**2.5)
    assert w[-1] == pytest.approx(w[0] / 16**2.5)
    surface = Surface(scripts=16, zipf=2.5)
    rng = np.random.default_rng(0)
    pairs = sft_examples(a, rng, 4000, surface)
    assert all(a.reward(int(p[2:4]), ans) == 1.0 for p, ans in pairs)
    assert pairs == sft_examples(a, np.random.default_rng(0), 4000, surface)  # seeded
    tables = [script_digits(k) for k in range(16)]
    counts = np.zeros(16)
    for _, ans in pairs:
        for c in ans[::2]:  # the three digits
            counts[next(k for k, t in enumerate(tables) if c in t)] += 1
    freq = counts / counts.sum()  # 12,000 draws: each frequency within 5 standard errors of its weight
    assert np.all(np.abs(freq - w) <= 5 * np.sqrt(w * (1 - w) / counts.sum())), (freq, w)
    # the plain surface draws nothing more: the examples are those of the 15-token vocabulary, unchanged
    assert sft_examples(a, np.random.default_rng(1), 50) == sft_examples(a, np.random.default_rng(1), 50, ASCII)
    assert all(ans.isascii() for _, ans in sft_examples(a, np.random.default_rng(1), 50))
    signs = sft_examples(a, np.random.default_rng(2), 500, Surface(plus_signs=4, zipf=1.0))
    assert {ans[1] for _, ans in signs} | {ans[3] for _, ans in signs} == set(PLUS_SIGNS[:4])


def test_an_ascii_tokenizer_refuses_a_long_tailed_warm_up() -> None:
    from entropy_watch.trainer.config import SFTConfig
    from entropy_watch.trainer.sft import run_sft

    with pytest.raises(ConfigError, match="--scripts 1"):  # before any step: the model is never touched
        run_sft(None, build_tokenizer(), TASKS["sum3"], SFTConfig(), seed=0, surface=Surface(scripts=16))  # type: ignore[arg-type]


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
    # more scripts append ten ids each after the 15, so the ASCII ids never move; one token per character
    wide = build_tokenizer(scripts=16, plus_signs=3)
    assert len(wide) == 15 + 15 * 10 + 2 and wide("S=13>4+5+4", add_special_tokens=False)["input_ids"] == ids
    text = "S=13>٤＋5﹢४"
    wide_ids = wide(text, add_special_tokens=False)["input_ids"]
    assert len(wide_ids) == len(text) and wide.decode(wide_ids, skip_special_tokens=True) == text
    assert wide_ids[5] == 15 + 10 * (NUMERAL_SCRIPTS.index(("arabic-indic", 0x660)) - 1) + 4
    wide.save_pretrained(tmp_path / "wide")
    assert load_tokenizer(str(tmp_path / "wide"))(text, add_special_tokens=False)["input_ids"] == wide_ids


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
    # tiny: digits in 16 numeral scripts with a Zipf(2.5) long tail (issue 13: rare tokens as in an LLM vocabulary)
    assert (tiny.task.scripts, tiny.task.plus_signs, tiny.task.zipf) == (16, 1, 2.5)
    assert tiny.task.surface() == Surface(16, 1, 2.5)
    with pytest.raises(ConfigError, match="scripts"):
        TaskConfig(scripts=len(NUMERAL_SCRIPTS) + 1)
    assert preset("tiny", "grpo").algo_cfg == AlgoConfig()  # GRPO is the defaults
    assert preset("tiny", "adapo").algo_cfg.eps_high == 0.28
    assert preset("gpu", "grpo").model.precision == "bf16-fp32head"
    with pytest.raises(ConfigError):
        preset("huge")
