"""MLflow's file store (``mlruns/``), laid out as MLflow 3.17.2 writes it (checked against a store it wrote)."""

from __future__ import annotations

import math

import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import detect_format, load_log


def _run(store, exp: str, run_id: str, name: str, lines: dict[str, list[str]], stage: str = "active"):
    run = store / exp / run_id
    (run / "tags").mkdir(parents=True)
    (run / "tags" / "mlflow.runName").write_text(name)
    (run / "meta.yaml").write_text(
        f"artifact_uri: file:///x/{run_id}/artifacts\nexperiment_id: '{exp}'\nlifecycle_stage: {stage}\n"
        f"run_id: {run_id}\nrun_name: {name}\nstatus: 3\ntags: []\nuser_id: root\n"
    )
    for key, rows in lines.items():
        f = run / "metrics" / key
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("".join(r + "\n" for r in rows))
    return run


@pytest.fixture
def store(tmp_path):
    s = tmp_path / "mlruns"
    (s / "0").mkdir(parents=True)
    (s / "0" / "meta.yaml").write_text("experiment_id: '0'\nlifecycle_stage: active\nname: Default\n")
    (s / ".trash").mkdir()
    ent = [f"{1796308947700 + i} {1.1 * 0.97 ** (3 * i)!r} {3 * i}" for i in range(30)]
    ent += ["1796308947735 nan 90", "garbage", "1796308947736 0.5 93", "1796308947737 0.25 93"]
    rew = [f"{1796308947700 + i} {0.1 + i / 100!r} {3 * i}" for i in range(30)]
    _run(s, "9721", "d1332db786e04cf88588cfaefe066f95", "old-ppo", {"train/entropy": ent, "train/reward": rew})
    _run(s, "9721", "a0000000000000000000000000000001", "gone", {"train/entropy": ent}, stage="deleted")
    _run(s, "55", "b0000000000000000000000000000002", "old-ppo", {"entropy": ["1 0.5 0", "2 0.4 1"]})
    return s


def test_a_store_an_experiment_and_a_run_folder(store) -> None:
    assert detect_format(store) == "mlruns"
    got = {r.name: r for r in load_log(store)}
    assert sorted(got) == ["old-ppo-b0000000", "old-ppo-d1332db7"]  # one name, two runs; the deleted one left out
    run = got["old-ppo-d1332db7"]
    assert run.fmt == "mlruns" and run.mapping[M.ENTROPY_MEAN] == "train/entropy"
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == [3 * i for i in range(30)] + [90, 93]
    assert ent[:30].tolist() == pytest.approx([1.1 * 0.97 ** (3 * i) for i in range(30)])
    assert math.isnan(ent[30]) and ent[31] == 0.25  # NaN a value; the last value written at a step wins
    assert run.series(M.REWARD_MEAN)[0].tolist() == [3 * i for i in range(30)]
    assert "left out 1 run(s) deleted in MLflow" in run.notes
    assert any("skipped 1 metric line(s)" in n and "line 32" in n for n in run.notes)
    (one,) = load_log(store / "9721")
    assert one.name == "old-ppo"
    (direct,) = load_log(store / "55" / "b0000000000000000000000000000002", run="mine")
    assert direct.name == "mine" and direct.series(M.ENTROPY_MEAN)[1].tolist() == [0.5, 0.4]


def test_a_folder_with_nothing_to_read_says_so(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportFormatError, match="MLflow runs"):
        load_log(tmp_path / "empty")
    run = _run(tmp_path / "s", "1", "c" * 32, "r", {"train/entropy": []})
    with pytest.raises(ImportFormatError, match="hold no logged metrics"):
        load_log(run)


def test_metric_lines_without_a_step_use_line_order(tmp_path) -> None:
    """MLflow before 0.9 wrote ``f"{timestamp} {value}\\n"`` (FileStore.log_metric): no step. Read as all step 0 (as
    MLflow now reads them), 40 points became one; the line order is the step instead, with a note."""
    ent = [f"{1546300000000 + 1000 * i} {0.9 * 0.95**i!r}" for i in range(40)]
    rew = [f"{1546300000000 + 1000 * i + 1} {0.2 + i / 100!r}" for i in range(40)]
    _run(tmp_path / "mlruns", "0", "0123456789abcdef0123456789abcdef", "old-grpo", {"entropy": ent, "reward": rew})
    (run,) = load_log(tmp_path / "mlruns")
    steps, values = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(40)) and values.tolist() == pytest.approx([0.9 * 0.95**i for i in range(40)])
    assert run.series(M.REWARD_MEAN)[0].tolist() == list(range(40))
    assert (
        "metric lines without a step ('<timestamp> <value>', MLflow before 0.9) in 'entropy', 'reward': their line "
        "order is the step (first line = step 0)" in run.notes
    )
    assert run.events == []


def _resumed_lines(base: int, value) -> list[str]:
    """A run logged to step 99 (one line a second), killed, resumed from its step-60 checkpoint into the same run
    id and stopped at 79: ``<timestamp ms> <value> <step>`` in the order MLflow appends them."""
    dead = [f"{base + 1000 * s} {value(s, 0)!r} {s}" for s in range(100)]
    resumed = [f"{base + 500_000 + 1000 * s} {value(s, 1)!r} {s}" for s in range(60, 80)]
    return dead + resumed


def test_a_run_resumed_into_its_run_id_reads_where_it_went_on(tmp_path) -> None:
    """What the dead process logged past the checkpoint is a trajectory the run no longer has: without the restart
    rule it read 60-79 resumed, then 80-99 from before. Every metric is cut by the entropy's restart, by timestamp
    (reward is logged 1 ms after the entropy, as ``log_metrics`` does; a metric only the dead process logged past
    the checkpoint goes too); the resume is recorded as in every other format."""
    t0 = 1796308947000
    ent = _resumed_lines(t0, lambda s, gen: 1.0 - s / 200 + gen)
    rew = _resumed_lines(t0 + 1, lambda s, gen: s / 100 + gen)
    probe = [f"{t0 + 1000 * s + 2} 0.5 {s}" for s in range(0, 100, 10)]  # the dead process's only
    _run(tmp_path / "mlruns", "0", "e" * 32, "grpo", {"entropy": ent, "reward": rew, "probe": probe})
    (run,) = load_log(tmp_path / "mlruns")
    steps, values = run.series(M.ENTROPY_MEAN)
    expected = [1.0 - s / 200 + (s >= 60) for s in range(80)]
    assert steps.tolist() == list(range(80)) and values.tolist() == pytest.approx(expected)
    r_steps, r_values = run.series(M.REWARD_MEAN)
    assert r_steps.tolist() == list(range(80))
    assert r_values[60:].tolist() == pytest.approx([s / 100 + 1 for s in range(60, 80)])
    assert run.events == [{"step": 60, "kind": "resume", "payload": {"from_step": 99, "metric": "entropy"}}]
    (note,) = [n for n in run.notes if "restarts" in n]
    assert "metric 'entropy' restarts 1 time(s) (step 99 -> 60)" in note
    assert "40 point(s) logged before it at or past the step it went back to are left out" in note
    assert "(20 logged again, 20 at steps it did not log again)" in note


def test_a_step_logged_again_without_going_back_is_no_restart(tmp_path) -> None:
    """A value logged twice at one step (the last kept) and steps that only climb record no restart."""
    ent = [f"{1000 + s} {0.5!r} {s}" for s in range(30)] + ["2000 0.25 29"]
    _run(tmp_path / "mlruns", "0", "f" * 32, "grpo", {"entropy": ent})
    (run,) = load_log(tmp_path / "mlruns")
    assert run.events == [] and run.series(M.ENTROPY_MEAN)[1][-1] == 0.25
    assert not any("restarts" in n for n in run.notes)
