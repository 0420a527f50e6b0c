"""A controller's cap as it logged it: verl's ``ew_repo_r`` reads ``zeta_max`` from each worker's environment, which
run.json (written by the driver) does not state, so a ζ pinned at its cap got no note and no cap line in advice.
Every controller now logs its cap beside its lever (``control/zeta_max``, ``control/eps_max``); advice and the note
read the logged cap first, the stored setting else."""

from __future__ import annotations

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.analysis.advice import Facts, actions, run_facts

from ._series import collapsing, noisy
from .test_s48_advice_verl import verl_config

VERL_REPO_R = {"framework": "verl", "config": verl_config(mode="ew_repo_r")}
ENV = "$ENTROPY_WATCH_REPO_ZETA_MAX in every worker's environment"


def verl_run(h: np.ndarray, zeta: np.ndarray, cap: float | None) -> RunSeries:
    """A verl ``ew_repo_r`` run with entropy ``h``, ζ ``zeta`` and (unless None) the logged cap ``cap``."""
    steps = np.arange(h.size)
    scalars = {M.CONTROL_ZETA: (steps, zeta), M.CONTROL_TARGET: (steps, np.full(h.size, 1.0))}
    if cap is not None:
        scalars[M.CONTROL_ZETA_MAX] = (steps, np.full(h.size, cap))
    return RunSeries.from_arrays("v", steps, h, scalars=scalars, meta=VERL_REPO_R)


def cap_notes(s: RunSeries) -> list[str]:
    return [x for x in analyze(s).notes if "its cap" in x]


def test_verl_repo_r_pinned_at_its_logged_cap_is_noted_with_the_variable_to_raise() -> None:
    n = 60
    zeta = np.minimum(0.01 * 2.0 ** np.arange(n), 0.2)  # 0.01, 0.02, ..., pinned at 0.2 from step 5
    h = noisy(np.full(n, 0.4), cv=0.03)
    (note,) = cap_notes(verl_run(h, zeta, 0.2))
    assert note.startswith("REPO's |zeta| has sat at its cap (0.2) since step 5: the controller pushes entropy up")
    assert note.endswith(f"raise {ENV} to let it"), note
    assert not cap_notes(verl_run(h, zeta, None))  # no cap known: nothing said (the run.json states none)
    assert not cap_notes(verl_run(h, zeta, 0.5))  # below the cap it ran with: not pinned


def test_the_logged_cap_wins_over_the_stated_one() -> None:
    """The lever met the cap it logged (a worker's environment can differ from the driver's run.json)."""
    f = Facts(run_facts({"framework": "trl.GRPOTrainer", "control": {"kind": "repo-r", "zeta_max": 0.05}}), {})
    assert f.cap("zeta_max") == 0.05
    logged = Facts(f.settings, {M.CONTROL_ZETA_MAX: (9, 0.2)})
    assert logged.cap("zeta_max") == 0.2 and logged.cap("eps_max") is None
    for bad in (0.0, -0.05, float("inf")):  # a writer's absurd cap is no cap: nothing said at it
        assert Facts(f.settings, {M.CONTROL_ZETA_MAX: (9, bad)}).cap("zeta_max") is None, bad


def test_a_collapse_alert_on_verl_repo_r_at_its_cap_says_where_to_raise_it() -> None:
    h = collapsing()
    n = h.size
    s = verl_run(h, np.full(n, 0.05), 0.05)
    got = [a for a in analyze(s).alerts if a.kind == "collapse"]
    assert got, "the constructed run collapses"
    for a in got:
        assert any(line.startswith(f"REPO's zeta is at its cap (0.05) at step {a.step}: raise {ENV}")
                   for line in a.actions), a.actions  # fmt: skip
    without = actions("collapse", Facts(run_facts(VERL_REPO_R), {M.CONTROL_ZETA: (n - 1, 0.05)}))
    assert not any("its cap" in line for line in without)  # the cap unknown: no line


def test_adapo_at_its_cap_quotes_what_a_wider_clip_could_still_free() -> None:
    """The trainer's tiny ADAPO sat at eps_max 1 while the upper clip bound on 0.13% of tokens: raising the cap frees
    almost nothing there (README: no fixed eps_high kept more than 0.39 H_0). The note quotes the share, the median
    of its last 5 points at the lever's last step, and offers REPO-R beside the cap."""
    n = 40
    steps = np.arange(n)
    clip = np.where(steps < 30, 0.02, 0.0013)  # a live prefix reads the points up to its own step only
    clip[-1] = 0.5  # logged after the lever's last value: not read
    scalars = {M.CONTROL_EPS_HIGH: (steps[:-1], np.full(n - 1, 1.0)), M.CLIP_HIGH_FRAC: (steps, clip)}
    for framework, way in (("entropy_watch.trainer", "(--algo repo-r)"), ("trl.GRPOTrainer", 'control="repo-r"')):
        meta = {"framework": framework, "control": {"kind": "adapo", "eps_max": 1.0},
                "config": {"algo_cfg": {"controller": "adapo", "adapo_eps_max": 1.0}}}  # fmt: skip
        s = RunSeries.from_arrays("a", steps, noisy(np.full(n, 0.4), cv=0.03), scalars=scalars, meta=meta)
        (note,) = cap_notes(s)
        assert "the upper clip now binds on 0.13% of tokens (median of its last 5 points)" in note, note
        assert way in note.rsplit("REPO-R", 1)[1], note


def test_a_collapsing_adapo_run_at_its_cap_is_offered_repo_r_beside_the_cap() -> None:
    from .test_s52_advice_trainer import alerts, text

    h = collapsing()
    pinned = text(alerts(h, "adapo", "collapse", {M.CONTROL_EPS_HIGH: 1.0, M.CONTROL_TARGET: 1.0}))
    assert "raise --eps-max" in pinned and "ADAPO is at its cap: hold entropy with REPO-R (--algo repo-r)" in pinned
    moving = text(alerts(h, "adapo", "collapse", {M.CONTROL_EPS_HIGH: 0.5, M.CONTROL_TARGET: 1.0}))
    assert "REPO-R" not in moving and "--eps-max" not in moving, moving  # the controller still has room: its job
