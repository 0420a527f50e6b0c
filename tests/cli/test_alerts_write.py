"""`alerts --write` adds alert rows to a run without touching its state (the trainer owns the heartbeat)."""

from __future__ import annotations

import typer.testing

from entropy_watch.cli import app
from entropy_watch.store import Store
from entropy_watch.synthetic import write_to_store


def test_alerts_write_keeps_a_finished_run_finished(tmp_path) -> None:
    write_to_store(tmp_path, "g", kind="collapse_exp", seed=1, n_steps=400)
    store = Store(tmp_path)
    before = next(i for i in store.runs() if i.name == "g")
    assert before.state == "finished"
    r = typer.testing.CliRunner().invoke(app, ["--store", str(tmp_path), "alerts", "--write", "g"])
    assert r.exit_code == 2, r.output  # a synthetic exponential collapse is critical
    after = next(i for i in Store(tmp_path).runs() if i.name == "g")
    assert after.state == "finished" and after.last_step == before.last_step
    kinds = store.sql("SELECT DISTINCT kind FROM alerts WHERE run = ?", ["g"]).column("kind").to_pylist()
    assert "collapse" in kinds
