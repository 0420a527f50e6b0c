"""``attach`` on the seams of TRL releases older than the installed 1.16, through stand-ins shaped from each release's
source (PyPI wheels; the release and function are named at each class): what a user of any ``trl>=0.20`` gets.

Real runs of a tiny ``GRPOTrainer`` (and ``RLOOTrainer``) under TRL 0.20.0, 0.24.0, 0.29.1, 1.0.0 and 1.13.0 recorded
the per-token statistics equal to TRL's own logged ones (docs/integrations.md, the version table); three seams differ
and are kept here: Liger's flag before 0.25 (``use_liger_loss``), the GRPO loss before 0.26 (one advantage per
sequence, so REPO-R's per-token ones broadcast into a wrong loss) and the online ``RLOOTrainer`` before 0.22.
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
LOGGED = {"loss": 0.1, "entropy": 0.7, "clip_ratio/low_mean": 0.05, "clip_ratio/high_mean": 0.25,
          "clip_ratio/region_mean": 0.3, "reward": 1.0}  # fmt: skip


class GRPOTrainer:
    """Stand-in of a TRL ``GRPOTrainer`` (module, attribute and method names; ``args`` as TRL's ``GRPOConfig`` holds
    them, with transformers' own ``use_liger_kernel``); the loss body is each release's ``_compute_loss``."""

    def __init__(self, tmp_path: Path, **args: Any) -> None:
        self.args = SimpleNamespace(output_dir=str(tmp_path / "out"), run_name=None, temperature=1.0, delta=None,
                                    use_liger_kernel=False, use_adaptive_entropy=False, gradient_accumulation_steps=1,
                                    steps_per_generation=1, **args)  # fmt: skip
        self.state = SimpleNamespace(global_step=0, is_world_process_zero=True, max_steps=2)
        self.model = SimpleNamespace(training=True, config=SimpleNamespace(vocab_size=16))
        self.epsilon_low, self.epsilon_high, self.beta, self.num_iterations = 0.2, 0.28, 0.0, 1
        self.loss_type, self.importance_sampling_level, self.entropy_coef = "bnpo", "token", 0.0
        self.callbacks: list[Any] = []
        self.seen: list[torch.Size] = []  # the shape of each per-token loss the loss computed

    def add_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def remove_callback(self, callback: Any) -> None:
        self.callbacks.remove(callback)

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        return self._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, **kwargs):  # fmt: skip
        """TRL 0.20-1.6: ``(logps, entropies)``, entropies None without ``compute_entropy``."""
        return torch.full((B, T), -1.0, requires_grad=True), torch.full((B, T), 0.5) if compute_entropy else None


GRPOTrainer.__module__ = "trl.trainer.grpo_trainer"


class GRPOTrainer025(GRPOTrainer):
    """TRL 0.25.1 ``GRPOTrainer._compute_loss`` (trl/trainer/grpo_trainer.py), the lines that read the advantages:
    ``advantages.unsqueeze(1)`` whatever their shape (0.20.0 to 0.25.1 alike)."""

    def _compute_loss(self, model: Any, inputs: Any) -> torch.Tensor:
        per_token_logps, entropies = self._get_per_token_logps_and_entropies(model, None, None, T, compute_entropy=True)
        advantages = inputs["advantages"]
        old_per_token_logps = per_token_logps.detach()
        coef_1 = torch.exp(per_token_logps - old_per_token_logps)
        coef_2 = torch.clamp(coef_1, 1 - self.epsilon_low, 1 + self.epsilon_high)
        per_token_loss1 = coef_1 * advantages.unsqueeze(1)
        per_token_loss2 = coef_2 * advantages.unsqueeze(1)
        per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
        self.seen.append(per_token_loss.shape)
        completion_mask = inputs["completion_mask"]
        return (per_token_loss * completion_mask).sum() / completion_mask.sum().clamp(min=1.0)


class GRPOTrainer026(GRPOTrainer):
    """TRL 0.26.0 ``GRPOTrainer._compute_loss``: ``(B,)`` advantages are unsqueezed, ``(B, T)`` ones taken as they
    are (``if advantages.dim() == 1``), as in every release since."""

    def _compute_loss(self, model: Any, inputs: Any) -> torch.Tensor:
        per_token_logps, entropies = self._get_per_token_logps_and_entropies(model, None, None, T, compute_entropy=True)
        advantages = inputs["advantages"]
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1)
        old_per_token_logps = per_token_logps.detach()
        coef_1 = torch.exp(per_token_logps - old_per_token_logps)
        coef_2 = torch.clamp(coef_1, 1 - self.epsilon_low, 1 + self.epsilon_high)
        per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)
        self.seen.append(per_token_loss.shape)
        completion_mask = inputs["completion_mask"]
        return (per_token_loss * completion_mask).sum() / completion_mask.sum().clamp(min=1.0)


for _release in (GRPOTrainer025, GRPOTrainer026):  # TRL's own loss: the class attach knows the clip rule of
    _release.__module__, _release.__qualname__ = "trl.trainer.grpo_trainer", "GRPOTrainer"


class LigerGRPOTrainer024(GRPOTrainer026):
    """TRL 0.24.0 ``GRPOTrainer.compute_loss``: ``use_liger_loss`` (``GRPOConfig``'s flag until 0.25 renamed it
    ``use_liger_kernel``) routes the loss through ``compute_liger_loss``, Liger's fused kernel: no call of the log-prob
    method, no entropy, no per-token advantages; TRL still logs its ``clip_ratio/*``."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, use_liger_loss=True)
        self.use_liger_loss = self.args.use_liger_loss

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        if self.use_liger_loss:
            return self.compute_liger_loss(model, inputs)  # TRL: through self._forward_redirection(...)
        return self._compute_loss(model, inputs)

    def compute_liger_loss(self, unwrapped_model: Any, inputs: Any) -> torch.Tensor:
        return torch.zeros(())


class Trainer:
    """transformers' ``Trainer``: its own ``compute_loss``."""

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        return torch.zeros(())


Trainer.__module__ = "transformers.trainer"


class RLOOTrainer(Trainer):
    """TRL 0.21.0 ``RLOOTrainer`` (trl/trainer/rloo_trainer.py, the online one TRL 0.22 replaced): a ``Trainer`` with
    its own ``train()`` loop (``policy``, ``ref_policy``, ``reward_model``) and none of the GRPO seams; it logs
    ``objective/entropy`` and ``policy/entropy_avg``."""

    def __init__(self, tmp_path: Path) -> None:
        self.args = SimpleNamespace(output_dir=str(tmp_path / "out"), run_name=None, temperature=0.7)
        self.state = SimpleNamespace(global_step=0, is_world_process_zero=True, max_steps=2)
        self.model = SimpleNamespace(training=True, config=SimpleNamespace(vocab_size=16))
        self.callbacks: list[Any] = []

    def add_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)


RLOOTrainer.__module__ = "trl.trainer.rloo_trainer"


def batch() -> dict[str, Any]:
    return {"completion_mask": torch.ones(B, T), "advantages": torch.tensor([1.0, -1.0]),
            "completion_ids": torch.arange(B * T).reshape(B, T)}  # fmt: skip


def train(trainer: Any, tmp_path: Path, steps: int = 2, **kw: Any) -> Any:
    """``attach``, then ``steps`` optimizer steps as the Trainer drives them: loss, step end, log."""
    from entropy_watch.hooks.trl import attach

    handle = attach(trainer, run="old", store=tmp_path / "store", strict=True, flush_secs=0.05, **kw)
    cb, ctl = handle.callback, SimpleNamespace()
    for _ in range(steps):
        trainer.compute_loss(trainer.model, batch())
        trainer.state.global_step += 1
        for c in trainer.callbacks:
            c.on_step_end(trainer.args, trainer.state, ctl)
        cb.on_log(trainer.args, trainer.state, ctl, logs=dict(LOGGED))
    handle.close()
    return handle


def series(tmp_path: Path, name: str) -> dict[int, float]:
    steps, values = Store(tmp_path / "store").series("old", name)
    return dict(zip(steps.tolist(), values.tolist(), strict=True))


def warnings_of(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "entropy_watch" in r.name]


def test_repo_r_on_a_loss_that_takes_one_advantage_per_sequence_is_refused_in_one_line(tmp_path) -> None:
    """Before: attached, and TRL < 0.26's loss took REPO-R's (B, T) advantages as (B, 1, T): a (B, B, T) loss (TRL
    0.20.0 and 0.24.0, real runs: the loss moved, TRL logged clip_ratio/region_mean 1.14 and 1.90, above 1)."""
    from entropy_watch.hooks.control import ControlError
    from entropy_watch.hooks.trl import attach

    old = GRPOTrainer025(tmp_path)
    old._compute_loss(None, {**batch(), "advantages": torch.ones(B, T)})
    assert old.seen == [torch.Size([B, B, T])]  # the reason: per-token advantages broadcast, without an error
    with pytest.raises(ControlError, match=r"TRL < 0\.26") as e:
        attach(GRPOTrainer025(tmp_path), run="old", store=tmp_path / "store", control="repo-r")
    assert "\n" not in str(e.value) and "adapo" in str(e.value)
    assert not list(tmp_path.rglob("*old*"))  # refused before a run was created


def test_adapo_on_that_loss_and_repo_r_on_trl_026s_are_applied(tmp_path) -> None:
    """ADAPO steers ``epsilon_high``, which every release reads at each loss; REPO-R on TRL 0.26's loss reaches it as
    (B, T) advantages, not (B, B, T)."""
    trainer = GRPOTrainer025(tmp_path)
    handle = train(trainer, tmp_path, control="adapo")
    assert handle.control is not None and trainer.seen == [torch.Size([B, T])] * 2  # (B,) advantages, as TRL's
    new = GRPOTrainer026(tmp_path / "new")
    train(new, tmp_path / "new", control="repo-r")
    assert new.seen == [torch.Size([B, T])] * 2


def test_liger_loss_before_trl_025_is_told_at_attach_and_trls_logged_numbers_stand(tmp_path, caplog) -> None:
    """Before: TRL <= 0.24's ``use_liger_loss`` was not read (only ``use_liger_kernel``): the per-token layer was
    installed, saw no loss forward and warned at the first step, and control= was accepted though Liger's kernel
    never sees the advantages it rewrites."""
    from entropy_watch.hooks.control import ControlError
    from entropy_watch.hooks.trl import attach

    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        handle = train(LigerGRPOTrainer024(tmp_path), tmp_path)
    assert handle.mode == "callback-only" and "use_liger_loss=True" in handle.reason
    said = warnings_of(caplog)
    assert len(said) == 1 and "use_liger_loss=True" in said[0], said
    assert series(tmp_path, M.ENTROPY_MEAN) == {1: 0.7, 2: 0.7}  # TRL's logged entropy fills the canonical name
    assert series(tmp_path, M.CLIP_HIGH_FRAC) == {1: 0.25, 2: 0.25}
    for control in ("repo-r", "adapo"):
        with pytest.raises(ControlError, match="use_liger_loss=True") as e:
            attach(LigerGRPOTrainer024(tmp_path), run="liger", store=tmp_path / "store", control=control)
        assert "\n" not in str(e.value)


def test_the_online_rloo_of_trl_021_records_its_logs_and_control_names_the_missing_seam(tmp_path, caplog) -> None:
    """TRL <= 0.21's RLOOTrainer has no GRPO seam: one warning and its logged scalars; control= is refused naming
    the missing loss forward (before: "transformers.trainer.Trainer computes its own", a loss the user never chose)."""
    from entropy_watch.hooks.control import ControlError
    from entropy_watch.hooks.trl import attach

    with pytest.raises(ControlError, match="needs TRL's _get_per_token_logps_and_entropies loss forward; RLOOTrainer"):
        attach(RLOOTrainer(tmp_path), run="old", store=tmp_path / "store", control="adapo")
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        handle = attach(RLOOTrainer(tmp_path), run="old", store=tmp_path / "store", strict=True, flush_secs=0.05)
    assert handle.mode == "callback-only" and len(warnings_of(caplog)) == 1
    handle.callback.on_log(handle.trainer.args, SimpleNamespace(global_step=1, is_world_process_zero=True),
                           SimpleNamespace(), logs={"policy/entropy_avg": 2.5, "objective/entropy": 9.0})  # fmt: skip
    handle.close()
    assert series(tmp_path, M.ENTROPY_MEAN) == {1: 2.5}  # the token mean; never the sequence-summed one


def test_the_installed_trl_takes_per_token_advantages_and_is_no_fused_loss() -> None:
    """The seam checks read TRL 1.16's own GRPOTrainer as what it is: REPO-R allowed, TRL's loss forward used."""
    trl = pytest.importorskip("trl")
    from entropy_watch.hooks.control import liger_flag, sequence_advantages_only
    from entropy_watch.hooks.trl_unsloth import fused_loss

    trainer = object.__new__(trl.GRPOTrainer)  # its methods, no model
    assert not sequence_advantages_only(trainer) and not fused_loss(trainer) and liger_flag(trainer) is None
    assert sequence_advantages_only(GRPOTrainer025.__new__(GRPOTrainer025))
