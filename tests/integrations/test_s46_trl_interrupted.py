"""A ``train()`` that dies mid-step (out of memory in backward, after the loss forward the hook recorded) and is
resumed in the same process (a notebook: ``trainer.train(resume_from_checkpoint=...)``): the resumed training's steps
hold their own loss forwards only, none of the step the first ``train()`` left unfinished (real TRL on CPU)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store

pytestmark = pytest.mark.slow


def _series(store: Store, run: str, name: str) -> dict[int, float]:
    steps, values = store.series(run, name)
    return dict(zip(steps.tolist(), values.tolist(), strict=True))


def test_resume_in_the_same_process_drops_the_interrupted_steps_loss_forwards(tiny_trl, tmp_path, caplog):
    from entropy_watch.hooks.trl import attach

    trainer = tiny_trl.build_trainer(
        str(tmp_path / "out"), max_steps=4, num_iterations=1, gradient_accumulation_steps=2,
        save_strategy="steps", save_steps=2,
    )  # fmt: skip
    forwards: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)  # step -> (entropy, mask)
    inner_logps, inner_loss = trainer._get_per_token_logps_and_entropies, trainer.compute_loss
    current: dict[str, Any] = {}

    def logps(*a: Any, **k: Any) -> Any:  # installed before attach, so attach wraps them: they see every loss forward
        out = inner_logps(*a, **k)
        if "mask" in current and out[1] is not None:
            forwards[trainer.state.global_step + 1].append((out[1].detach().clone(), current.pop("mask")))
        return out

    def loss(model: Any, inputs: Any, *a: Any, **k: Any) -> Any:
        if trainer.model.training:
            current["mask"] = inputs["completion_mask"].clone()
        return inner_loss(model, inputs, *a, **k)

    trainer._get_per_token_logps_and_entropies, trainer.compute_loss = logps, loss
    handle = attach(trainer, run="oom", store=tmp_path / "store", strict=True, flush_secs=0.05)
    backward, armed = trainer.accelerator.backward, [True]

    def oom_once(*a: Any, **k: Any) -> Any:  # the first loss forward of step 3 is recorded, then its backward dies
        if armed[0] and trainer.state.global_step == 2:
            armed[0] = False
            raise RuntimeError("out of memory (simulated)")
        return backward(*a, **k)

    trainer.accelerator.backward = oom_once
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.train()
    assert trainer.state.global_step == 2 and len(forwards[3]) == 1 and handle.accumulator.pending == 1
    forwards.clear()
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    handle.close()
    assert handle.watch.errors == 0 and sorted(forwards) == [3, 4] and all(len(f) == 2 for f in forwards.values())
    assert "left unfinished not recorded" in caplog.text

    store = Store(tmp_path / "store")
    tokens = {s: float(sum(int(m.sum()) for _, m in f)) for s, f in forwards.items()}
    assert {s: _series(store, "oom", M.TOKENS_COUNT)[s] for s in tokens} == tokens  # step 3: its own 2 forwards
    hist = store.table("oom", "hist").to_pydict()
    per_step: dict[int, float] = defaultdict(float)
    for step, count in zip(hist["step"], hist["count"], strict=True):
        per_step[step] += count
    assert {s: per_step[s] for s in tokens} == tokens
    entropy = _series(store, "oom", M.ENTROPY_MEAN)
    for step, fwd in forwards.items():  # TRL's rule: the token mean of each loss forward, averaged over the step's
        means = [float((e.double() * m).sum() / m.sum()) for e, m in fwd]
        assert entropy[step] == pytest.approx(sum(means) / len(means), rel=1e-6), step
