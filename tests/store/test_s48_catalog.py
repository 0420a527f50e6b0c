"""``compact RUN`` keeps a current ``_catalog.duckdb`` instead of binding every file of the store again, and loses no
guarantee of the full rewrite: the views still answer (new rows of the run included), a new column rewrites them, an
unreadable file of the run is still found (the catalog kept, the file named), a store moved elsewhere or a catalog
without the views' hashes is rewritten, and a whole-store ``compact`` always rewrites."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from entropy_watch.store import RunWriter
from entropy_watch.store.catalog import PLACEHOLDER_RUN_DIR

from ..cli_run import Ran, run_cli

RUNS = ("a", "b", "c")


def _write(root: Path, run: str, step: int, **extra: list[object]) -> None:
    w = RunWriter(root, run)
    w.write("scalars", {"step": [step, step], "name": ["entropy/mean", "reward/mean"], "value": [1.0, 0.5], **extra})
    w.close()


@pytest.fixture
def root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A store of three runs, two segments each, compacted once as a whole (so its catalog exists)."""
    root = tmp_path / "st"
    for run in RUNS:
        _write(root, run, 0)
        _write(root, run, 1)
    assert run_cli(capsys, "--store", root, "compact", "--min-age", "0").code == 0
    return root


def _compact(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Ran:
    r = run_cli(capsys, "--store", root, "compact", "--min-age", "0", *args)
    assert r.code == 0, r.err
    return r


def _catalog(root: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(root / "_catalog.duckdb"), read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def _ino(root: Path) -> int:
    return (root / "_catalog.duckdb").stat().st_ino


def test_compact_run_keeps_a_current_catalog(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _ino(root)
    _write(root, "a", 2)
    r = _compact(capsys, root, "a")
    assert "catalog views refreshed" in r.out
    assert _ino(root) == before  # not rebuilt over every run's files
    counts = dict(_catalog(root, "SELECT run, count(*) FROM scalars GROUP BY run"))  # type: ignore[arg-type]
    assert counts == {"a": 6, "b": 4, "c": 4}  # the views see the run's new rows, each once
    comments = dict(_catalog(root, "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal"))
    assert all(
        str(comments[t]).startswith("entropy_watch view ") for t in ("scalars", "hist", "tokens", "alerts", "events")
    )


def test_a_new_column_rewrites_the_views(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _ino(root)
    _write(root, "b", 2, lr=[1e-6, 1e-6])
    _compact(capsys, root, "b")
    assert _ino(root) != before
    cols = _catalog(root, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'scalars'")
    assert ("lr",) in cols
    assert _catalog(root, "SELECT count(*) FROM scalars WHERE lr IS NOT NULL") == [(2,)]


def test_an_unreadable_file_of_the_run_is_still_found(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _ino(root)
    bad = next((root / "run=c" / "table=scalars").rglob("*.parquet"))
    bad.write_bytes(b"overwritten by another program")
    r = _compact(capsys, root, "c")
    assert str(bad) in r.err and "_catalog.duckdb was not refreshed" in r.err
    assert "catalog views refreshed" not in r.out
    assert _ino(root) == before  # the previous catalog is kept


def test_a_moved_store_or_an_unmarked_catalog_is_rewritten(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    shutil.rmtree(root)  # the old views read this root: kept, they would find nothing
    _compact(capsys, moved, "a")
    assert dict(_catalog(moved, "SELECT run, count(*) FROM scalars GROUP BY run")) == {"a": 4, "b": 4, "c": 4}
    con = duckdb.connect(str(moved / "_catalog.duckdb"))  # as a catalog written before the views had hashes
    con.execute("COMMENT ON VIEW scalars IS NULL")
    con.close()
    before = _ino(moved)
    _compact(capsys, moved, "a")
    assert _ino(moved) != before
    shutil.rmtree(moved / PLACEHOLDER_RUN_DIR)  # the views need their zero-row files
    before = _ino(moved)
    _compact(capsys, moved, "b")
    assert _ino(moved) != before and (moved / PLACEHOLDER_RUN_DIR).is_dir()


def test_whole_store_compact_always_rewrites(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _ino(root)
    _compact(capsys, root)
    assert _ino(root) != before
