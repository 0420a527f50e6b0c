"""TRL GRPO with ``num_iterations=2`` (the example's default): on the first pass over each generation batch the old
log-probs equal the new ones (ratio 1, up to float noise), TRL logs clip ratios of 0, and so do we; ``clip/onpolicy``
is 1 on exactly those steps."""

from __future__ import annotations

import pytest

from entropy_watch import metrics as M
from entropy_watch.store import Store

pytestmark = pytest.mark.slow


def _series(store: Store, run: str, name: str) -> dict[int, float]:
    steps, values = store.series(run, name)
    return dict(zip(steps.tolist(), values.tolist(), strict=True))


def test_first_pass_steps_store_trl_clip_ratios_and_read_on_policy(tiny_trl, tmp_path):
    from entropy_watch.hooks.trl import attach

    trainer = tiny_trl.build_trainer(str(tmp_path / "out"), max_steps=6, num_iterations=2, logging_steps=1)
    first_pass: list[int] = []  # steps whose batch was generated for them: TRL's first pass over it
    generate = trainer._generate_and_score_completions

    def spy(*a, **k):
        first_pass.append(trainer.state.global_step + 1)
        return generate(*a, **k)

    trainer._generate_and_score_completions = spy
    handle = attach(trainer, run="onpolicy", store=tmp_path / "store", strict=True, flush_secs=0.05)
    trainer.train()
    handle.close()
    assert handle.mode == "per-token" and handle.watch.errors == 0
    assert first_pass == [1, 3, 5]  # steps_per_generation 1 x num_iterations 2

    store = Store(tmp_path / "store")
    logged = {h["step"]: h for h in trainer.state.log_history if "clip_ratio/low_mean" in h}
    assert sorted(logged) == [1, 2, 3, 4, 5, 6]
    for canonical, trl_name in ((M.CLIP_LOW_FRAC, "clip_ratio/low_mean"), (M.CLIP_HIGH_FRAC, "clip_ratio/high_mean"),
                                (M.CLIP_REGION_FRAC, "clip_ratio/region_mean")):  # fmt: skip
        ours = _series(store, "onpolicy", canonical)
        assert sorted(ours) == sorted(logged), canonical  # every step, first passes included: never N/A here
        for step, h in logged.items():
            assert ours[step] == pytest.approx(h[trl_name], abs=1e-6), (canonical, step)
    assert all(logged[s]["clip_ratio/region_mean"] == 0.0 for s in first_pass)  # TRL's ratio is 1 there
    assert max(_series(store, "onpolicy", M.CLIP_REGION_FRAC).values()) > 0  # and the clip binds on second passes
    onpolicy = _series(store, "onpolicy", M.CLIP_ONPOLICY)
    assert onpolicy == {s: (1.0 if s in first_pass else 0.0) for s in logged}
