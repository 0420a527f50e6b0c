"""User SQL reads the store and nothing else: not the working directory's ``.tmp``, not files linked into the store.

* DuckDB's default spill folder is ``.tmp`` in the working directory, and DuckDB adds it to ``allowed_directories``,
  which stay open with external access off: ``entropy-watch sql "COPY (…) TO '.tmp/x'"`` wrote there and
  ``read_text('.tmp/…')`` read there, from wherever the command ran.
* A symbolic link planted in a store (a segment, a run, table or rank folder, ``_run.json``) pointing outside it was
  followed: ``sql``, ``export``, ``show --json`` and the app's tail reader served the linked files' rows and JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from entropy_watch.errors import RunNotFound, StoreUnwritable
from entropy_watch.store import RunWriter, Store, compact, export_duckdb
from entropy_watch.store.layout import table_dir
from entropy_watch.store.tail import TailReader

SECRET = "hunter2-secret"


def test_sql_cannot_touch_the_working_directorys_tmp(root: Path, tmp_path: Path, monkeypatch) -> None:
    w = RunWriter(root, "a")
    w.write("scalars", {"step": [0], "name": ["entropy/mean"], "value": [1.0]})
    w.close()
    work = tmp_path / "work"
    (work / ".tmp").mkdir(parents=True)
    (work / ".tmp" / "secret.txt").write_text(SECRET)
    monkeypatch.chdir(work)
    store = Store(root)
    for query in (
        "SELECT content FROM read_text('.tmp/secret.txt')",
        f"SELECT content FROM read_text('{work}/.tmp/secret.txt')",
        "SELECT * FROM glob('.tmp/*')",
        "COPY (SELECT 'x') TO '.tmp/written.csv'",
        "SELECT * FROM scalars; COPY (SELECT 'x') TO '.tmp/written2.csv'",
    ):
        with pytest.raises(duckdb.PermissionException):
            store.sql(query)
    assert sorted(p.name for p in (work / ".tmp").iterdir()) == ["secret.txt"], "nothing written"
    allowed = store.sql("SELECT current_setting('allowed_directories') AS d").column("d").to_pylist()
    assert allowed == [[]]
    assert store.sql("SELECT sum(value) AS v FROM scalars").column("v").to_pylist() == [1.0], "the store still reads"


@pytest.fixture
def linked(root: Path, tmp_path: Path) -> Path:
    """A store whose run ``a`` is its own, with links out of the store in every place a reader looks."""
    outside = tmp_path / "outside"
    outside.mkdir()
    pq.write_table(pa.table({"step": [0], "name": [SECRET], "value": [7.0]}), outside / "private.parquet")
    (outside / "config.json").write_text(json.dumps({"token": SECRET}))
    other = outside / "other_store"
    o = RunWriter(other, "o")
    o.write("scalars", {"step": [0, 1], "name": [SECRET, SECRET], "value": [42.0, 43.0]})
    o.close()
    w = RunWriter(root, "a")
    w.write("scalars", {"step": np.arange(4), "name": ["entropy/mean"] * 4, "value": np.linspace(1, 0.5, 4)})
    w.close()
    seg = table_dir(root, "a", "scalars", 0) / "seg-1000000000000000000-1-000000.parquet"
    os.symlink(outside / "private.parquet", seg)
    (root / "run=b").mkdir()
    os.symlink(outside / "config.json", root / "run=b" / "_run.json")
    os.symlink(other / "run=o", root / "run=c")
    (root / "run=d").mkdir()
    os.symlink(other / "run=o" / "table=scalars", root / "run=d" / "table=scalars")
    (root / "run=e" / "table=scalars").mkdir(parents=True)
    os.symlink(other / "run=o" / "table=scalars" / "rank=0", root / "run=e" / "table=scalars" / "rank=0")
    return outside


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_links_out_of_the_store_are_not_followed(root: Path, linked: Path, tmp_path: Path) -> None:
    store = Store(root)
    rows = store.sql("SELECT * FROM scalars").to_pylist()
    assert {r["run"] for r in rows} == {"a"} and len(rows) == 4, rows
    assert SECRET not in str(rows)
    assert store.run_meta("b") == {}, "a linked _run.json is not read"
    with pytest.raises(RunNotFound):
        store.run_meta("c")
    assert [r.name for r in store.runs()] == ["a", "b", "d", "e"]
    for run in ("d", "e"):
        assert store.scalars(run).num_rows == 0
        assert store.run_info(run).last_step is None

    tail = TailReader(root)
    assert tail.poll() == 4
    assert SECRET not in str(tail.query("SELECT * FROM scalars").to_pylist())
    tail.close()

    dest = export_duckdb(root, tmp_path / "export.duckdb")
    con = duckdb.connect(str(dest), read_only=True)
    assert {r for (r,) in con.sql("SELECT DISTINCT run FROM scalars").fetchall()} == {"a"}
    con.close()

    before = _tree(linked)
    for run in ("a", "d", "e"):
        compact(root, run, min_age_s=0, final=True)
    assert _tree(linked) == before, "compaction never writes or deletes through a link"


def test_a_store_root_that_is_a_link_still_reads(root: Path, tmp_path: Path) -> None:
    w = RunWriter(root, "a")
    w.write("scalars", {"step": [0, 1], "name": ["entropy/mean"] * 2, "value": [1.0, 0.9]})
    w.close()
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    store = Store(alias)
    assert [r.name for r in store.runs()] == ["a"]
    assert store.run_meta("a")["name"] == "a"
    assert store.sql("SELECT count(*) AS n FROM scalars").column("n").to_pylist() == [2]


def test_a_writer_refuses_to_write_through_a_link(root: Path, linked: Path) -> None:
    before = _tree(linked)
    for run in ("c", "d", "e"):  # the run, table or rank folder is a link out of the store
        with pytest.raises(StoreUnwritable, match="symbolic link"):
            RunWriter(root, run)
    assert _tree(linked) == before, "nothing written outside the store"
    RunWriter(root, "a").close()  # a run of its own still writes
