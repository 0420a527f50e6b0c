"""TRL GRPOTrainer with ``attach``: real TRL on CPU, offline; recorded numbers equal TRL's own logged ones."""

from __future__ import annotations

import json
import logging
from collections import defaultdict

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.store import Store

pytestmark = pytest.mark.slow


def _train(tiny_trl, tmp_path, run: str, spy: bool = True, **config):
    from entropy_watch.hooks.trl import attach

    trainer = tiny_trl.build_trainer(str(tmp_path / "out"), **config)
    tokens_per_step: dict[int, int] = defaultdict(int)
    if spy:  # counts completion tokens of each loss forward; installed first, so attach wraps it
        inner = trainer.compute_loss

        def counting(model, inputs, *a, **k):
            if trainer.model.training:
                tokens_per_step[trainer.state.global_step + 1] += int(inputs["completion_mask"].sum())
            return inner(model, inputs, *a, **k)

        trainer.compute_loss = counting
    handle = attach(trainer, run=run, store=tmp_path / "store", strict=True, flush_secs=0.05)
    trainer.train()
    handle.close()
    assert handle.watch.errors == 0
    return trainer, handle, Store(tmp_path / "store"), tokens_per_step


def _ours(store: Store, run: str, name: str) -> dict[int, float]:
    steps, values = store.series(run, name)
    return dict(zip(steps.tolist(), values.tolist(), strict=True))


def _window_mean(ours: dict[int, float], onpolicy: dict[int, float], step: int, width: int) -> float:
    """TRL averages its per-micro-batch values over the logging window; a step without old log-probs (N/A here)
    contributes TRL's 0."""
    vals = [ours.get(s, 0.0 if onpolicy.get(s) == 1.0 else np.nan) for s in range(step - width + 1, step + 1)]
    return float(np.mean(vals))


@pytest.mark.parametrize(
    ("num_iterations", "grad_acc", "logging_steps", "loss_type"),
    [(2, 2, 2, "dapo"), (1, 1, 1, "grpo")],
    ids=["off-policy-accum", "on-policy"],
)
def test_attach_matches_trl_logs(tiny_trl, tmp_path, num_iterations, grad_acc, logging_steps, loss_type):
    run = f"trl-{num_iterations}"
    trainer, handle, store, tokens_per_step = _train(
        tiny_trl,
        tmp_path,
        run,
        max_steps=4,
        num_iterations=num_iterations,
        gradient_accumulation_steps=grad_acc,
        logging_steps=logging_steps,
        loss_type=loss_type,
    )
    assert handle.mode == "per-token"
    logged = [h for h in trainer.state.log_history if "entropy" in h]
    assert [h["step"] for h in logged] == list(range(logging_steps, 5, logging_steps))

    onpolicy = _ours(store, run, M.CLIP_ONPOLICY)
    assert sorted(onpolicy) == [1, 2, 3, 4]
    pairs = [(M.ENTROPY_MEAN, "entropy"), (M.CLIP_LOW_FRAC, "clip_ratio/low_mean"),
             (M.CLIP_HIGH_FRAC, "clip_ratio/high_mean"), (M.CLIP_REGION_FRAC, "clip_ratio/region_mean")]  # fmt: skip
    for canonical, trl_name in pairs:
        ours = _ours(store, run, canonical)
        as_logged = _ours(store, run, trl_name)  # the callback's copy under TRL's name
        for h in logged:
            assert as_logged[h["step"]] == pytest.approx(h[trl_name], abs=1e-7)
            expected = _window_mean(ours, onpolicy, h["step"], logging_steps)
            assert expected == pytest.approx(h[trl_name], abs=1e-5), (canonical, h["step"])

    if num_iterations == 1:  # strictly on-policy: N/A, never a healthy-looking zero
        assert set(onpolicy.values()) == {1.0}
        assert _ours(store, run, M.CLIP_LOW_FRAC) == {} and _ours(store, run, M.CLIP_HIGH_FRAC) == {}
    else:
        assert 0.0 in onpolicy.values()
        assert max(_ours(store, run, M.CLIP_REGION_FRAC).values()) > 0  # clipping binds

    hist = store.table(run, "hist").to_pydict()
    per_step: dict[int, int] = defaultdict(int)
    for step, count in zip(hist["step"], hist["count"], strict=True):
        per_step[step] += count
    assert dict(per_step) == dict(tokens_per_step)
    assert _ours(store, run, M.TOKENS_COUNT) == {s: float(n) for s, n in tokens_per_step.items()}
    for name in (M.ADV_MEAN, M.ADV_STD, M.COV_LOGP_ADV, M.ENTROPY_P50, "reward", M.REWARD_MEAN, "loss"):
        assert sorted(_ours(store, run, name)), name

    meta = store.run_meta(run)
    cfg = meta["trl_config"]
    assert cfg["loss_type"] == loss_type and cfg["num_iterations"] == num_iterations
    assert cfg["epsilon_high"] == pytest.approx(0.28) and cfg["epsilon_low"] == pytest.approx(0.2)
    assert {"beta", "importance_sampling_level", "top_entropy_quantile"} <= set(cfg)
    assert meta["framework_versions"]["trl"] and meta["world_size"] == 1
    assert meta["hooks_mode"] == "per-token"
    rows = store.table(run, "tokens").to_pydict()
    assert rows["step"] and all(isinstance(t, str) for t in rows["token_text"])
    json.dumps(meta)


def test_callback_only_fallback(tiny_trl, tmp_path, caplog):
    """Private method missing (another TRL version): one warning, the scalars are still recorded canonically."""
    from entropy_watch.hooks.trl import attach

    trainer = tiny_trl.build_trainer(str(tmp_path / "out"), max_steps=2)
    type_method = type(trainer)._get_per_token_logps_and_entropies
    trainer._get_per_token_logps_and_entropies = None  # not callable: as if the method did not exist
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        handle = attach(trainer, run="fallback", store=tmp_path / "store", strict=True, flush_secs=0.05)
    assert handle.mode == "callback-only" and "_get_per_token_logps_and_entropies" in handle.reason
    assert sum("per-token statistics off" in r.getMessage() for r in caplog.records) == 1
    trainer._get_per_token_logps_and_entropies = type_method.__get__(trainer)
    trainer.train()
    handle.close()
    store = Store(tmp_path / "store")
    ent = _ours(store, "fallback", M.ENTROPY_MEAN)
    trl = {h["step"]: h["entropy"] for h in trainer.state.log_history if "entropy" in h}
    assert ent == pytest.approx(trl) and len(ent) == 2
    assert _ours(store, "fallback", M.CLIP_LOW_FRAC)  # mapped from clip_ratio/low_mean by the alias table
    assert store.table("fallback", "hist").num_rows == 0
    assert store.run_meta("fallback")["hooks_mode"] == "callback-only"


def test_guarded_failure_does_not_stop_training(tiny_trl, tmp_path, monkeypatch):
    from entropy_watch.hooks import accumulate
    from entropy_watch.hooks.trl import attach

    def boom(*a, **k):
        raise RuntimeError("boom")

    trainer = tiny_trl.build_trainer(str(tmp_path / "out"), max_steps=2)
    handle = attach(trainer, run="guarded", store=tmp_path / "store", flush_secs=0.05)
    monkeypatch.setattr(accumulate.StepAccumulator, "add", boom)
    trainer.train()
    handle.close()
    assert handle.watch.errors == 2  # one per loss forward, training went on
    assert trainer.state.global_step == 2
    store = Store(tmp_path / "store")
    assert _ours(store, "guarded", "entropy")  # the callback layer still recorded
    assert _ours(store, "guarded", M.HOOKS_ERRORS)


def test_detach_restores_trainer(tiny_trl, tmp_path):
    from entropy_watch.hooks.trl import attach

    trainer = tiny_trl.build_trainer(str(tmp_path / "out"), max_steps=1)
    before = (trainer.compute_loss, trainer._get_per_token_logps_and_entropies)
    handle = attach(trainer, run="detach", store=tmp_path / "store")
    assert trainer.compute_loss != before[0]
    handle.detach()
    assert (trainer.compute_loss, trainer._get_per_token_logps_and_entropies) == before
    assert handle.callback not in trainer.callback_handler.callbacks
    handle.close()
