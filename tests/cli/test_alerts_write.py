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


def test_watch_write_on_a_store_that_refuses_it_still_prints_the_alerts(tmp_path, monkeypatch) -> None:
    """`watch --once --write` on a read-only store printed only "callback on_new_alerts failed: StoreUnwritable":
    the collapse it had found was never shown. The alerts print first; the failed write is one line, exit 1."""
    from entropy_watch.cli import alerts_cmds
    from entropy_watch.errors import StoreUnwritable

    write_to_store(tmp_path, "g", kind="collapse_exp", seed=1, n_steps=400)

    def refuse(root, run, new):
        raise StoreUnwritable(f"cannot write to store {root}: read-only file system")

    monkeypatch.setattr(alerts_cmds, "_write_alerts", refuse)
    r = typer.testing.CliRunner().invoke(app, ["--store", str(tmp_path), "watch", "--once", "--write", "g"])
    assert r.exit_code == 1
    assert "CRITICAL collapse" in r.stdout, r.output
    (line,) = [x for x in r.stderr.splitlines() if "not stored" in x]
    assert (
        line == f"[g] the alerts above were not stored: error: cannot write to store {tmp_path}: read-only file system"
    )
