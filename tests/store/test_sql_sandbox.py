"""User SQL (``Store.sql``, ``entropy-watch sql``) can read the store's views and nothing else, by construction.

Every statement below got past the old statement filter or ran before it (issue 11): ``EXPLAIN ANALYZE COPY … TO``
wrote files (aimed at a segment, it broke every read of the run), ``EXPLAIN ANALYZE CREATE TABLE / SET / INSTALL``
executed, and table functions read any file on the machine. Each must now fail inside DuckDB and leave no file.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store
from entropy_watch.store.layout import table_dir


@pytest.fixture
def store(root: Path) -> Store:
    w = RunWriter(root, "a")
    w.write("scalars", {"step": np.arange(5), "name": ["entropy/mean"] * 5, "value": np.linspace(1, 0.5, 5)})
    w.write("events", {"step": [2], "kind": ["resume"], "payload": ["{}"]})
    w.close()
    w = RunWriter(root, "b", rank=1)
    w.write("scalars", {"step": [0, 1], "name": ["x", "x"], "value": [3.0, 4.0], "extra": ["p", "q"]})
    w.close()
    return Store(root)


def _segment(root: Path) -> Path:
    return next(table_dir(root, "a", "scalars", 0).glob("seg-*.parquet"))


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "query",
    [
        "COPY (SELECT 42) TO '{seg}'",
        "EXPLAIN ANALYZE COPY (SELECT 42) TO '{seg}'",
        "EXPLAIN ANALYZE COPY (SELECT 42) TO '{root}/new.csv'",
        "COPY scalars TO '{root}/dump.parquet'",
        "EXPORT DATABASE '{root}/exported'",
        "ATTACH '{root}/evil.duckdb' AS evil",
        "EXPLAIN ANALYZE ATTACH '{root}/evil.duckdb' AS evil",
        "INSTALL httpfs",
        "EXPLAIN ANALYZE INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "EXPLAIN ANALYZE SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET lock_configuration",
        "PRAGMA enable_profiling",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM read_parquet('{seg}')",
        "SELECT * FROM parquet_metadata('{seg}')",
        "SELECT * FROM 'https://example.com/x.csv'",
        "CREATE SECRET s (TYPE s3)",
    ],
)
def test_statements_that_touch_files_settings_or_extensions_fail(store: Store, root: Path, query: str) -> None:
    before = {p: p.read_bytes() for p in _all_files(root)}
    with pytest.raises(duckdb.Error) as err:
        store.sql(query.format(seg=_segment(root), root=root))
    if not query.startswith(("EXPLAIN ANALYZE ATTACH", "SELECT * FROM '/")):  # those two do not even parse/bind
        refused = isinstance(err.value, duckdb.PermissionException) or "configuration has been locked" in str(err.value)
        assert refused, f"refused by the connection's configuration, not by luck (no network...): {err.value}"
    after = _all_files(root)
    assert after == set(before), f"files appeared or vanished: {after ^ set(before)}"
    assert all(p.read_bytes() == data for p, data in before.items()), "a file was changed"
    assert store.scalars("a").num_rows == 5, "the run still reads"


def test_in_memory_tables_vanish_with_the_call(store: Store) -> None:
    store.sql("EXPLAIN ANALYZE CREATE TABLE scratch AS SELECT 1 AS x")
    with pytest.raises(duckdb.CatalogException):
        store.sql("SELECT * FROM scratch")


def test_python_variables_are_not_scanned(store: Store) -> None:
    secret_table = {"token": ["hunter2"]}  # noqa: F841 - what a replacement scan would find in this frame
    with pytest.raises(duckdb.Error):
        store.sql("SELECT * FROM secret_table")


def test_legitimate_queries_still_work(store: Store) -> None:
    rows = store.sql(
        "SELECT run, rank, count(*) AS n, max(step) AS s FROM scalars GROUP BY run, rank ORDER BY run"
    ).to_pylist()
    assert rows == [{"run": "a", "rank": 0, "n": 5, "s": 4}, {"run": "b", "rank": 1, "n": 2, "s": 1}]
    got = store.sql("SELECT value FROM scalars WHERE run = ? AND step = ?", ["a", 4]).column("value").to_pylist()
    assert got == [0.5]
    extra = store.sql("SELECT extra FROM scalars WHERE run = 'b' ORDER BY step").column("extra").to_pylist()
    assert extra == ["p", "q"], "columns added by some writers are readable"
    joined = store.sql(
        "SELECT r.state, e.kind FROM runs r JOIN events e ON e.run = r.run WHERE r.run = 'a'"
    ).to_pylist()
    assert joined == [{"state": "finished", "kind": "resume"}]
    assert store.sql("EXPLAIN SELECT * FROM hist").num_rows >= 1
    assert store.sql("SELECT count(*) AS n FROM tokens").column("n").to_pylist() == [0]
    cols = store.sql("SELECT * FROM scalars LIMIT 0").column_names
    assert {"step", "name", "value", "wall_time", "run", "rank"} <= set(cols)
    assert not {"_writer", "_seq", "table"} & set(cols)
