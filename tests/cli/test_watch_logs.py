"""`watch LOG...`: following logs another tool is still writing (a CSV, a trackio project), with the verdict `alerts
LOG` gives, the errors of a log caught mid-write said once, and usage mistakes as usage errors."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

from entropy_watch.importers.follow import LogReader
from entropy_watch.monitor import Monitor
from entropy_watch.synthetic import generate


def _csv(path: Path, run, upto: int) -> None:
    path.write_text(
        "step,entropy,reward\n" + "".join(f"{s},{run.entropy[s]:.6f},{run.reward[s]:.4f}\n" for s in range(upto))
    )


def test_a_growing_log_is_followed_and_each_alert_reported_once(tmp_path: Path) -> None:
    run = generate("fast_collapse", seed=1, n_steps=300)
    log = tmp_path / "metrics.csv"
    errors: list[tuple[str, str]] = []
    reader = LogReader([log], on_error=lambda p, m: errors.append((p, m)))
    seen: list[str] = []
    monitor = Monitor(reader, on_new_alerts=lambda r, new, v: seen.extend(a.key for a in new))
    monitor.poll()
    assert monitor.states() == {} and not errors  # not there yet: nothing, and no error
    for upto in (60, 150, 300):
        _csv(log, run, upto)
        monitor.poll()
        assert monitor.state("metrics").series.steps[-1] == upto - 1
    monitor.poll()  # nothing changed: nothing analysed again
    assert len(seen) == len(set(seen)) and any("collapse" in k for k in seen)
    from entropy_watch.analysis import RunSeries, analyze
    from entropy_watch.importers import load_log

    whole = analyze(RunSeries.from_imported(load_log(log)[0]))
    assert [a.key for a in monitor.state("metrics").result.alerts] == [a.key for a in whole.alerts]
    log.write_text("step,entropy\n1,0.5,9\n")  # rewritten badly: the last good analysis stays, the error is said once
    monitor.poll()
    monitor.poll()
    assert len(errors) == 1 and "3 fields but the header has 2" in errors[0][1]
    assert monitor.state("metrics").series.steps[-1] == 299


def _trackio(path: Path, steps: range) -> None:
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE IF NOT EXISTS metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, timestamp TEXT, "
        "run_name TEXT, step INTEGER, metrics TEXT)"
    )
    for s in steps:
        h = 1.2 * math.exp(-s / 60)
        con.execute(
            "INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES ('r1', 't', 'grpo', ?, ?)",
            (s, json.dumps({"train/entropy": h, "train/reward": 0.1 + s / 500})),
        )
    con.commit()
    con.close()


def test_watch_cli_follows_a_trackio_project_with_the_alerts_verdict(ew, tmp_path: Path) -> None:
    db = tmp_path / "proj.db"
    _trackio(db, range(0, 200, 4))
    r = ew("--store", tmp_path / "s", "watch", db, "--once", "--json", "--min-severity", "info")
    assert r.code == 0, r.err
    followed = [json.loads(x) for x in r.out.splitlines() if x.startswith("{")]
    once = json.loads(ew("--store", tmp_path / "s", "alerts", db, "--json").out)
    assert [x["key"] for x in followed] == sorted(
        (a["key"] for a in once[0]["alerts"]), key=lambda k: int(k.split(":")[0])
    )
    assert {x["run"] for x in followed} == {"grpo"} and any(x["kind"] == "collapse" for x in followed)


def test_usage_mistakes_are_usage_errors(ew, tmp_path: Path) -> None:
    log = tmp_path / "m.csv"
    _csv(log, generate("healthy", seed=0, n_steps=40), 40)
    for args in (
        [log, "some-run"],  # a log and a store run
        [log, "--write"],  # a log has no alerts table
        ["some-run", "--vocab-size", "32000"],  # log-only options on store runs
        ["--map", "entropy=x"],
    ):
        r = ew("--store", tmp_path / "s", "watch", *args, "--once")
        assert r.code == 2 and "Usage" in r.err, (args, r.err)
