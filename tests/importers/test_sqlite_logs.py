"""trackio projects and MLflow stores (SQLite files) read as runs. The tables are created here with the DDL that
trackio 0.43.0 and MLflow 3.17.2 write (checked against files those versions wrote), and trackio's first layout."""

from __future__ import annotations

import json
import math
import sqlite3
import sys

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import detect_format, load_log

TRACKIO_043 = """CREATE TABLE metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, timestamp TEXT NOT NULL, run_name TEXT NOT NULL,
    step INTEGER NOT NULL, metrics TEXT NOT NULL, log_id TEXT, space_id TEXT)"""
TRACKIO_FIRST = """CREATE TABLE metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL, run_name TEXT NOT NULL, step INTEGER NOT NULL,
    metrics TEXT NOT NULL)"""
MLFLOW_RUNS = """CREATE TABLE runs (run_uuid VARCHAR(32) NOT NULL PRIMARY KEY, name VARCHAR(250), status VARCHAR(9),
    lifecycle_stage VARCHAR(20), experiment_id INTEGER, deleted_time BIGINT)"""
MLFLOW_METRICS = """CREATE TABLE metrics (key VARCHAR(250) NOT NULL, value FLOAT NOT NULL, timestamp BIGINT NOT NULL,
    run_uuid VARCHAR(32) NOT NULL, step BIGINT DEFAULT '0' NOT NULL, is_nan BOOLEAN DEFAULT '0' NOT NULL,
    PRIMARY KEY (key, timestamp, step, run_uuid, value, is_nan))"""


def _entropy(kind: str, step: int) -> float:
    return 1.2 * 0.985**step if kind == "collapse" else 0.5 + 0.01 * math.sin(step)


def _trackio(path, ddl: str, *, as_bytes: bool) -> None:
    con = sqlite3.connect(path)
    con.execute(ddl)
    con.execute("PRAGMA journal_mode = WAL")  # as trackio opens it
    with_id = "run_id" in ddl
    for run_id, name, kind in (("a1b2c3d4e5", "grpo-a", "collapse"), ("f6f7f8f9f0", "grpo-b", "healthy")):
        for step in range(0, 200, 5):
            m = {"train/entropy": _entropy(kind, step), "train/reward": 0.1 + step / 400, "train": {"kl": 0.01}}
            if kind == "healthy" and step == 100:
                m["train/entropy"] = "NaN"  # trackio's serialize_values
            blob = json.dumps(m).encode() if as_bytes else json.dumps(m)
            cols = ("run_id, " if with_id else "") + "timestamp, run_name, step, metrics"
            vals = ((run_id,) if with_id else ()) + ("2026-12-03T14:39:47+00:00", name, step, blob)
            con.execute(f"INSERT INTO metrics ({cols}) VALUES ({', '.join('?' * len(vals))})", vals)
    con.execute("INSERT INTO metrics (" + ("run_id, " if with_id else "") + "timestamp, run_name, step, metrics) "
                "VALUES (" + ("'a1b2c3d4e5', " if with_id else "") + "'t', 'grpo-a', 7, '{not json')")  # fmt: skip
    con.commit()
    con.close()


@pytest.mark.parametrize(("ddl", "as_bytes"), [(TRACKIO_043, True), (TRACKIO_FIRST, False)])
def test_a_trackio_project_is_one_run_per_run(tmp_path, ddl, as_bytes) -> None:
    p = tmp_path / "rl-proj.db"
    _trackio(p, ddl, as_bytes=as_bytes)
    before = p.read_bytes()
    assert detect_format(p) == "trackio"
    a, b = load_log(p)
    assert (a.name, b.name) == ("grpo-a", "grpo-b") and a.fmt == "trackio" and a.source == str(p)
    assert a.mapping[M.ENTROPY_MEAN] == "train/entropy" and a.mapping[M.REWARD_MEAN] == "train/reward"
    steps, ent = a.series(M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(0, 200, 5))
    assert ent.tolist() == pytest.approx([_entropy("collapse", s) for s in range(0, 200, 5)])
    assert a.series("train/kl")[1].tolist() == pytest.approx([0.01] * 40)  # nested objects flattened
    assert any("skipped 1 metrics row(s) whose JSON did not parse" in n for n in a.notes)  # and the rows around it kept
    _, eb = b.series(M.ENTROPY_MEAN)
    assert math.isnan(eb[20]) and np.isfinite(np.delete(eb, 20)).all()  # a logged NaN stays a value
    assert p.read_bytes() == before  # opened read-only
    assert [r.name for r in load_log(p, run="x")] == ["x-grpo-a", "x-grpo-b"]


def test_an_mlflow_store_restores_nan_and_inf_and_leaves_deleted_runs_out(tmp_path) -> None:
    p = tmp_path / "mlflow.db"
    con = sqlite3.connect(p)
    con.execute(MLFLOW_RUNS)
    con.execute(MLFLOW_METRICS)
    runs = (("u1", "ppo-a", "active"), ("u2", "ppo-b", "active"), ("u3", "gone", "deleted"), ("u4", "ppo-a", "active"))
    for uuid, name, stage in runs:
        con.execute("INSERT INTO runs VALUES (?, ?, 'FINISHED', ?, 1, NULL)", (uuid, name, stage))
        for step in range(0, 150, 3):
            h, nan = _entropy("healthy", step), 0
            if uuid == "u2" and step == 60:
                h, nan = 0.0, 1  # how MLflow stores NaN
            if uuid == "u2" and step == 63:
                h = sys.float_info.max  # and inf
            con.execute(
                "INSERT INTO metrics VALUES ('actor/entropy', ?, ?, ?, ?, ?)", (h, 1000 + step, uuid, step, nan)
            )
            con.execute("INSERT INTO metrics VALUES ('critic/score/mean', 0.5, ?, ?, ?, 0)", (1000 + step, uuid, step))
    con.execute("INSERT INTO metrics VALUES ('actor/entropy', 0.25, 5000, 'u1', 0, 0)")  # logged again later: wins
    con.commit()
    con.close()
    assert detect_format(p) == "mlflow"
    got = {r.name: r for r in load_log(p)}
    assert sorted(got) == ["ppo-a-u1", "ppo-a-u4", "ppo-b"]  # two runs share a name: their ids tell them apart
    steps, ent = got["ppo-b"].series(M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(0, 150, 3))
    assert math.isnan(ent[20]) and ent[21] == math.inf
    assert got["ppo-a-u1"].series(M.ENTROPY_MEAN)[1][0] == 0.25
    assert got["ppo-b"].mapping[M.REWARD_MEAN] == "critic/score/mean"
    assert "left out 1 run(s) deleted in MLflow" in got["ppo-b"].notes


def test_an_mlflow_run_resumed_into_its_run_id_reads_where_it_went_on(tmp_path) -> None:
    """mlflow.db orders a run's values by ``timestamp``: a run killed at step 99 and resumed from its step-60
    checkpoint into the same run id reads 0-79, the resumed values from 60 on, with the resume recorded."""
    p = tmp_path / "mlflow.db"
    con = sqlite3.connect(p)
    con.execute(MLFLOW_RUNS)
    con.execute(MLFLOW_METRICS)
    con.execute("INSERT INTO runs VALUES ('u1', 'grpo', 'FINISHED', 'active', 1, NULL)")
    for gen, (start, stop, t0) in enumerate(((0, 100, 1000), (60, 80, 900_000))):
        for step in range(start, stop):
            for key, value in (("actor/entropy", 1.0 - step / 200 + gen), ("critic/score/mean", step / 100 + gen)):
                con.execute("INSERT INTO metrics VALUES (?, ?, ?, 'u1', ?, 0)", (key, value, t0 + 1000 * step, step))
    con.commit()
    con.close()
    (run,) = load_log(p)
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(80))
    assert ent.tolist() == pytest.approx([1.0 - s / 200 + (s >= 60) for s in range(80)])
    assert run.series(M.REWARD_MEAN)[0].tolist() == list(range(80))
    assert run.events == [{"step": 60, "kind": "resume", "payload": {"from_step": 99, "metric": "actor/entropy"}}]
    assert any("metric 'actor/entropy' restarts 1 time(s) (step 99 -> 60)" in n for n in run.notes)


def test_other_sqlite_files_get_one_line(tmp_path) -> None:
    other = tmp_path / "app.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(ImportFormatError, match="neither a trackio project nor an MLflow store \\(tables: users\\)"):
        load_log(other)
    empty = tmp_path / "empty.db"
    con = sqlite3.connect(empty)
    con.execute(TRACKIO_043)
    con.commit()
    con.close()
    with pytest.raises(ImportFormatError, match="holds no logged metrics"):
        load_log(empty)
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(ImportFormatError, match="not a readable SQLite database") as e:
        load_log(broken)
    assert "\n" not in str(e.value)
