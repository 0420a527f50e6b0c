"""Advice for runs recorded through the real hooks into a store: `entropy-watch alerts` and a live ``on_alert``
callback get the actions in the run's trainer's words (its run.json read through ``analysis_meta``)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import ACTIONS, Alert, RunSeries, analyze
from entropy_watch.store import Store

from ..cli_run import run_cli
from ._series import collapsing

pytest.importorskip("torch")
from entropy_watch.hooks.trl import TrlCallback  # noqa: E402
from entropy_watch.hooks.watch import Watch  # noqa: E402

H = collapsing()


def grpo_args(**over: object) -> SimpleNamespace:
    """The GRPOConfig fields the TRL hook stores (hooks/trl.py CONFIG_FIELDS and ``to_dict()``), at TRL's defaults."""
    fields = {"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": None, "beta": 0.0, "learning_rate": 1e-6,
              "entropy_coef": 0.0, "use_adaptive_entropy": False, "entropy_target": 0.2, "temperature": 1.0,
              "num_generations": 8, "max_grad_norm": 1.0, "cast_lm_head_to_fp32": False, "world_size": 1,
              **over}  # fmt: skip
    return SimpleNamespace(**fields, to_dict=lambda: dict(fields))


def record(root: Path, run: str, framework: str, meta: dict | None = None, **kwargs: object) -> Watch:
    w = Watch(run, store=root, framework=framework, strict=True, **kwargs)  # type: ignore[arg-type]
    if meta:
        w.update_meta(**meta)
    for i, v in enumerate(H.tolist()):
        w.log_dict(i, {M.ENTROPY_MEAN: v})
    w.close()
    return w


def trl_meta(**over: object) -> dict:
    """What TrlCallback.on_train_begin stores (train_meta, without a trainer: the args' own epsilons)."""
    cb = TrlCallback(framework="trl.GRPOTrainer")
    return cb.train_meta(grpo_args(**over), SimpleNamespace(max_steps=0))


def cli_actions(capsys: pytest.CaptureFixture[str], root: Path, run: str) -> list[list[str]]:
    ran = run_cli(capsys, "--store", root, "alerts", run, "--json")
    assert ran.code in (1, 2), ran.err
    return [a["actions"] for r in json.loads(ran.out) for a in r["alerts"] if a["kind"] == "collapse"]


def test_trl_hooked_run_in_the_store_gets_trl_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(tmp_path, "trl", "trl.GRPOTrainer", trl_meta())
    got = cli_actions(capsys, tmp_path, "trl")
    assert got and all(a[0].startswith("TRL: epsilon_high is 0.2 (= epsilon); try GRPOConfig(epsilon_high=0.28)")
                       for a in got)  # fmt: skip
    record(tmp_path, "trl-dapo", "trl.GRPOTrainer", trl_meta(epsilon_high=0.28, cast_lm_head_to_fp32=True))
    said = json.dumps(cli_actions(capsys, tmp_path, "trl-dapo"))
    assert "epsilon_high" not in said and "clip-higher" not in said and "fp32" not in said


def test_verl_hooked_run_in_the_store_gets_verl_keys(tmp_path: Path) -> None:
    from entropy_watch.hooks.verl import ENTROPY_DEFINITION

    record(tmp_path, "v", "verl", entropy_definition=ENTROPY_DEFINITION, reduce=False)  # as hooks/verl.get_watch
    res = analyze(RunSeries.from_reader(Store(tmp_path), "v"))
    got = [a for a in res.alerts if a.kind == "collapse"]
    assert got and all(a.actions[0].startswith("verl: actor_rollout_ref.actor.clip_ratio_high=0.28") for a in got)


def test_plain_loop_in_the_store_keeps_the_generic_lines(tmp_path: Path) -> None:
    record(tmp_path, "p", "torch")
    got = [a for a in analyze(RunSeries.from_reader(Store(tmp_path), "p")).alerts if a.kind == "collapse"]
    assert got and all(list(a.actions) == ACTIONS["collapse"] for a in got)


def test_live_analysis_and_its_stored_alerts_get_the_trl_advice(tmp_path: Path) -> None:
    """The hook's in-process analysis reads run.json as the hook writes it; the alerts it stores (what `show`, the
    app and the report of a stored run list) carry the advice."""
    w = Watch("live", store=tmp_path, framework="trl.GRPOTrainer", strict=True, live=True)
    w.update_meta(**trl_meta())
    for i, v in enumerate(H.tolist()):
        w.log_dict(i, {M.ENTROPY_MEAN: v})
    w.live.flush(10)
    found = [a for a in w.live.alerts if a.kind == "collapse"]
    w.close()
    assert found and all(a.actions[0].startswith("TRL: epsilon_high is 0.2") for a in found)
    rows = Store(tmp_path).table("live", "alerts").to_pylist()
    stored = [Alert.from_row(r) for r in rows if r["kind"] == "collapse"]
    assert stored and all(a.actions[0].startswith("TRL: epsilon_high is 0.2") for a in stored)
