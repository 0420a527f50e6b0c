"""`export --duckdb PATH` onto a DuckDB database: an earlier export is replaced, a user's own database never, even
when its tables carry an export's names (``runs`` and ``events`` are common ones) or sit in another schema."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest


def _tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(path), read_only=True) as con:
        names = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        return {f"{s}.{t}": con.execute(f'SELECT * FROM "{s}"."{t}"').fetchall() for s, t in sorted(names)}


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        (
            [
                "CREATE TABLE runs AS SELECT 'exp-1' AS id, 0.93 AS accuracy",
                "CREATE TABLE events AS SELECT 7 AS id",
            ],
            "its runs table has columns id, accuracy",
        ),
        (["CREATE TABLE events AS SELECT 7 AS id"], "it has no runs table"),
        (["CREATE SCHEMA lab", "CREATE TABLE lab.runs AS SELECT 7 AS id"], "it holds lab.runs"),
    ],
    ids=["runs-and-events", "events-only", "other-schema"],
)
def test_a_users_database_with_an_exports_table_names_is_refused(
    ew, store: Path, tmp_path: Path, sql: list[str], says: str
) -> None:
    """Before: only the table names were compared (any schema), so these were replaced and their tables lost."""
    mine = tmp_path / "mine.duckdb"
    with duckdb.connect(str(mine)) as con:
        for statement in sql:
            con.execute(statement)
    before = _tables(mine)
    r = ew("--store", store, "export", "--duckdb", mine)
    assert r.code == 1 and r.err.count("\n") == 1, r.err
    assert "not an entropy-watch export" in r.err and says in r.err, r.err
    assert _tables(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.duckdb"]  # no temporary left


def test_an_earlier_export_is_still_replaced(ew, store: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.duckdb"
    for _ in range(2):
        r = ew("--store", store, "export", "--duckdb", out)
        assert r.code == 0, r.err
    assert {"main.runs", "main.scalars", "main.events"} <= set(_tables(out))


def test_export_help_says_it_replaces_only_an_earlier_export(ew) -> None:
    """Before: "replaces a DuckDB file", though a DuckDB database of the user's own is refused."""
    r = ew("export", "--help")
    text = re.sub(r"[\s│]+", " ", r.out)
    assert r.code == 0 and "replaces an earlier export" in text and "replaces a DuckDB file" not in text, r.out
