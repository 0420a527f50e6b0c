"""``entropy-watch rm RUN...``: a run deleted is gone for every reader at once, and nothing is deleted by mistake."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from entropy_watch.store import RunWriter, Store, TailReader, manifest

from ..cli_run import Ran


def _run(root: Path, name: str, steps: int = 3, close: bool = True) -> RunWriter:
    w = RunWriter(root, name)
    for i in range(steps):
        w.write("scalars", {"step": [i], "name": ["entropy/mean"], "value": [1.0]})
    if close:
        w.close()
    return w


def _runs_by_sql(ew: Callable[..., Ran], root: Path) -> dict[str, int]:
    got = ew("--store", root, "sql", "SELECT run, count(*) AS n FROM scalars GROUP BY run", "--json")
    assert got.code == 0, got.err
    return {r["run"]: r["n"] for r in json.loads(got.out)}


def test_rm_removes_a_run_for_every_reader(
    tmp_path: Path, ew: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ew_runs"
    _run(root, "a", steps=4)
    _run(root, "b", steps=2)
    monkeypatch.setattr(manifest, "SETTLE_S", 0.0)  # both runs recorded in _runs.parquet by compact
    assert ew("--store", root, "compact", "--min-age", "0").code == 0
    assert set(pq.read_table(root / "_runs.parquet").column("name").to_pylist()) == {"a", "b"}
    tail = TailReader(root, tables=("scalars",))  # the app's reader, holding run a's rows
    tail.poll()
    assert tail.query("SELECT count(*) AS n FROM scalars WHERE run = 'a'").column("n")[0].as_py() == 4

    got = ew("--store", root, "rm", "a", "--yes")
    assert got.code == 0, got.err
    assert "removed run a" in got.out

    assert [r["run"] for r in json.loads(ew("--store", root, "ls", "--json").out)] == ["b"]
    shown = ew("--store", root, "show", "a")
    assert shown.code == 1 and "not found" in shown.err
    assert _runs_by_sql(ew, root) == {"b": 2}
    assert ew("--store", root, "export", "--duckdb", tmp_path / "x.duckdb").code == 0
    with duckdb.connect(str(tmp_path / "x.duckdb"), read_only=True) as con:
        assert con.sql("SELECT DISTINCT run FROM scalars").fetchall() == [("b",)]
    with duckdb.connect(str(root / "_catalog.duckdb"), read_only=True) as con:  # the catalog as it was: still right
        assert con.sql("SELECT run, count(*) FROM scalars GROUP BY run").fetchall() == [("b", 2)]
    tail.poll()
    assert tail.query("SELECT DISTINCT run FROM scalars").column("run").to_pylist() == ["b"]
    assert pq.read_table(root / "_runs.parquet").column("name").to_pylist() == ["b"]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith("_")) == ["run=.catalog", "run=b"]


def test_rm_refuses_a_live_run_unless_forced(tmp_path: Path, ew: Callable[..., Ran]) -> None:
    root = tmp_path / "ew_runs"
    live = _run(root, "live", close=False)  # heartbeat fresh: ls says running
    _run(root, "done")
    assert Store(root).run_info("live").state == "running"
    got = ew("--store", root, "rm", "done", "live", "--yes")
    assert got.code == 1 and "live" in got.err and "--force" in got.err and len(got.err.strip().splitlines()) == 1
    assert sorted(i.name for i in Store(root).runs()) == ["done", "live"]  # nothing deleted, not even "done"
    live.update_run_meta(config={"lr": 1e-5})
    got = ew("--store", root, "rm", "live", "--force", "--yes")
    assert got.code == 0, got.err
    assert [i.name for i in Store(root).runs()] == ["done"]
    # the writer goes on: the user is told the run comes back, and it does, with its config and the later steps only
    warned = got.err.strip().splitlines()
    assert len(warned) == 1 and "live" in warned[0] and "again" in warned[0], got.err
    live.write("scalars", {"step": [7], "name": ["entropy/mean"], "value": [1.0]})
    live.close()
    assert sorted(i.name for i in Store(root).runs()) == ["done", "live"]
    assert Store(root).run_meta("live")["config"] == {"lr": 1e-5}
    got = ew("--store", root, "rm", "live", "--yes")  # a finished run: no warning
    assert got.code == 0 and not got.err.strip(), got.err


def test_rm_asks_on_a_terminal_and_needs_yes_without_one(
    tmp_path: Path, ew: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ew_runs"
    _run(root, "a")
    got = ew("--store", root, "rm", "a")  # stdin is not a terminal under pytest
    assert got.code == 2 and "--yes" in got.err
    assert [i.name for i in Store(root).runs()] == ["a"]

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty("n\n"))
    got = ew("--store", root, "rm", "a")
    assert got.code == 1 and "nothing deleted" in got.out
    assert [i.name for i in Store(root).runs()] == ["a"]
    monkeypatch.setattr("sys.stdin", Tty("y\n"))
    got = ew("--store", root, "rm", "a")
    assert got.code == 0 and "removed run a" in got.out
    assert Store(root).runs() == []


@pytest.mark.parametrize("bad", ["../a", "run=a", "a/../../x", ".catalog", ""])
def test_rm_refuses_bad_names_and_unknown_runs_deleting_nothing(
    tmp_path: Path, ew: Callable[..., Ran], bad: str
) -> None:
    root = tmp_path / "ew_runs"
    _run(root, "a")
    (tmp_path / "x").mkdir()
    for args in (["a", bad], ["a", "nope"]):
        got = ew("--store", root, "rm", *args, "--yes")
        assert got.code == 1 and got.err.startswith("error:") and len(got.err.strip().splitlines()) == 1
    assert [i.name for i in Store(root).runs()] == ["a"] and (tmp_path / "x").is_dir()


def test_a_run_that_cannot_go_when_its_turn_comes_leaves_the_others_deleted(
    tmp_path: Path, ew: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    # every run passes the first check; run b's writer starts before rm reaches it (the check rm makes again then
    # refuses it). Before: rm stopped there with exit 1, and c, which the user asked to delete, was left.
    from entropy_watch.store import remove

    root = tmp_path / "ew_runs"
    for name in ("a", "b", "c"):
        _run(root, name)
    real, writers = remove.remove_run, []

    def writer_starts_first(r, name, **kw):
        if name == "b":
            writers.append(_run(root, "b", close=False))  # heartbeat fresh: running
        return real(r, name, **kw)

    monkeypatch.setattr(remove, "remove_run", writer_starts_first)
    got = ew("--store", root, "rm", "a", "b", "c", "--yes")
    assert got.code == 1
    assert got.out.split("\n")[:2] == ["removed run a", "removed run c"], got.out
    said = got.err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("error: run 'b' is live") and "--force" in said[0], got.err
    assert [i.name for i in Store(root).runs()] == ["b"]
    writers[0].close()
