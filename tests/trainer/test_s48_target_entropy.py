"""A REPO/ADAPO target entropy the policy can never reach (at or above ln V, the entropy of the uniform policy over
the vocabulary; a number in bits, say) is refused before the SFT warm-up, with nothing written to the store; a target
of 0 nats is refused at construction like ``ControlConfig(target=0)``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from entropy_watch.errors import ConfigError
from entropy_watch.store import Store
from entropy_watch.trainer.config import AlgoConfig
from entropy_watch.trainer.loop import train
from entropy_watch.trainer.sft import run_sft
from entropy_watch.trainer.tokenizer import build_tokenizer

from .conftest import small_config


def test_a_target_of_zero_nats_is_refused() -> None:
    with pytest.raises(ConfigError, match="target_entropy=0"):
        AlgoConfig(target_entropy=0.0)


def test_a_target_at_or_above_ln_v_is_refused_before_any_training(tmp_path: Path, monkeypatch) -> None:
    cfg = small_config("repo-r", run="bits", iterations=2)
    log_v = math.log(len(build_tokenizer(cfg.task.scripts, cfg.task.plus_signs)))
    cfg.algo_cfg.target_entropy = log_v  # the uniform policy's entropy: reached only by a policy that learnt nothing
    trained: list[int] = []
    monkeypatch.setattr("entropy_watch.trainer.loop.run_sft", lambda *a, **k: trained.append(1) or run_sft(*a, **k))
    with pytest.raises(ConfigError, match=r"at or above ln V = .*\(V = \d+\)"):
        train(cfg, store=tmp_path)
    assert trained == [] and Store(tmp_path).runs() == []
