"""`export --duckdb PATH` and `report -o PATH` replace what they wrote before, never a user's other file or a folder
(one error line, exit 1, the file untouched, no temporary left)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from entropy_watch.report import GENERATOR

USER_CSV = "step,entropy\n1,0.5\n"


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_export_refuses_a_users_file_and_replaces_its_own(ew, store: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.csv"
    mine.write_text(USER_CSV)
    r = ew("--store", store, "export", "--duckdb", mine)
    assert r.code == 1 and r.err.count("\n") == 1, r.err
    assert r.err.startswith(f"error: {mine} exists and is not a DuckDB database; refusing to overwrite it"), r.err
    assert mine.read_text() == USER_CSV
    out = tmp_path / "e.duckdb"
    for flag in ("--duckdb", "-o"):  # the second run replaces the first export; -o as `report -o` (session 53)
        r = ew("--store", store, "export", flag, out)
        assert r.code == 0, r.err
    assert _hidden(tmp_path) == []
    r = ew("--store", store, "export", "-o", mine)  # the same file, the same refusal
    assert r.code == 1 and "refusing to overwrite it" in r.err and mine.read_text() == USER_CSV, r.err


def test_export_refuses_a_duckdb_database_of_the_users_own(ew, store: Path, tmp_path: Path) -> None:
    """Any DuckDB file was replaced (its tables gone); an empty one, or an earlier export, still is."""
    mine = tmp_path / "mine.duckdb"
    with duckdb.connect(str(mine)) as con:
        con.execute("CREATE TABLE precious AS SELECT 42 AS answer")
    r = ew("--store", store, "export", "--duckdb", mine)
    assert r.code == 1 and r.err.count("\n") == 1 and "not an entropy-watch export" in r.err, r.err
    assert "precious" in r.err and _hidden(tmp_path) == []
    with duckdb.connect(str(mine), read_only=True) as con:
        assert con.execute("SELECT answer FROM precious").fetchall() == [(42,)]
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert ew("--store", store, "export", "--duckdb", empty).code == 0
    with duckdb.connect(str(empty), read_only=True) as con:
        assert "runs" in {t for (t,) in con.execute("SHOW TABLES").fetchall()}


def test_export_to_a_folder_says_so_and_leaves_nothing(ew, store: Path, tmp_path: Path) -> None:
    (tmp_path / "d.duckdb").mkdir()
    r = ew("--store", store, "export", "--duckdb", tmp_path / "d.duckdb")
    assert r.code == 1 and r.err == f"error: {tmp_path / 'd.duckdb'} is a directory; pass a file path\n", r.err
    assert _hidden(tmp_path) == []


def test_export_of_a_run_named_twice_holds_it_once(ew, store: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.duckdb"
    assert ew("--store", store, "export", "--duckdb", out, "--run", "h", "--run", "h").code == 0
    con = duckdb.connect(str(out), read_only=True)
    try:
        assert con.sql("SELECT run FROM runs").fetchall() == [("h",)]
    finally:
        con.close()


def test_report_refuses_a_users_file_and_replaces_its_own(ew, store: Path, tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    mine = tmp_path / "notes.html"
    mine.write_text("<html><body>my notes</body></html>")
    r = ew("--store", store, "report", "h", "-o", mine)
    assert r.code == 1 and "is not an entropy-watch report; refusing to overwrite it" in r.err, r.err
    assert r.err.count("\n") == 1 and mine.read_text() == "<html><body>my notes</body></html>"
    out = tmp_path / "r.html"
    for _ in range(2):
        r = ew("--store", store, "report", "h", "-o", out)
        assert r.code == 0, r.err
    assert GENERATOR in out.read_text()[:2000]
    legacy = tmp_path / "old.html"  # a report written before the generator marker
    legacy.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>entropy_watch report: h</title>")
    assert ew("--store", store, "report", "h", "-o", legacy).code == 0
    (tmp_path / "dir.html").mkdir()
    r = ew("--store", store, "report", "h", "-o", tmp_path / "dir.html")
    assert r.code == 1 and "is a directory; pass a file path" in r.err
