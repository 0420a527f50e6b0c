"""``attach`` on Unsloth's GRPO trainer, through a stand-in shaped from ``unsloth`` 2026.10.9's source (importing
unsloth needs a GPU): what its fused loss lets entropy_watch record, said in one warning, and ``control=`` refused.

Unsloth's ``UnslothGRPOTrainer`` (``unsloth/models/rl.py``, ``_patch_trl_rl_trainers``: TRL's class copied, renamed
``_UnslothGRPOTrainer``) runs ``compute_loss`` from ``unsloth/models/rl_replacements.py::grpo_trainer_compute_loss``:
the log-prob method (``grpo_trainer__get_per_token_logps_and_entropies``) is called with ``compute_efficient=True``
and returns ``(None, None)``; the loss forward runs in ``unsloth_zoo.rl_replacements.grpo_accumulated_loss``, which
hands back no log-probs or entropies; Unsloth logs ``clip_ratio/*``, ``kl`` and ``completion_length``, no ``entropy``.
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

B, T = 3, 4
LOGGED = {"loss": 0.1, "reward": 1.0, "kl": 0.0, "completion_length": 3.5, "clip_ratio/low_mean": 0.05,
          "clip_ratio/high_mean": 0.25, "clip_ratio/region_mean": 0.3}  # fmt: skip  # Unsloth's keys: no entropy


class _UnslothGRPOTrainer:
    """Stand-in of the class Unsloth generates from TRL's ``GRPOTrainer`` source (not a subclass of it): TRL's
    attributes, TRL's ``_compute_loss`` (copied, never called) and Unsloth's ``compute_loss`` and log-prob method."""

    def __init__(self, tmp_path: Path, **args: Any) -> None:
        base = dict(output_dir=str(tmp_path / "out"), run_name=None, temperature=1.0, delta=None,
                    use_liger_kernel=False, gradient_accumulation_steps=2, steps_per_generation=2, num_iterations=2,
                    use_vllm=False, vllm_importance_sampling_correction=True, loss_type="dapo",
                    unsloth_num_chunks=-1)  # fmt: skip
        self.args = SimpleNamespace(**{**base, **args})
        self.state = SimpleNamespace(global_step=0, is_world_process_zero=True, max_steps=2)
        self.model = SimpleNamespace(training=True, config=SimpleNamespace(vocab_size=16))
        self.epsilon_low, self.epsilon_high, self.beta = 0.2, 0.28, 0.0
        self.num_iterations, self.use_vllm = self.args.num_iterations, self.args.use_vllm
        self.vllm_importance_sampling_correction = self.args.vllm_importance_sampling_correction
        self.loss_type, self.importance_sampling_level, self.entropy_coef = "dapo", "token", 0.0
        self.callbacks: list[Any] = []
        self.fused_calls = 0

    def add_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def remove_callback(self, callback: Any) -> None:
        self.callbacks.remove(callback)

    def _compute_loss(self, model: Any, inputs: Any) -> torch.Tensor:
        raise AssertionError("Unsloth's compute_loss never calls TRL's _compute_loss")

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_efficient=False,
        *args,
        **kwargs,
    ):
        """``grpo_trainer__get_per_token_logps_and_entropies``: no forward under ``compute_efficient``; otherwise
        log-probs and ``entropies = None`` (and ``aux_loss = None`` for TRL >= 1.7)."""
        if compute_efficient:
            return None, None
        return torch.full((B, T), -1.0), None, None

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        """``grpo_trainer_compute_loss``: log-probs by the efficient path (None), then the zoo's fused loss."""
        per_token_logps = self._get_per_token_logps_and_entropies(model, None, None, T, None, False, True)[0]
        assert per_token_logps is None
        self.fused_calls += 1  # grpo_accumulated_loss(trainer=self, ..., advantages=inputs["advantages"], ...)
        return torch.zeros(())


_UnslothGRPOTrainer.__module__ = "unsloth_compiled_cache.UnslothGRPOTrainer"


class UnslothGRPOTrainer(_UnslothGRPOTrainer):
    """``class Unsloth{RLTrainer_name}(_Unsloth{RLTrainer_name})`` (unsloth/models/rl.py ``RLTrainer_replacement``)."""


UnslothGRPOTrainer.__module__ = "unsloth_compiled_cache.UnslothGRPOTrainer"


def micro_batch(seed: int, old: str | None = "old_per_token_logps") -> dict[str, Any]:
    """A micro-batch as TRL's ``_generate_and_score_completions`` leaves it: padded tails masked out (their log-probs
    garbage, as a pad position's are), (B,) advantages, old log-probs under ``old`` (None: none computed)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.int64)
    mask[seed % B, 2:] = 0
    inputs = {"completion_mask": mask, "advantages": torch.randn(B, generator=g),
              "completion_ids": torch.randint(0, 16, (B, T), generator=g)}  # fmt: skip
    if old is not None:
        inputs[old] = torch.where(mask > 0, -2.0 * torch.rand(B, T, generator=g), torch.tensor(50.0))
    return inputs


def train(trainer: Any, tmp_path: Path, old: str | None = "old_per_token_logps", steps: int = 2) -> tuple[Any, list]:
    """``attach``, then ``steps`` optimizer steps of two micro-batches each, as the Trainer drives them."""
    from entropy_watch.hooks.trl import attach

    handle = attach(trainer, run="uns", store=tmp_path / "store", strict=True, flush_secs=0.05)
    cb, ctl, seen = handle.callback, SimpleNamespace(), []
    for step in range(steps):
        micro = [micro_batch(2 * step + k, old) for k in range(2)]
        for inputs in micro:
            trainer.compute_loss(trainer.model, inputs)
        seen.append(micro)
        trainer.state.global_step += 1
        cb.on_step_end(trainer.args, trainer.state, ctl)
        cb.on_log(trainer.args, trainer.state, ctl, logs=dict(LOGGED))
    handle.close()
    return handle, seen


def series(tmp_path: Path, name: str) -> dict[int, float]:
    steps, values = Store(tmp_path / "store").series("uns", name)
    return dict(zip(steps.tolist(), values.tolist(), strict=True))


def warnings_of(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "entropy_watch" in r.name]


def reference(micro: list[dict[str, Any]], old: str) -> dict[str, float]:
    """The step's numbers written out: token means over the valid tokens of both micro-batches, in float64."""
    mask = torch.cat([m["completion_mask"] for m in micro]).bool()
    adv = torch.cat([m["advantages"].double().unsqueeze(1).expand(B, T) for m in micro])[mask]
    out = {M.ADV_MEAN: adv.mean().item(), M.ADV_STD: adv.std(unbiased=False).item(), M.ADV_MIN: adv.min().item(),
           M.ADV_MAX: adv.max().item(), M.TOKENS_COUNT: float(mask.sum())}  # fmt: skip
    if old:
        out[M.ENTROPY_SAMPLED_NLL] = -torch.cat([m[old].double() for m in micro])[mask].mean().item()
    return out


@pytest.mark.parametrize(
    ("old", "config"),
    [("old_per_token_logps", {}), ("sampling_per_token_logps", {"num_iterations": 1, "use_vllm": True})],
    ids=["old-log-probs", "vllm-sampling-log-probs"],
)
def test_unsloth_records_its_logs_advantages_and_sampled_nll_with_one_warning(tmp_path, caplog, old, config) -> None:
    """Before: two warnings (an unknown loss class at attach; "computed no entropy ... TRL's logged entropy stands" at
    the first step, though Unsloth logs none), and nothing per token: a run with no entropy series at all."""
    trainer = UnslothGRPOTrainer(tmp_path, **config)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        handle, seen = train(trainer, tmp_path, old)
    said = warnings_of(caplog)
    assert len(said) == 1 and "Unsloth's fused kernel" in said[0] and "entropy/mean" in said[0], said
    assert "entropy/sampled_nll from the sampled tokens' log-probs before the update" in said[0]
    assert handle.mode == "loss-inputs" and handle.rule is None and trainer.fused_calls == 4
    for step, micro in enumerate(seen, start=1):
        for name, want in reference(micro, old).items():
            assert series(tmp_path, name)[step] == pytest.approx(want, rel=1e-9, abs=1e-12), (step, name)
    assert series(tmp_path, M.ENTROPY_MEAN) == {}  # none exists: never a number that is not an entropy
    assert series(tmp_path, M.CLIP_HIGH_FRAC) == {1: 0.25, 2: 0.25}  # Unsloth's logged clip ratios
    meta = Store(tmp_path / "store").run_meta("uns")
    assert meta["entropy_definition"].startswith("sampled-token NLL")
    assert handle.watch.errors == 0
    handle.detach()
    assert "compute_loss" not in trainer.__dict__  # the wrap is gone


def test_without_old_log_probs_the_warning_says_no_entropy_is_recorded(tmp_path, caplog) -> None:
    """num_iterations=1, a generation batch per optimizer step, no vLLM: TRL computes no old log-probs, so nothing
    estimates the entropy; the one warning says so, and the advantages are still recorded."""
    trainer = UnslothGRPOTrainer(tmp_path, num_iterations=1)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        handle, seen = train(trainer, tmp_path, old=None)
    said = warnings_of(caplog)
    assert len(said) == 1 and "no entropy series is recorded" in said[0], said
    assert series(tmp_path, M.ENTROPY_SAMPLED_NLL) == {}
    assert series(tmp_path, M.ADV_MAX)[2] == pytest.approx(reference(seen[1], "")[M.ADV_MAX])


@pytest.mark.parametrize("control", ["repo-r", "adapo", "target"])
def test_control_on_unsloth_is_refused_in_one_line(tmp_path, control) -> None:
    """Before: refused as a loss "unsloth_compiled_cache.UnslothGRPOTrainer._UnslothGRPOTrainer computes its own"."""
    from entropy_watch.hooks.control import ControlError
    from entropy_watch.hooks.trl import attach

    with pytest.raises(ControlError, match="Unsloth's fused kernel") as e:
        attach(UnslothGRPOTrainer(tmp_path), run="uns", store=tmp_path / "store", control=control)
    assert "\n" not in str(e.value)
    assert not list(tmp_path.rglob("*uns*"))  # refused before a run was created


def test_an_input_of_another_shape_is_left_out_alone(tmp_path) -> None:
    """Old log-probs of another width than the mask: the advantages are recorded, the NLL is not, one failure."""
    from entropy_watch.hooks.trl import attach

    trainer = UnslothGRPOTrainer(tmp_path)
    handle = attach(trainer, run="uns", store=tmp_path / "store", flush_secs=0.05)
    inputs = {**micro_batch(0), "old_per_token_logps": torch.zeros(B, T + 1)}
    trainer.compute_loss(trainer.model, inputs)
    trainer.state.global_step = 1
    handle.callback.on_step_end(trainer.args, trainer.state, SimpleNamespace())
    handle.close()
    assert handle.watch.errors == 1
    assert series(tmp_path, M.ENTROPY_SAMPLED_NLL) == {} and 1 in series(tmp_path, M.ADV_MEAN)


def test_every_rank_joins_the_step_reduction_even_without_a_micro_batch(monkeypatch) -> None:
    """Under a reducing Watch the flush is a collective: a rank that added nothing still reduces (empty sums on the
    inputs' device), so the ranks never wait on each other; the writer records the pooled numbers."""
    from entropy_watch.hooks import trl_unsloth

    calls: list[Any] = []
    other = trl_unsloth.InputStats(SimpleNamespace(_edges=None, reduce=False, process_group=False))
    other.add(micro_batch(1))  # the other rank's micro-batch

    def reduce_sums(sums: Any, process_group: Any) -> Any:  # the SUM/MAX all-reduce, with the other rank's sums
        calls.append(float(sums.sums[0]))
        return sums.merge(other._sums)

    monkeypatch.setattr(trl_unsloth, "reduction_group", lambda group: "world")
    monkeypatch.setattr(trl_unsloth, "reduce_sums", reduce_sums)
    logged: list[dict] = []
    watch = SimpleNamespace(_edges=None, reduce=True, process_group=None, log_dict=lambda s, d: logged.append(d))
    stats = trl_unsloth.InputStats(watch)
    stats._device = torch.device("cpu")
    out = stats.flush(3)  # this rank: nothing added since the last step
    assert calls == [0.0] and out == logged[0]
    want = reference([micro_batch(1)], "old_per_token_logps")
    assert out == pytest.approx({k: want[k] for k in out}) and set(out) == set(want)
