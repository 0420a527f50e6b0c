"""``Monitor(keep=N)``: the monitor's memory is bounded by the runs looked at, not the store, and no verdict changes.

Every run's analysed series (and its incremental analyzer, which holds what it saw) stayed in memory: the app's
monitor and ``entropy-watch watch`` over a 200-run store held every run's series. With ``keep`` the whole analysis
is kept for the runs held (the pages' runs) and the analyzers of the runs analysed most recently; every other run
keeps its verdict, alerts and notes, and is read and analysed again (to the same result) when asked for whole.
``watch`` holds the rows of the live runs only (a run whose data moved after its first analysis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from entropy_watch import monitor as monitor_mod
from entropy_watch import store as store_mod
from entropy_watch.analysis import DetectorConfig, RunSeries
from entropy_watch.cli import watch_cmd
from entropy_watch.monitor import Monitor
from entropy_watch.store import RunWriter, Store, TailReader
from entropy_watch.synthetic import write_to_store

from .cli_run import run_cli

KINDS = ["fast_collapse", "healthy", "explosion"]


def _store(root: Path) -> None:
    for i, kind in enumerate(KINDS):
        write_to_store(root, f"r{i}", kind, seed=i, n_steps=120)


def _seen(mon: Monitor) -> list[str]:
    """Runs whose incremental analyzer holds what it analysed."""
    return sorted(r for r, job in mon._jobs.items() if job.analyzer._seen_steps.size)


def test_keep_trims_the_runs_not_held_and_keeps_every_verdict(tmp_path: Path) -> None:
    _store(tmp_path)
    alerts: list[tuple[str, int]] = []
    full = Monitor(Store(tmp_path))
    full.poll()
    mon = Monitor(Store(tmp_path), keep=1, on_new_alerts=lambda r, a, v: alerts.append((r, len(a))))
    mon.poll()
    assert mon.states().keys() == full.states().keys() == {"r0", "r1", "r2"}
    for run, st in mon.states().items():
        want = full.state(run)
        assert want is not None and want.series is not None and not want.trimmed
        assert st.trimmed and st.series is None and st.result is not None and st.result.prep is None
        assert st.result == want.result and st.verdict == want.verdict, run  # alerts, notes, reference, verdict
        assert repr(st.result.latest_forecast) == repr(want.result.latest_forecast)  # NaN fields: not ==
    assert len(_seen(mon)) <= 1, "one incremental analyzer kept, not one per run"
    told = list(alerts)
    mon.hold("r0")  # a page draws r0: its analysis is made again, whole, and nothing is told twice
    st = mon.refresh("r0", wait_s=30.0)
    assert st is not None and not st.trimmed and st.series is not None and st.result is not None
    assert st.result.prep is not None and st.result == full.state("r0").result  # type: ignore[union-attr]
    assert alerts == told
    assert mon.refresh("r0") is st, "held and analysed: not analysed again"
    mon.hold("r1")  # keep=1: r0 let go, trimmed
    assert mon.held == ["r1"] and mon.state("r0").trimmed  # type: ignore[union-attr]


def test_keep_follows_a_live_run_to_the_same_verdicts(tmp_path: Path) -> None:
    _store(tmp_path)
    w = RunWriter(tmp_path, "live")
    full, mon = Monitor(Store(tmp_path)), Monitor(Store(tmp_path), keep=1)
    series = RunSeries.from_reader(Store(tmp_path), "r0")
    for start in range(0, 120, 40):
        steps = series.steps[start : start + 40]
        w.write("scalars", {"step": steps, "name": ["entropy/mean"] * len(steps), "value": series.entropy[start:][:40]})
        for m in (full, mon):
            m.poll()
        for run in full.states():
            assert mon.state(run).result == full.state(run).result, (run, start)  # type: ignore[union-attr]
        assert len(_seen(mon)) <= 1
    w.close()


def test_keep_must_be_a_number_of_runs(tmp_path: Path) -> None:
    for bad in (0, -2, True, 2.5):
        with pytest.raises(ValueError, match="keep must be a number of runs"):
            Monitor(Store(tmp_path), keep=bad)  # type: ignore[arg-type]


def test_the_worker_process_keeps_a_bounded_number_of_analyzers(tmp_path: Path, monkeypatch: Any) -> None:
    write_to_store(tmp_path, "a", "fast_collapse", seed=0, n_steps=40)
    series = RunSeries.from_reader(Store(tmp_path), "a")
    monkeypatch.setattr(monitor_mod, "_WORKER_ANALYZERS", type(monitor_mod._WORKER_ANALYZERS)())
    monkeypatch.setattr(monitor_mod, "WORKER_ANALYZERS_KEEP", 3)
    for i in range(8):
        monitor_mod.analyse_in_worker(f"root\0run{i}", series, DetectorConfig())
    assert list(monitor_mod._WORKER_ANALYZERS) == ["root\0run5", "root\0run6", "root\0run7"]


def test_watch_holds_no_run_it_analysed_once_and_says_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(tmp_path)
    readers: list[TailReader] = []

    class Spy(TailReader):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            readers.append(self)

        def close(self) -> None:  # the rows it held are counted after the command
            pass

    monkeypatch.setattr(store_mod, "TailReader", Spy)  # watch imports it when it runs
    monkeypatch.setattr(watch_cmd, "WATCH_KEEP_RUNS", 1)
    bounded = run_cli(capsys, "--store", tmp_path, "watch", "--iterations", "2", "--interval", "0.01")
    monkeypatch.setattr(watch_cmd, "WATCH_KEEP_RUNS", 100)
    every = run_cli(capsys, "--store", tmp_path, "watch", "--iterations", "2", "--interval", "0.01")
    assert bounded.code == every.code == 0 and "[r0]" in bounded.out
    assert sorted(bounded.out.splitlines()) == sorted(every.out.splitlines())
    held = readers[0].query("SELECT count(*) AS n FROM scalars").to_pylist()[0]["n"]
    assert held == 0, "every run analysed once, none live: no run's rows held"


def test_watch_follows_a_run_analysed_again(tmp_path: Path) -> None:
    got: list[Any] = []

    class Reader:
        def follow(self, *runs: str) -> None:
            got.append(runs)

    on_analysis = watch_cmd._follow_live(Reader(), lambda st: got.append(st.run))
    state = type("S", (), {"run": "a"})()
    on_analysis(state)
    assert got == ["a"], "analysed once: not followed"
    on_analysis(state)
    assert got == ["a", ("a",), "a"]


def test_the_runs_page_starts_no_analysis_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Runs page asks for every run's verdict: each ask started an analysis thread reading the run's files (60
    runs on a cold server: 60 threads beside the page, its first paint 16-19 s). The background loop analyses them,
    the runs asked for first; a run a page draws in detail (held) is still analysed at once."""
    from entropy_watch.app import data

    _store(tmp_path)
    monkeypatch.setattr(data, "analysis_pool", lambda: None)
    monkeypatch.setattr(data, "MONITOR_INTERVAL_S", 3600.0)
    root = str(tmp_path.resolve())
    try:
        data.reader(root).poll()
        versions = data.reader(root).versions()
        mon = data.monitor(root)
        for run in sorted(versions):
            data.state(root, run, versions[run], wait_s=0.0)
        with mon._lock:
            started = [r for r, job in mon._jobs.items() if job.worker is not None]
        assert started == [], "no analysis thread per run asked for"
        data.follow(root, "r2")  # the Run page: held, analysed at once
        st, _ = data.state(root, "r2", versions["r2"], wait_s=30.0)
        assert st is not None and st.series is not None and st.version == versions["r2"]
    finally:
        data.clear_caches()


def test_a_ctrl_c_duckdb_wrapped_while_reading_stops_the_monitor(tmp_path: Path) -> None:
    """Read from files (keep mode), a Ctrl-C that lands while DuckDB reads a registered Arrow relation's schema
    comes back as ``InvalidInputException: … failed: KeyboardInterrupt``: it was an error line, and `watch` went on
    (Ctrl-C lost: 1 in 15 under load)."""
    import duckdb

    write_to_store(tmp_path, "a", "fast_collapse", seed=0, n_steps=40)
    errors: list[str] = []

    class Interrupted(Store):
        def series_many(self, *a: Any, **kw: Any) -> Any:
            raise duckdb.InvalidInputException(
                "Invalid Input Error: reading the schema of the object registered as '_empty_scalars' failed: "
                "KeyboardInterrupt:"
            )

    mon = Monitor(Interrupted(tmp_path), on_error=lambda r, m: errors.append(m))
    with pytest.raises(duckdb.InvalidInputException):
        mon.poll()
    assert errors == []
