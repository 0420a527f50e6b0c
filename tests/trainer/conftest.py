"""Shared fixtures: one short SFT policy for the whole session and a small, fast configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from entropy_watch.trainer.config import EvalConfig, TrainConfig, preset

torch.set_num_threads(1)

SFT_STEPS = 150


@pytest.fixture(scope="session")
def sft_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT after 150 SFT steps on task A in the tiny preset's vocabulary (digits in 16 numeral scripts, a
    Zipf-like long tail; pass@1 ~ 0.2: groups with mixed rewards exist)."""
    from entropy_watch.trainer.config import SFTConfig
    from entropy_watch.trainer.model import build_model
    from entropy_watch.trainer.sft import run_sft, save_policy
    from entropy_watch.trainer.tasks import get_task
    from entropy_watch.trainer.tokenizer import build_tokenizer

    cfg = preset("tiny")
    tok = build_tokenizer(cfg.task.scripts, cfg.task.plus_signs)
    model = build_model(cfg.model, len(tok), tok.eos_token_id, seed=0)
    sft = SFTConfig(steps=SFT_STEPS, batch_size=64, lr=1e-3)
    run_sft(model, tok, get_task("sum3"), sft, seed=0, surface=cfg.task.surface())
    return save_policy(model, tok, tmp_path_factory.mktemp("sft") / "policy")


def small_config(algo: str, run: str, iterations: int = 2, **algo_overrides: object) -> TrainConfig:
    """The tiny preset shrunk for tests: 8 prompts x 4 samples, small evaluation, device cpu, no periodic saves."""
    cfg = preset("tiny", algo, seed=0, run=run, **algo_overrides)
    cfg.device = "cpu"
    cfg.rl.iterations, cfg.rl.prompts, cfg.rl.group_size = iterations, 8, 4
    cfg.checkpoint_every = 0
    cfg.eval = EvalConfig(every=0, samples=4, ks=(1, 4), prompts=6)
    return cfg
