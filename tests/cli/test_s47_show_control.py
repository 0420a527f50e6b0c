"""``show`` of a run an entropy controller steered lists the controller's series it logged (the value in force for
the next step, its target and the entropy it compared): they were stored but ``show`` said nothing about control. A
run without a controller lists none of them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from entropy_watch import metrics as M
from entropy_watch.cli import app
from entropy_watch.hooks import Watch

CONTROL = {
    M.CONTROL_ZETA: 0.032,
    M.CONTROL_EPS_HIGH: 0.35,
    M.CONTROL_TARGET: 2.138,
    M.CONTROL_ENTROPY: 1.75,
    M.CONTROL_BAND_LOW: 1.5,
    M.CONTROL_BAND_HIGH: 2.5,
    M.CONTROL_ZETA_MAX: 0.05,  # the lever's cap, logged beside it (session 53)
    M.CONTROL_EPS_MAX: 1.0,
}


def _store(tmp_path: Path) -> str:
    root = tmp_path / "store"
    with Watch("steered", store=root) as w:
        for s in range(1, 11):
            w.log(s, **{M.ENTROPY_MEAN: 2.0 - 0.01 * s, M.REWARD_MEAN: 0.5})
            if s % 2 == 0:  # TRL's control hook logs at its update steps
                w.log(s, **{k: v * s / 10 for k, v in CONTROL.items()})
    with Watch("plain", store=root) as w:
        for s in range(1, 11):
            w.log(s, **{M.ENTROPY_MEAN: 2.0, M.REWARD_MEAN: 0.5})
    return str(root)


def test_show_lists_the_control_series_a_run_logged_and_only_those(tmp_path: Path) -> None:
    runner, store = CliRunner(), _store(tmp_path)
    res = runner.invoke(app, ["--store", store, "show", "steered", "--json"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)["metrics"]
    for name, value in CONTROL.items():
        assert metrics[name] == [value, 10]  # the latest value, at its step
    assert M.CONTROL_ENTROPY_COEF not in metrics  # not logged: not listed
    out = runner.invoke(app, ["--store", store, "show", "steered"], env={"COLUMNS": "200"}).stdout
    for name, value in CONTROL.items():
        (line,) = [x for x in out.splitlines() if f" {name} " in x]
        assert f"{value:g}" in line and line.rstrip(" │").endswith("10"), line
    assert M.CONTROL_ENTROPY_COEF not in out
    plain = runner.invoke(app, ["--store", store, "show", "plain", "--json"])
    assert not [k for k in json.loads(plain.stdout)["metrics"] if k.startswith("control/")]
    assert "control" not in runner.invoke(app, ["--store", store, "show", "plain"], env={"COLUMNS": "200"}).stdout
