"""Liger's flag as each TRL release reads it: the trainer's own copy, which its ``compute_loss`` branches on.

TRL 0.20.0-0.24.0 ``GRPOTrainer.__init__`` keeps ``self.use_liger_loss = args.use_liger_loss`` and ``compute_loss``
runs ``compute_liger_loss`` only ``if self.use_liger_loss`` (0.24.0: trl/trainer/grpo_trainer.py lines 359 and
1645); ``args.use_liger_kernel`` is then transformers' own flag, which patches the model's kernels (RMSNorm, RoPE,
SwiGLU) and leaves TRL's loss forward, with its entropy, where it was. TRL 0.25.0 renamed the loss flag
``use_liger_kernel`` (``self.use_liger_kernel = args.use_liger_kernel``). A real tiny ``GRPOTrainer`` of TRL 0.24.0
with ``use_liger_kernel=True`` ran two loss forwards with entropy and never ``compute_liger_loss``, while ``attach``
switched its per-token layer off and refused ``control="adapo"`` for a Liger loss it was not running.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store

pytest.importorskip("transformers")

B, T = 2, 3
ENTROPY = 0.5  # what the stand-in's loss forward returns for every token


class GRPOTrainer:
    """Stand-in of TRL 0.24.0's ``GRPOTrainer`` (its names; ``args`` as ``GRPOConfig`` holds them, transformers'
    ``use_liger_kernel`` among them), or with ``release=25`` of 0.25.0's (the flag renamed)."""

    def __init__(self, tmp_path: Path, *, release: int, use_liger_kernel: bool, use_liger_loss: bool = False) -> None:
        self.args = SimpleNamespace(output_dir=str(tmp_path / "out"), run_name=None, temperature=1.0, delta=None,
                                    use_liger_kernel=use_liger_kernel, use_liger_loss=use_liger_loss,
                                    use_adaptive_entropy=False, gradient_accumulation_steps=1,
                                    steps_per_generation=1)  # fmt: skip
        if release <= 24:
            self.use_liger_loss = self.args.use_liger_loss
        else:
            self.use_liger_kernel = self.args.use_liger_kernel
        self.state = SimpleNamespace(global_step=0, is_world_process_zero=True, max_steps=2)
        self.model = SimpleNamespace(training=True, config=SimpleNamespace(vocab_size=16))
        self.epsilon_low, self.epsilon_high, self.beta, self.num_iterations = 0.2, 0.28, 0.0, 1
        self.loss_type, self.importance_sampling_level, self.entropy_coef = "bnpo", "token", 0.0
        self.callbacks: list[Any] = []
        self.liger_calls = 0

    def add_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def remove_callback(self, callback: Any) -> None:
        self.callbacks.remove(callback)

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        if getattr(self, "use_liger_loss", None) or getattr(self, "use_liger_kernel", None):  # the release's own copy
            return self.compute_liger_loss(model, inputs)
        return self._compute_loss(model, inputs)

    def compute_liger_loss(self, unwrapped_model: Any, inputs: Any) -> torch.Tensor:
        self.liger_calls += 1
        return torch.zeros(())

    def _compute_loss(self, model: Any, inputs: Any) -> torch.Tensor:
        logps, _ = self._get_per_token_logps_and_entropies(model, None, None, T, compute_entropy=True)
        coef_1 = torch.exp(logps - logps.detach())
        coef_2 = torch.clamp(coef_1, 1 - self.epsilon_low, 1 + self.epsilon_high)
        advantages = inputs["advantages"].unsqueeze(1)
        per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)
        mask = inputs["completion_mask"]
        return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False):  # fmt: skip
        return torch.full((B, T), -1.0, requires_grad=True), torch.full((B, T), ENTROPY) if compute_entropy else None


GRPOTrainer.__module__ = "trl.trainer.grpo_trainer"


def train(trainer: GRPOTrainer, tmp_path: Path, **kw: Any) -> Any:
    """``attach``, then two optimizer steps as the Trainer drives them: loss, step end, log (TRL's logged entropy
    differs from the loss forward's, so the series says which one was recorded)."""
    from entropy_watch.hooks.trl import attach

    handle = attach(trainer, run="r", store=tmp_path / "store", strict=True, flush_secs=0.05, **kw)
    batch = {"completion_mask": torch.ones(B, T), "advantages": torch.tensor([1.0, -1.0])}
    for _ in range(2):
        trainer.compute_loss(trainer.model, batch)
        trainer.state.global_step += 1
        for c in trainer.callbacks:
            c.on_step_end(trainer.args, trainer.state, SimpleNamespace())
        handle.callback.on_log(trainer.args, trainer.state, SimpleNamespace(), logs={"entropy": 9.0, "reward": 1.0})
    handle.close()
    return handle


def entropy_series(tmp_path: Path) -> dict[int, float]:
    steps, values = Store(tmp_path / "store").series("r", M.ENTROPY_MEAN)
    return dict(zip(steps.tolist(), values.tolist(), strict=True))


@pytest.mark.parametrize("control", [None, "adapo"])
def test_transformers_liger_kernel_flag_before_trl_025_keeps_the_per_token_layer(tmp_path, caplog, control) -> None:
    """Before: ``use_liger_kernel=True`` was read as Liger's loss on TRL <= 0.24: per-token statistics off with a
    warning that named a path TRL never took, TRL's logged entropy recorded instead, and ``control=`` refused."""
    trainer = GRPOTrainer(tmp_path, release=24, use_liger_kernel=True)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        handle = train(trainer, tmp_path, control=control)
    assert handle.mode == "per-token" and trainer.liger_calls == 0, handle.reason
    assert (handle.control is not None) == (control is not None)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "liger" in r.getMessage().lower()]
    assert entropy_series(tmp_path) == {1: ENTROPY, 2: ENTROPY}  # the loss forward's, not TRL's logged 9.0


@pytest.mark.parametrize(
    ("release", "flags", "named"),
    [
        (24, {"use_liger_kernel": True, "use_liger_loss": True}, "use_liger_loss"),
        (25, {"use_liger_kernel": True}, "use_liger_kernel"),
    ],
    ids=["trl-0.24-liger-loss", "trl-0.25-liger-kernel"],
)
def test_the_flag_that_routes_the_loss_through_liger_is_still_told(tmp_path, release, flags, named) -> None:
    from entropy_watch.hooks.control import ControlError

    trainer = GRPOTrainer(tmp_path, release=release, **flags)
    handle = train(trainer, tmp_path)
    assert handle.mode == "callback-only" and f"{named}=True" in handle.reason and trainer.liger_calls == 2
    assert entropy_series(tmp_path) == {1: 9.0, 2: 9.0}  # TRL's logged entropy fills the canonical name
    with pytest.raises(ControlError, match=f"{named}=True"):
        train(GRPOTrainer(tmp_path / "c", release=release, **flags), tmp_path / "c", control="adapo")
