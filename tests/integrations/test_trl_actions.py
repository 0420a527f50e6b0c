"""``attach(trainer, on_alert=...)`` on real TRL (tiny offline GRPO on CPU): a collapsing run is checkpointed through
``control.should_save`` and stopped through ``control.should_training_stop`` at its first critical alert, and the
checkpoint loads; a healthy run is left alone (only the trainer's own checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from entropy_watch.store import Store

pytestmark = pytest.mark.slow

ON_ALERT = {"critical": "checkpoint+stop"}


def _actions(root: Path, run: str) -> list[dict]:
    rows = Store(root).table(run, "events").to_pylist()
    return [json.loads(r["payload"]) | {"step": r["step"]} for r in rows if r["kind"] == "action"]


def test_collapsing_run_is_checkpointed_and_stopped(tiny_trl, tmp_path: Path) -> None:
    from entropy_watch.hooks.trl import attach

    out, store = tmp_path / "out", tmp_path / "store"

    def half_reward(completions: list[str], **kwargs: object) -> list[float]:
        # the example's reward at half scale: it plateaus at 0.65, well below a solved task's ceiling (1.0), so the
        # collapse is harmful, not the benign convergence of a solved task (which the detector calls info)
        return [0.5 * r for r in tiny_trl.reward_yes(completions)]

    # the tiny model's entropy falls from ln V to ~0.2 nats within ~15 steps at this learning rate. The live analysis
    # runs beside training and never holds a step back (hooks/live.py), and these steps take ~10-60 ms: on a loaded
    # machine it once acted only after step 40 (the former budget). The budget leaves it ample room; the run stops at
    # the first critical alert either way, so the test takes no longer when the machine is idle.
    budget = 200
    trainer = tiny_trl.build_trainer(
        str(out), reward=half_reward, max_steps=budget, learning_rate=5e-2, save_strategy="no"
    )
    handle = attach(trainer, run="collapse", store=store, strict=True, flush_secs=0.1, on_alert=ON_ALERT)
    trainer.train()
    handle.close()
    step = trainer.state.global_step
    assert step < budget and handle.watch.errors == 0

    crit = [a for a in handle.watch.live.alerts if a.severity == "critical"]
    assert crit and crit[0].kind == "collapse"
    (act,) = _actions(store, "collapse")  # one action: checkpoint and stop, for the first critical alert
    assert act["actions"] == ["checkpoint", "stop"] and act["rule"] == "critical"
    assert act["alert"]["key"] == crit[0].key and crit[0].step <= act["step"] == step
    assert any("should_training_stop" in d for d in act["did"]) and any(f"checkpoint-{step}" in d for d in act["did"])

    ckpt = out / f"checkpoint-{step}"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [ckpt.name]  # save_strategy="no": only ours
    assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == step
    loaded = type(trainer.model).from_pretrained(ckpt)
    for (name, p), q in zip(trainer.model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(p.cpu(), q), name
    assert (ckpt / "optimizer.pt").exists()  # the trainer's own full checkpoint, resumable


def test_healthy_run_is_untouched(tiny_trl, tmp_path: Path) -> None:
    from entropy_watch.hooks.trl import attach

    out, store = tmp_path / "out", tmp_path / "store"
    trainer = tiny_trl.build_trainer(str(out), max_steps=12, learning_rate=1e-6, save_strategy="steps", save_steps=6)
    handle = attach(trainer, run="healthy", store=store, strict=True, flush_secs=0.1, on_alert=ON_ALERT)
    trainer.train()
    handle.watch.live.flush()
    handle.close()
    assert trainer.state.global_step == 12 and not handle.watch.should_stop
    assert not [a for a in handle.watch.live.alerts if a.severity == "critical"]
    assert _actions(store, "healthy") == []
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]
    from entropy_watch.importers import load_log

    (imported,) = load_log(out)  # the folder TRL wrote imports with the model's vocabulary from its config.json
    assert imported.meta["vocab_size"] == trainer.model.config.vocab_size
    assert any(str(out / "checkpoint-12" / "config.json") in n for n in imported.notes)
