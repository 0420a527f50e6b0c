"""Advice on the reference trainer's runs reads its controller from the run's settings: the trainer logged DAPO's
fixed ``eps_high`` as ``control/eps_high`` and every run's H_0 as ``control/target_entropy``, so a collapsing DAPO run
was taken for ADAPO ("a controller holds entropy already": no REPO-R, no entropy bonus suggested) and an exploding
GRPO run was told to "check the entropy controller" it does not have. Stores written that way are read right; the
trainer now logs ``control/*`` only for a controller (tests/trainer/test_smoke.py)."""

from __future__ import annotations

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert, RunSeries, analyze
from entropy_watch.trainer.config import preset

from ._series import collapsing, noisy


def trainer_meta(algo: str) -> dict:
    """run.json as the reference trainer writes it (``Watch(config=cfg.to_dict(), framework=...)``)."""
    return {"framework": "entropy_watch.trainer", "config": preset("tiny", algo).to_dict()}


def alerts(h: np.ndarray, algo: str, kind: str, logged: dict[str, float]) -> list[Alert]:
    """``kind`` alerts of a run of ``algo`` whose entropy is ``h``, with ``logged`` control series constant."""
    steps = np.arange(h.size)
    scalars = {name: (steps, np.full(h.size, value)) for name, value in logged.items()}
    s = RunSeries.from_arrays("r", steps, h, scalars=scalars, meta=trainer_meta(algo))
    got = [a for a in analyze(s).alerts if a.kind == kind]
    assert got, f"the constructed run raises {kind} alerts"
    return got


def text(got: list[Alert]) -> str:
    return "\n".join(x for a in got for x in a.actions)


def test_a_collapsing_dapo_run_is_told_of_repo_r_and_the_bonus_whatever_control_series_it_logged() -> None:
    h = collapsing()
    now = alerts(h, "dapo", "collapse", {})
    before = alerts(h, "dapo", "collapse", {M.CONTROL_EPS_HIGH: 0.28, M.CONTROL_TARGET: 1.0})  # as logged before
    for got in (now, before):
        said = text(got)
        assert "entropy-watch train --algo repo-r" in said and "--algo entropy-bonus" in said, said
        assert "ADAPO" not in said and "--algo dapo" not in said  # DAPO's clip-higher is on already
    assert [a.actions for a in before] == [a.actions for a in now]


def test_an_adapo_run_is_still_one() -> None:
    said = text(alerts(collapsing(), "adapo", "collapse", {M.CONTROL_EPS_HIGH: 0.3, M.CONTROL_TARGET: 1.0}))
    assert "--algo repo-r" not in said and "--algo dapo" not in said


def test_an_exploding_grpo_run_is_not_told_to_check_a_controller_it_does_not_have() -> None:
    t = np.arange(300.0)
    h = noisy(np.where(t < 150, 1.0, np.exp((t - 150) / 40)), cv=0.03)
    said = text(alerts(h, "grpo", "explosion", {M.CONTROL_TARGET: 1.0}))
    assert "controller" not in said, said
    said = text(alerts(h, "entropy-adaptive", "explosion", {M.CONTROL_ENTROPY_COEF: 0.01, M.CONTROL_TARGET: 1.0}))
    assert "check the entropy controller: its target was 1 nats" in said, said
