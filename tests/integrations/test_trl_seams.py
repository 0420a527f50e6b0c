"""``attach`` against TRL layouts other than the installed 1.16's: stand-ins built here (TRL's attribute and method
names, a loss forward arranged otherwise), plus the experimental ``GMPOTrainer`` TRL 1.16 ships (real, CPU, offline).

What a seam the hooks do not recognise must cost: the per-token statistics (one warning), never TRL's own numbers.
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
ENTROPY = 0.5  # every token's entropy in the stand-ins' loss forward (TRL's logged value below differs)
LOGGED = {"loss": 0.1, "entropy": 0.7, "clip_ratio/low_mean": 0.05, "clip_ratio/high_mean": 0.25,
          "clip_ratio/region_mean": 0.3, "reward": 1.0}  # fmt: skip


class GRPOTrainer:
    """Stand-in of a TRL ``GRPOTrainer`` (its module, attribute and method names); ``forward(trainer, inputs)`` is
    what its ``_compute_loss`` does, ``output(compute_entropy)`` what its log-prob method returns."""

    def __init__(self, tmp_path: Path, forward: Any = None, output: Any = None, **attrs: Any) -> None:
        self.args = SimpleNamespace(output_dir=str(tmp_path / "out"), run_name=None, temperature=1.0, delta=None)
        self.state = SimpleNamespace(global_step=0, is_world_process_zero=True, max_steps=2)
        self.model = SimpleNamespace(training=True, config=SimpleNamespace(vocab_size=16))
        self.epsilon_low = self.epsilon_high = 0.2
        self.loss_type, self.importance_sampling_level = "dapo", "token"
        self.callbacks: list[Any] = []
        self.forward = forward or loss_forward
        self.output = output or (lambda compute_entropy: (torch.full((B, T), -1.0), entropies(compute_entropy), None))
        for k, v in attrs.items():
            setattr(self, k, v)

    def add_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def remove_callback(self, callback: Any) -> None:
        self.callbacks.remove(callback)

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        return self._compute_loss(model, inputs)

    def _compute_loss(self, model: Any, inputs: Any) -> torch.Tensor:
        self.forward(self, inputs)
        return torch.zeros(())

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **kwargs):  # fmt: skip
        return self.output(compute_entropy)


GRPOTrainer.__module__ = "trl.trainer.grpo_trainer"


class RLOOTrainer(GRPOTrainer):
    """Stand-in of TRL's ``RLOOTrainer``: no loss_type or importance-sampling level; one ratio per sequence."""

    def _compute_loss(self, model: Any, inputs: Any) -> torch.Tensor:
        self.forward(self, inputs)
        return torch.zeros(())


RLOOTrainer.__module__ = "trl.trainer.rloo_trainer"


class OwnLossTrainer(GRPOTrainer):
    """A user's subclass with a ``_compute_loss`` of its own (its clip rule is not TRL's)."""

    def _compute_loss(self, model: Any, inputs: Any) -> torch.Tensor:
        self.forward(self, inputs)
        return torch.zeros(())


def entropies(compute_entropy: bool = True) -> torch.Tensor | None:
    return torch.full((B, T), ENTROPY) if compute_entropy else None


def loss_forward(trainer: Any, inputs: Any) -> None:
    """TRL 1.16's loss: one forward with entropy."""
    trainer._get_per_token_logps_and_entropies(None, None, None, T, compute_entropy=True)


def batch(old: torch.Tensor | None = None, adv: tuple[float, float] = (1.0, -1.0)) -> dict[str, Any]:
    inputs = {"completion_mask": torch.ones(B, T), "advantages": torch.tensor(adv),
              "completion_ids": torch.arange(B * T).reshape(B, T)}  # fmt: skip
    if old is not None:
        inputs["old_per_token_logps"] = old
    return inputs


def train(trainer: Any, tmp_path: Path, steps: int = 2, inputs: Any = None, logged: dict | None = None) -> Any:
    """``attach``, then ``steps`` optimizer steps as the Trainer drives them: loss, step end, log."""
    from entropy_watch.hooks.trl import attach

    handle = attach(trainer, run="seam", store=tmp_path / "store", strict=True, flush_secs=0.05)
    cb, ctl = handle.callback, SimpleNamespace()
    for _ in range(steps):
        trainer.compute_loss(trainer.model, inputs or batch())
        trainer.state.global_step += 1
        cb.on_step_end(trainer.args, trainer.state, ctl)
        cb.on_log(trainer.args, trainer.state, ctl, logs=dict(logged or LOGGED))
    handle.close()
    return handle


def series(tmp_path: Path, name: str) -> dict[int, float]:
    steps, values = Store(tmp_path / "store").series("seam", name)
    return dict(zip(steps.tolist(), values.tolist(), strict=True))


def warnings_about(caplog: Any, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


def test_the_stand_in_as_trl_116_lays_it_out(tmp_path) -> None:
    """The reference: one loss forward with entropy; the per-token layer owns the canonical names."""
    handle = train(GRPOTrainer(tmp_path), tmp_path)
    assert series(tmp_path, M.ENTROPY_MEAN) == {1: ENTROPY, 2: ENTROPY}
    assert series(tmp_path, "entropy") == {1: 0.7, 2: 0.7}  # TRL's own number under TRL's name
    assert series(tmp_path, M.CLIP_LOW_FRAC) == {}  # no old log-probs: N/A, not TRL's 0.05
    assert handle.mode == "per-token" and handle.reason == ""


def test_an_old_log_prob_pass_inside_the_loss_is_not_taken_for_the_loss_forward(tmp_path, caplog) -> None:
    """A TRL computing old (or reference) log-probs inside ``compute_loss`` before the loss forward: that pass has no
    entropy, so the forward with entropy after it is the one recorded."""

    def old_then_loss(trainer: Any, inputs: Any) -> None:
        trainer._get_per_token_logps_and_entropies(None, None, None, T, compute_entropy=False)
        trainer._get_per_token_logps_and_entropies(None, None, None, T, compute_entropy=True)

    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        train(GRPOTrainer(tmp_path, forward=old_then_loss), tmp_path)
    assert series(tmp_path, M.ENTROPY_MEAN) == {1: ENTROPY, 2: ENTROPY}
    assert series(tmp_path, M.TOKENS_COUNT) == {1: B * T, 2: B * T}
    assert warnings_about(caplog, "entropy_watch") == 0


def test_a_loss_forward_outside_compute_loss_leaves_trls_numbers_with_one_warning(tmp_path, caplog) -> None:
    """The log-prob method exists but the loss forward runs elsewhere (renamed or moved): one warning, and TRL's
    logged entropy and clip ratios fill the canonical names."""
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        train(GRPOTrainer(tmp_path, forward=lambda trainer, inputs: None), tmp_path)
    assert warnings_about(caplog, "was not called inside compute_loss") == 1
    assert series(tmp_path, M.ENTROPY_MEAN) == {1: 0.7, 2: 0.7}
    assert series(tmp_path, M.CLIP_HIGH_FRAC) == {1: 0.25, 2: 0.25}


def test_a_loss_forward_without_entropy_leaves_trls_numbers_with_one_warning(tmp_path, caplog) -> None:
    output = lambda compute_entropy: (torch.full((B, T), -1.0), None, None)  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        train(GRPOTrainer(tmp_path, output=output), tmp_path)
    assert warnings_about(caplog, "computed no entropy") == 1
    assert series(tmp_path, M.ENTROPY_MEAN) == {1: 0.7, 2: 0.7}


def test_a_log_prob_method_returning_an_object_switches_off_and_trls_entropy_stands(tmp_path, caplog) -> None:
    """A TRL whose method returns an output object instead of a tuple: the per-token layer switches itself off (one
    warning) and the entropy curve is TRL's, not empty."""
    output = lambda compute_entropy: {"logps": torch.full((B, T), -1.0), "entropies": entropies()}  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        handle = train(GRPOTrainer(tmp_path, output=output), tmp_path)
    assert handle.mode == "callback-only" and "not a tuple" in handle.reason
    assert warnings_about(caplog, "per-token statistics off") == 1
    assert series(tmp_path, M.ENTROPY_MEAN) == {1: 0.7, 2: 0.7}
    assert series(tmp_path, M.CLIP_LOW_FRAC) == {1: 0.05, 2: 0.05}


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: GRPOTrainer(p, loss_type="gspo_new"), "loss_type='gspo_new'"),
        (lambda p: GRPOTrainer(p, importance_sampling_level="sequence_token"), "importance_sampling_level"),
        (lambda p: OwnLossTrainer(p), "OwnLossTrainer"),
    ],
    ids=["unknown-loss-type", "unknown-is-level", "own-compute-loss"],
)
def test_a_loss_whose_clip_rule_is_unknown_leaves_clip_to_trls_logs(tmp_path, caplog, make, said) -> None:
    """Every token's ratio is e^0.5 with A > 0 (for 1 - eps..1 + eps, all clip high): a loss whose rule is not TRL's
    known one may count otherwise, so clip/* are TRL's logged clip_ratio/* (0.25), entropy still ours."""
    old = torch.full((B, T), -1.5)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        handle = train(make(tmp_path), tmp_path, inputs=batch(old, adv=(1.0, 1.0)))
    assert series(tmp_path, M.CLIP_HIGH_FRAC) == {1: 0.25, 2: 0.25}
    assert series(tmp_path, M.CLIP_REGION_FRAC) == {1: 0.3, 2: 0.3}
    assert series(tmp_path, M.ENTROPY_MEAN) == {1: ENTROPY, 2: ENTROPY}
    assert warnings_about(caplog, said) == 1
    assert handle.mode == "per-token" and handle.rule is None and said in handle.reason
    rows = Store(tmp_path / "store").table("seam", "tokens").to_pydict()
    assert rows["step"] and set(rows["clipped"]) == {""}  # no token labelled by a rule that is not the loss's


def test_rloo_counts_one_ratio_per_sequence_whatever_old_log_probs_it_passes(tmp_path) -> None:
    """RLOO's clip is on the sequence ratio exp(sum log-ratio). Sequence 0's token log-ratios are 0.5 and -0.4 (its
    first token alone would clip high), its sum 0.1 (ratio 1.105, inside the clip): nothing binds, with per-token
    old log-probs as with RLOO's summed old_logps."""
    logps = torch.full((B, T), -1.0)
    old = logps - torch.tensor([[0.5, -0.4, 0.0], [0.0, 0.0, 0.0]])
    output = lambda compute_entropy: (logps.clone(), entropies(compute_entropy), None)  # noqa: E731
    handle = train(RLOOTrainer(tmp_path, output=output), tmp_path, inputs=batch(old))
    assert series(tmp_path, M.CLIP_HIGH_FRAC) == {1: 0.0, 2: 0.0}
    assert series(tmp_path, M.CLIP_ONPOLICY) == {1: 0.0, 2: 0.0}
    assert handle.rule == "rloo"


def test_attach_refuses_what_is_no_trainer_in_one_line(tmp_path) -> None:
    from entropy_watch.hooks.trl import attach

    with pytest.raises(TypeError, match="is not a transformers Trainer") as e:
        attach(SimpleNamespace(compute_loss=lambda *a: None), run="nope", store=tmp_path / "store")
    assert "\n" not in str(e.value)
    assert not list(tmp_path.rglob("*nope*"))  # refused before a run was created


def test_control_on_a_loss_of_its_own_is_refused_in_one_line(tmp_path) -> None:
    """``control=`` rewrites advantages and clip widths inside TRL's GRPO/RLOO loss; another class's loss (GMPO's
    takes one advantage per sequence: REPO-R's per-token ones crash it) is refused before a run is created."""
    from entropy_watch.hooks.control import ControlError
    from entropy_watch.hooks.trl import attach

    for control in ("repo-r", "adapo"):
        with pytest.raises(ControlError, match="OwnLossTrainer computes its own") as e:
            attach(OwnLossTrainer(tmp_path), run="nope", store=tmp_path / "store", control=control)
        assert "\n" not in str(e.value)
    assert not list(tmp_path.rglob("*nope*"))


def test_the_config_records_what_changes_the_numbers_and_whose_loss_it_is(tmp_path) -> None:
    from entropy_watch.hooks.trl import trl_config

    args = SimpleNamespace(loss_type="dapo", off_policy_mask_threshold=0.5, vllm_importance_sampling_mode="token_mask",
                           multi_objective_aggregation="normalize_then_sum")  # fmt: skip
    cfg = trl_config(GRPOTrainer(tmp_path), args)["trl_config"]
    assert cfg["off_policy_mask_threshold"] == 0.5 and cfg["vllm_importance_sampling_mode"] == "token_mask"
    assert cfg["multi_objective_aggregation"] == "normalize_then_sum"
    assert cfg["loss_impl"] == "trl.trainer.grpo_trainer.GRPOTrainer"


@pytest.mark.slow
def test_gmpo_clip_fractions_equal_trls(tiny_trl, tmp_path) -> None:
    """TRL 1.16's experimental GMPOTrainer clips the log-ratio (|log r| > eps, eps = 0.4): the fractions recorded are
    TRL's clip_ratio/*_mean at every step, not those of the ratio rule (r < 0.6, r > 1.4)."""
    gmpo = pytest.importorskip("trl.experimental.gmpo")
    from entropy_watch.hooks.trl import attach

    tok = tiny_trl.tiny_tokenizer()
    args = gmpo.GMPOConfig(output_dir=str(tmp_path / "out"), bf16=False, use_cpu=True, report_to="none",
                           per_device_train_batch_size=4, num_generations=4, max_completion_length=6, max_steps=4,
                           logging_steps=1, save_strategy="no", learning_rate=5e-2, num_iterations=2, seed=0,
                           disable_tqdm=True)  # fmt: skip
    trainer = gmpo.GMPOTrainer(model=tiny_trl.tiny_model(tok), reward_funcs=tiny_trl.reward_yes, args=args,
                               train_dataset=tiny_trl.tiny_dataset(64), processing_class=tok)  # fmt: skip
    from entropy_watch.hooks.control import ControlError

    with pytest.raises(ControlError, match="GMPOTrainer computes its own"):  # REPO-R's (B, T) advantages crash it
        attach(trainer, run="seam", store=tmp_path / "store", control="repo-r")
    handle = attach(trainer, run="seam", store=tmp_path / "store", strict=True, flush_secs=0.05)
    trainer.train()
    handle.close()
    logged = [h for h in trainer.state.log_history if "clip_ratio/low_mean" in h]
    assert [h["step"] for h in logged] == [1, 2, 3, 4]
    assert any(h["clip_ratio/region_mean"] > 0 for h in logged)
    for canonical, name in ((M.CLIP_LOW_FRAC, "clip_ratio/low_mean"), (M.CLIP_HIGH_FRAC, "clip_ratio/high_mean"),
                            (M.CLIP_REGION_FRAC, "clip_ratio/region_mean")):  # fmt: skip
        ours = series(tmp_path, canonical)
        assert ours == pytest.approx({h["step"]: h[name] for h in logged}, abs=1e-6), canonical
    assert handle.rule == "gmpo" and handle.watch.errors == 0
