"""The one warning ``attach`` gives on Unsloth's fused GRPO loss says where ``entropy/sampled_nll`` comes from: under
vLLM without its importance-sampling correction, TRL >= 0.27 still hands vLLM's sampling log-probs to ``compute_loss``
(0.27.2 to 1.16 ``_generate_and_score_completions``: ``if sampling_per_token_logps is not None:
output["sampling_per_token_logps"] = ...``, vLLM asked for ``logprobs: 0`` on every generation; 0.26.2 never puts them
in the output), so the series is recorded there."""

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


class UnslothGRPOTrainer:
    """Stand-in of Unsloth 2026.10.9's generated trainer: TRL's attributes, Unsloth's log-prob method (it takes
    ``compute_efficient``, the seam ``attach`` tells it by) and a ``compute_loss`` that runs the fused kernel."""

    def __init__(self, tmp_path: Path, **args: Any) -> None:
        self.args = SimpleNamespace(output_dir=str(tmp_path / "out"), run_name=None, temperature=1.0, delta=None,
                                    use_liger_kernel=False, gradient_accumulation_steps=2, steps_per_generation=2,
                                    num_iterations=1, **args)  # fmt: skip
        self.use_vllm = self.args.use_vllm
        self.vllm_importance_sampling_correction = self.args.vllm_importance_sampling_correction
        self.num_iterations = 1
        self.state = SimpleNamespace(global_step=0, is_world_process_zero=True, max_steps=2)
        self.model = SimpleNamespace(training=True, config=SimpleNamespace(vocab_size=16))
        self.epsilon_low, self.epsilon_high, self.beta, self.loss_type = 0.2, 0.28, 0.0, "dapo"
        self.callbacks: list[Any] = []

    def add_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def remove_callback(self, callback: Any) -> None:
        self.callbacks.remove(callback)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_efficient=False, **kwargs):  # fmt: skip
        return (None, None) if compute_efficient else (torch.full((B, T), -1.0), None, None)

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        return torch.zeros(())  # grpo_accumulated_loss: nothing comes back


UnslothGRPOTrainer.__module__ = "unsloth_compiled_cache.UnslothGRPOTrainer"


def test_vllm_without_its_correction_the_warning_names_the_sampling_log_probs_it_records(tmp_path, caplog) -> None:
    """Before: "... which this config does not compute (...): no entropy series is recorded", and the run then held
    entropy/sampled_nll at every step, from the log-probs TRL 0.27+ passed."""
    from entropy_watch.hooks.trl import attach

    trainer = UnslothGRPOTrainer(tmp_path, use_vllm=True, vllm_importance_sampling_correction=False)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        handle = attach(trainer, run="uns", store=tmp_path / "store", strict=True, flush_secs=0.05)
    logps = torch.tensor([[-0.5, -1.5, -1.0], [-2.0, -1.0, -3.0]])
    inputs = {"completion_mask": torch.ones(B, T), "advantages": torch.tensor([1.0, -1.0]),
              "old_per_token_logps": None, "sampling_per_token_logps": logps}  # fmt: skip  # TRL 1.15, no gate met
    trainer.compute_loss(trainer.model, inputs)
    trainer.state.global_step = 1
    handle.callback.on_step_end(trainer.args, trainer.state, SimpleNamespace())
    handle.close()
    steps, values = Store(tmp_path / "store").series("uns", M.ENTROPY_SAMPLED_NLL)
    assert steps.tolist() == [1] and values.tolist() == pytest.approx([-logps.mean().item()])
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and "entropy/sampled_nll from vLLM's sampling log-probs" in said[0], said
    assert "TRL >= 0.27" in said[0] and "TRL < 0.27" in said[0]


@pytest.mark.parametrize(
    ("vllm", "says"),
    [(True, "sampled tokens' log-probs before the update (TRL's old log-probs, else vLLM's)"),
     (False, "no entropy series is recorded")],
    ids=["vllm-with-correction", "no-vllm"],
)  # fmt: skip
def test_the_other_configs_keep_their_words(tmp_path, caplog, vllm, says) -> None:
    from entropy_watch.hooks.trl import attach

    trainer = UnslothGRPOTrainer(tmp_path, use_vllm=vllm, vllm_importance_sampling_correction=True)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        attach(trainer, run="uns", store=tmp_path / "store", flush_secs=0.05).close()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and says in said[0], said
