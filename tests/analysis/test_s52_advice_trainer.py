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


def _pinned(algo: str, name: str, values: np.ndarray, meta: dict | None = None) -> RunSeries:
    """A steady run of ``algo`` whose controller logged ``values`` of ``name`` and its target 1.0 at every step."""
    n = values.size
    steps = np.arange(n)
    h = noisy(np.full(n, 0.4), cv=0.03)
    scalars = {name: (steps, values), M.CONTROL_TARGET: (steps, np.full(n, 1.0))}
    return RunSeries.from_arrays("r", steps, h, scalars=scalars, meta=meta or trainer_meta(algo))


def test_a_controller_at_its_cap_is_noted_on_every_surface_with_where_to_raise_it() -> None:
    """The trainer's ADAPO sat at eps_max 1 from step 19 of 400 while entropy fell to 32% of its target, read "ok"
    with nothing said. The note says since when, the target (the headline says the entropy) and the trainer's key."""
    cap = preset("tiny", "adapo").algo_cfg.adapo_eps_max
    eps = np.minimum(0.2 + 0.05 * np.arange(60), cap)  # reaches the cap at step 16
    res = analyze(_pinned("adapo", M.CONTROL_EPS_HIGH, eps))
    (note,) = [x for x in res.notes if "its cap" in x]
    assert note.startswith(f"ADAPO's eps_high has sat at its cap ({cap:g}) since step 16: the controller pushes")
    assert "target 1)" in note and note.endswith("raise --eps-max, or hold entropy with REPO-R (--algo repo-r)")
    assert note in res.verdict.notes  # what show, alerts, the report and the app print
    for at in (19, 20, 40):  # pinned for 4, 5, 25 points: live and post hoc agree
        prefix = _pinned("adapo", M.CONTROL_EPS_HIGH, eps[: at + 1])
        assert (note.split(":")[0] in " ".join(analyze(prefix).notes)) == (at >= 20), at


def test_repo_r_pinned_below_zero_pushes_down_and_an_attached_controller_is_told_its_config() -> None:
    zeta = np.full(40, -0.05)
    meta = {"framework": "trl.GRPOTrainer", "control": {"kind": "repo-r", "zeta_max": 0.05}}
    (note,) = [x for x in analyze(_pinned("repo-r", M.CONTROL_ZETA, zeta, meta)).notes if "its cap" in x]
    assert "REPO's |zeta| has sat at its cap (0.05) since step 0" in note and "pushes entropy down" in note
    assert note.endswith("raise ControlConfig(zeta_max=...) to let it")


def test_no_note_off_the_cap_or_without_a_known_cap() -> None:
    moving = 0.2 + 0.01 * np.sin(np.arange(60))
    assert not [x for x in analyze(_pinned("adapo", M.CONTROL_EPS_HIGH, moving)).notes if "its cap" in x]
    unknown = {"framework": "verl", "config": {}}  # ew_repo_r's zeta_max is not in what advice reads of verl
    pinned = np.full(60, 0.05)
    assert not [x for x in analyze(_pinned("repo-r", M.CONTROL_ZETA, pinned, unknown)).notes if "its cap" in x]
