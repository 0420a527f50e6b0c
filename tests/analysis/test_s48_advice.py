"""An alert's suggested actions in the run's trainer's words (analysis/advice.py), computed once in the analysis.

A run whose ``run.json`` (or importer meta) names its framework gets that trainer's config keys with their values, and
loses the lines it already follows; an imported CSV of unknown origin keeps the generic lines. Runs are built with the
metadata as the hooks and importers write it; every surface renders ``alert.actions`` as computed here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import ACTIONS, Alert, Analyzer, RunSeries, analyze
from entropy_watch.analysis.advice import SLOTS
from entropy_watch.importers.loader import load_log

from ._series import collapsing, noisy

H = collapsing()  # collapses from step 150: a warning at ~162, critical at ~233


def trl_meta(**args: object) -> dict:
    """run.json as TRL's hook writes it at train start (hooks/trl.py TrlCallback.train_meta: training_args is
    ``args.to_dict()``, trl_config the CONFIG_FIELDS of the args plus the trainer's resolved epsilons)."""
    training_args = {"learning_rate": 1e-6, "max_grad_norm": 1.0, "cast_lm_head_to_fp32": False, "epsilon": 0.2,
                     "epsilon_high": None, "beta": 0.0, "entropy_coef": 0.0, "use_adaptive_entropy": False,
                     "loss_type": "dapo", "num_generations": 8, "temperature": 1.0, **args}  # fmt: skip
    eps = training_args["epsilon"]
    high = training_args["epsilon_high"] if training_args["epsilon_high"] is not None else eps
    keys = ("epsilon", "epsilon_high", "beta", "learning_rate", "entropy_coef", "use_adaptive_entropy", "loss_type")
    trl_config = {k: training_args[k] for k in keys} | {"epsilon_low": eps, "epsilon_high": high}
    return {"framework": "trl.GRPOTrainer", "config": {}, "training_args": training_args, "trl_config": trl_config,
            "world_size": 1, "max_steps": 0}  # fmt: skip


SHARED = Analyzer()  # the same entropy in every run here: its forecasts are computed once (meta is not its input)


def collapse_alerts(meta: dict, scalars: dict | None = None) -> list[Alert]:
    s = RunSeries.from_arrays("r", np.arange(H.size), H, scalars=scalars, meta=meta)
    got = [a for a in SHARED.analyze(s).alerts if a.kind == "collapse"]
    assert got, "the constructed run raises collapse alerts"
    return got


def text(alerts: list[Alert]) -> str:
    return "\n".join(x for a in alerts for x in a.actions)


def test_every_advised_kind_names_one_slot_per_generic_line() -> None:
    for kind, slots in SLOTS.items():
        assert len(slots) == len(ACTIONS[kind]), kind


def test_trl_run_gets_grpo_config_keys_with_their_values() -> None:
    got = collapse_alerts(trl_meta())
    for a in got:
        assert a.actions[0] == (
            "TRL: epsilon_high is 0.2 (= epsilon); try GRPOConfig(epsilon_high=0.28) (clip-higher, DAPO; it defaults "
            "to epsilon)"
        )
        assert "TRL: learning_rate is 1e-06; try 5e-07" in a.actions
        assert any("cast_lm_head_to_fp32=True" in x for x in a.actions)
        assert any("entropy_coef is 0 (no entropy bonus)" in x and "H_ref 1.0" in x for x in a.actions)
    assert "eps_high 0.28)" not in text(got)  # the generic line is gone


def test_trl_run_already_at_the_suggestions_is_not_told_them_again() -> None:
    got = collapse_alerts(trl_meta(epsilon_high=0.28, cast_lm_head_to_fp32=True))
    said = text(got)
    assert "epsilon_high" not in said and "clip-higher" not in said
    assert "fp32" not in said
    assert all(len(a.actions) == len(ACTIONS["collapse"]) - 2 for a in got)


def test_trl_adaptive_entropy_is_told_its_target_not_to_add_a_bonus() -> None:
    got = collapse_alerts(trl_meta(use_adaptive_entropy=True, entropy_target=0.2, entropy_coef=0.01))
    line = next(x for x in got[0].actions if "entropy_target" in x)
    assert line.startswith("TRL: use_adaptive_entropy acts only at or below entropy_target (0.2 nats)")
    assert "add or raise an entropy bonus" not in text(got)


def test_rloo_run_names_rloo_config_and_no_entropy_bonus_it_lacks() -> None:
    meta = trl_meta() | {"framework": "trl.RLOOTrainer"}
    said = text(collapse_alerts(meta))
    assert "RLOOConfig(epsilon_high=0.28)" in said and "GRPOConfig" not in said
    assert "cast_lm_head_to_fp32" not in said  # a GRPOConfig field only


@pytest.mark.parametrize(
    ("framework", "expected"),
    [
        ("verl", "verl: actor_rollout_ref.actor.clip_ratio_high=0.28"),
        ("openrlhf", "OpenRLHF: --actor.eps_clip_low_high 0.2 0.28"),
    ],
)
def test_hooked_verl_and_openrlhf_runs_get_their_flags(framework: str, expected: str) -> None:
    # hooks/verl.py and hooks/openrlhf.py create their Watch with framework= and no config
    got = collapse_alerts({"framework": framework, "config": {}})
    assert all(a.actions[0].startswith(expected) for a in got)
    assert "raise the upper clip bound" not in text(got)


def test_adapo_or_repo_r_attached_is_not_told_to_attach_them() -> None:
    n = H.size
    steps = np.arange(n)
    adapo = collapse_alerts(trl_meta(), {M.CONTROL_EPS_HIGH: (steps, np.full(n, 0.35))})
    assert "epsilon_high" not in text(adapo) and "attach REPO-R or ADAPO" not in text(adapo)
    repo = collapse_alerts(trl_meta(), {M.CONTROL_ZETA: (steps, np.full(n, 0.01))})
    assert "attach REPO-R or ADAPO" not in text(repo) and "entropy bonus" not in text(repo)
    assert repo[0].actions[0].startswith("TRL: epsilon_high is 0.2")  # REPO-R leaves the clip as it is


def test_repo_r_at_its_cap_is_told_to_raise_zeta_max() -> None:
    n = H.size
    meta = trl_meta() | {"control": {"kind": "repo-r", "zeta_max": 0.05}}
    got = collapse_alerts(meta, {M.CONTROL_ZETA: (np.arange(n), np.full(n, 0.05))})
    want = f"REPO's zeta is at its cap (0.05) at step {got[0].step}: raise ControlConfig(zeta_max=...)"
    assert want in got[0].actions


def test_control_series_are_read_up_to_the_alerts_step_only() -> None:
    """ADAPO attached after the first alert: that alert still says clip-higher, as a live reader saw it then."""
    n = H.size
    s = RunSeries.from_arrays("r", np.arange(n), H, meta=trl_meta(),
                              scalars={M.CONTROL_EPS_HIGH: (np.arange(200, n), np.full(n - 200, 0.35))})  # fmt: skip
    whole = [a for a in analyze(s).alerts if a.kind == "collapse"]
    first, later = whole[0], whole[-1]
    assert first.step < 200 <= later.step
    assert first.actions[0].startswith("TRL: epsilon_high is 0.2") and "epsilon_high" not in " ".join(later.actions)
    live = Analyzer()
    for a in whole:  # the live path, at each alert's step, gives the same alert (actions included)
        assert a in live.analyze(s.prefix(a.step)).alerts


def test_explosion_on_a_run_with_a_kl_penalty_is_told_to_raise_it() -> None:
    t = np.arange(300.0)
    h = noisy(np.where(t < 150, 1.0, np.exp((t - 150) / 40)), cv=0.03)
    s = RunSeries.from_arrays("r", t.astype(int), h, meta=trl_meta(beta=0.04, max_grad_norm=0.5))
    got = [a for a in analyze(s).alerts if a.kind == "explosion"]
    assert got
    for a in got:
        assert "TRL: beta (the KL penalty) is 0.04; raise it" in a.actions
        assert a.actions[0] == "TRL: learning_rate is 1e-06 (try 5e-07); max_grad_norm is 0.5 (lower it)"
        assert not any("entropy bonus" in x or "entropy_coef" in x for x in a.actions)  # it has none to lower


def test_imported_csv_keeps_the_generic_lines(tmp_path: Path) -> None:
    p = tmp_path / "run.csv"
    p.write_text("step,entropy\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(H.tolist())))
    s = RunSeries.from_imported(load_log(p)[0])
    got = [a for a in analyze(s).alerts if a.kind == "collapse"]
    assert got and all(list(a.actions) == ACTIONS["collapse"] for a in got)


def test_imported_verl_log_names_verl_keys(tmp_path: Path) -> None:
    p = tmp_path / "run.jsonl"
    p.write_text("".join(json.dumps({"step": i, "data": {"actor/entropy": v}}) + "\n" for i, v in enumerate(H)))
    run = load_log(p)[0]
    assert run.meta.get("framework") == "verl"
    got = [a for a in analyze(RunSeries.from_imported(run)).alerts if a.kind == "collapse"]
    assert got and all(a.actions[0].startswith("verl: actor_rollout_ref.actor.clip_ratio_high=0.28") for a in got)


def test_a_stored_alert_keeps_its_advice_for_every_surface() -> None:
    """`show`, the app's stored alert list and the report read the alerts table: the actions travel in it."""
    (a, *_) = collapse_alerts(trl_meta())
    back = Alert.from_row(a.to_row(0.0))
    assert back == a and back.actions[0].startswith("TRL: epsilon_high is 0.2")


def test_slack_payload_and_report_show_the_advice(tmp_path: Path) -> None:
    from entropy_watch.notify.notifier import notice_for
    from entropy_watch.notify.payloads import to_slack
    from entropy_watch.report import build_report

    s = RunSeries.from_arrays("r", np.arange(H.size), H, meta=trl_meta())
    res = analyze(s)
    alert = next(a for a in res.alerts if a.kind == "collapse")
    slack = json.dumps(to_slack(notice_for("r", alert, verdict=res.verdict)))
    assert "GRPOConfig(epsilon_high=0.28)" in slack
    html = build_report(s, res, tmp_path / "report.html").read_text()
    assert "GRPOConfig(epsilon_high=0.28)" in html
