"""``SHOW TABLES`` in user SQL lists the views a query can read: the sandbox builds only the views a query names,
so DuckDB's own answer was an empty table, and a user's first question ("what is in here?") got nothing."""

from __future__ import annotations

from pathlib import Path

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter, Store


def test_show_tables_lists_every_view_with_the_columns_a_query_sees(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "r")
    w.write("scalars", {"step": [0, 1], "name": [M.ENTROPY_MEAN] * 2, "value": [1.0, 0.9]})
    w.close()
    store = Store(tmp_path)
    for q in ("show tables", "SHOW ALL TABLES;", "  Show Tables "):
        listed = store.sql(q).to_pylist()
        assert [r["name"] for r in listed] == ["scalars", "hist", "tokens", "alerts", "events", "runs"], q
    for r in store.sql("show tables").to_pylist():  # each view's columns are those `SELECT *` returns
        got = store.sql(f"SELECT * FROM {r['name']} LIMIT 0").column_names
        assert r["columns"].split(", ") == got, r["name"]
        assert r["holds"], r["name"]
    assert store.sql("SELECT count(*) AS n FROM runs").to_pylist() == [{"n": 1}]
