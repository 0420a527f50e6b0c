"""Listing after a writer dies: ``ls`` and the ``show`` header report the last step and latest entropy of the rows the
store holds, also when the writer was killed between publishing segments and refreshing its heartbeat (audit: ``ls``
said step 1806 of a run stored through 3178, forever). See ``entropy_watch/store/summary.py``."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.cli import main
from entropy_watch.errors import RunNotFound
from entropy_watch.store import RunWriter, Store, compact
from entropy_watch.store import reader as reader_mod
from entropy_watch.store import summary as summary_mod
from entropy_watch.store.layout import default_root

from ..waiting import wait_until


def _stored(store: Store, run: str) -> tuple[int, tuple[float, int]]:
    """(highest step of any scalar, (entropy value, step) at entropy's highest step) read from the rows."""
    rows = store.scalars(run)
    steps = rows.column("step").to_numpy()
    steps_e, values_e = store.series(run, M.ENTROPY_MEAN)
    return int(steps.max()), (float(values_e[-1]), int(steps_e[-1]))


def _stored_past(root: Path, run: str, step: int) -> bool:
    """Whether the store holds a scalar row of ``run`` past ``step`` (waited on, not slept for: on a loaded 2-core
    machine a trainer killed 0.8 s after its first step had stored only 54 steps)."""
    try:
        return int(Store(root).scalars(run).column("step").to_numpy().max(initial=-1)) > step
    except RunNotFound:  # its first segment is not published yet
        return False


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> dict | list:
    capsys.readouterr()
    main(list(args))
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("kill_after_s", [0.8, 1.7, 2.6])
def test_listing_after_sigkill_matches_the_stored_rows(
    root: Path,
    spawn: Callable,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kill_after_s: float,
) -> None:
    proc = spawn("trainer", root, "k", 0.25, 0.003)  # publishes every 0.25 s; the liveness heartbeat is 5 s
    assert proc.stdout.readline().startswith("L 0"), proc.stderr.read()
    wait_until(lambda: _stored_past(root, "k", 50), "50 stored steps")  # the kill then lands anywhere in a round
    time.sleep(kill_after_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = Store(root)
    last, entropy = _stored(store, "k")
    assert last > 50, "the trainer logged for a while"

    def check(state: str) -> None:
        info = store.run_info("k")
        assert info.state == state
        assert (info.last_step, info.latest[M.ENTROPY_MEAN]) == (last, entropy)
        ls = _cli(capsys, "--store", str(root), "ls", "--json")[0]
        assert (ls["state"], ls["last_step"], ls["entropy"]) == (state, last, entropy[0])
        show = _cli(capsys, "--store", str(root), "show", "k", "--json")
        assert show["last_step"] == last and show["metrics"][M.ENTROPY_MEAN] == [entropy[0], entropy[1]]

    check("running")  # just killed: the heartbeat is still fresh
    real = time.time
    monkeypatch.setattr(reader_mod.time, "time", lambda: real() + 60.0)
    check("stalled")  # and once the run shows as stalled, still the rows stored


def _entropy(w: RunWriter, steps: range, seq: int | None = None) -> None:
    s = np.array(list(steps))
    w.write("scalars", {"step": s, "name": [M.ENTROPY_MEAN] * len(s), "value": s / 100}, seq=seq)


def test_segments_after_the_last_heartbeat_are_folded_in(any_root: str) -> None:
    """A writer that never closes (as after a kill) with segments its heartbeat does not cover: a late segment, and
    a retried batch under a number reserved before the heartbeat; then compaction merges them into a part."""
    w = RunWriter(any_root, "k", heartbeat_interval_s=3600)  # no heartbeat after the first one
    for lo in range(0, 40, 10):
        _entropy(w, range(lo, lo + 10))
    reserved = w.next_seq("scalars")  # its first publish fails (say); the heartbeat then lists it as open
    _entropy(w, range(40, 45))
    w.heartbeat()
    _entropy(w, range(45, 50))  # published after the heartbeat
    _entropy(w, range(50, 52), seq=reserved)  # the retry lands after the heartbeat too
    w.write("hist", {"step": [60], "bin": [0], "count": [1]})  # last_step counts every table
    want = (60, {M.ENTROPY_MEAN: (pytest.approx(0.51), 51)})
    info = Store(any_root).run_info("k")
    assert (info.state, info.last_step, info.latest) == ("running", *want)

    compact(any_root, min_age_s=0.0, final=True, grace_s=0.0)
    root = default_root(any_root)
    info = Store(root).runs()[0]
    assert (info.last_step, info.latest) == want, "the uncovered segments are read from the part that merged them"


def test_only_ranks_that_never_closed_are_checked_and_one_query_serves_them(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(12):
        with RunWriter(root, f"done{i:02d}") as w:
            _entropy(w, range(0, 10 + i))
    live = [RunWriter(root, f"live{i}", heartbeat_interval_s=3600) for i in range(3)]
    for w in live:
        _entropy(w, range(0, 20))
        w.heartbeat()  # covers everything so far
    listed: list[str] = []
    queries: list[list[str]] = []
    real_names, real_query = summary_mod._names, summary_mod._query
    monkeypatch.setattr(summary_mod, "_names", lambda folder: listed.append(str(folder)) or real_names(folder))
    monkeypatch.setattr(summary_mod, "_query", lambda cur, sels: queries.append(sorted(sels)) or real_query(cur, sels))

    infos = {i.name: i for i in Store(root).runs()}
    assert queries == [], "nothing uncovered: no query"
    assert len(listed) == 3 * 5 and all("run=live" in f for f in listed), "only the live ranks' table folders"
    assert infos["done11"].last_step == 20 and infos["live2"].last_step == 19

    _entropy(live[0], range(20, 25))
    _entropy(live[2], range(20, 30))
    infos = {i.name: i for i in Store(root).runs()}
    assert queries == [["scalars"]], "one query for every rank behind"
    assert [infos[f"live{i}"].last_step for i in range(3)] == [24, 19, 29]
    assert infos["live2"].latest[M.ENTROPY_MEAN] == (pytest.approx(0.29), 29)


def test_a_restarted_writer_carries_what_its_dead_session_published_after_its_heartbeat(any_root: str) -> None:
    """A session that published steps 0-49 after its last heartbeat and died: the next session of the rank carried
    that stale heartbeat, so once it logged step 1 (a second training, no resume) ``ls`` read last step 1 of a run
    whose rows reach 49. The restart folds in the catch-up listings do; ``earlier_last_step`` is that step too."""
    w = RunWriter(any_root, "k", heartbeat_interval_s=3600)  # no heartbeat after the first one
    for lo in range(0, 50, 10):
        _entropy(w, range(lo, lo + 10))
    again = RunWriter(any_root, "k", heartbeat_interval_s=3600)  # the dead one never closed: a restart
    assert again.earlier_last_step == 49
    _entropy(again, range(1, 2))
    again.heartbeat()
    info = Store(any_root).run_info("k")
    assert info.last_step == 49 == _stored(Store(any_root), "k")[0]


def test_a_restart_s_catch_up_keeps_the_sql_memory_limit_and_spills_outside_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catch-up runs inside the restarting trainer; it opened DuckDB with DuckDB's defaults (80% of the machine's
    memory beside the trainer, spilling into ``.tmp`` of the working directory) where every other read of the store
    keeps ``$ENTROPY_WATCH_SQL_MEMORY`` and spills into ``$TMPDIR``."""
    import duckdb

    root = tmp_path / "store"
    dead = RunWriter(root, "k", heartbeat_interval_s=3600)
    _entropy(dead, range(0, 10))  # published after its only heartbeat; the writer never closes
    real, opened = duckdb.connect, []

    def spy(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        con = real(*args, **kwargs)
        opened.append(
            con.sql("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchall()[0]
        )
        return con

    monkeypatch.setenv("ENTROPY_WATCH_SQL_MEMORY", "300MB")
    monkeypatch.setattr(duckdb, "connect", spy)
    monkeypatch.chdir(tmp_path)
    assert RunWriter(root, "k", heartbeat_interval_s=3600).earlier_last_step == 9  # the catch-up ran
    limit = real(":memory:", config={"memory_limit": "300MB"}).sql("SELECT current_setting('memory_limit')").fetchall()
    assert opened and all(con_limit == limit[0][0] for con_limit, _ in opened), opened
    assert all(not Path(spill).resolve().is_relative_to(tmp_path) for _, spill in opened), opened
