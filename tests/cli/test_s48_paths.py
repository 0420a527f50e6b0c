"""Where the store commands and readers put files: ``export --duckdb=~/x`` (no shell expands ``~`` after ``=``) writes
into the home folder and leaves no temporary; the store's own DuckDB connections (``Store``, ``TailReader``) spill a
read bigger than their memory limit into a private folder of the system's temporary directory, never ``.tmp`` in the
working directory (the app server's folder, a cron job's read-only one), within the SQL sandbox's memory limit."""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, TailReader
from entropy_watch.store.query import sandbox
from entropy_watch.synthetic import write_to_store

from ..cli_run import Ran

ROWS = 400_000  # a sort of these under SPILL_LIMIT must spill (the rows alone are ~13 MB)
SPILL_LIMIT = "24MB"


def test_export_duckdb_tilde_after_equals(
    ew: Callable[..., Ran], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)  # before the fix: a folder named "~" was made here
    root = tmp_path / "st"
    write_to_store(root, "g", kind="healthy", seed=1, n_steps=20)
    r = ew("--store", root, "export", "--duckdb=~/e.duckdb")
    assert r.code == 0, r.err
    assert sorted(os.listdir(home)) == ["e.duckdb"]  # no ".e.duckdb.<pid>.0.tmp" left beside it
    assert not (tmp_path / "~").exists()
    con = duckdb.connect(str(home / "e.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT count(*) FROM scalars WHERE run = 'g'").fetchall()[0][0] > 0
    finally:
        con.close()


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    w = RunWriter(root, "big")
    w.write("scalars", {"step": rng.integers(0, 10**6, ROWS), "name": ["loss/x"] * ROWS, "value": rng.random(ROWS)})
    w.close()
    return root


@pytest.fixture
def spill_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A working directory and a system temporary directory of this test's own: ``(cwd, tmp)``."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "systmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return cwd, tmp


def _spilling_read(con: duckdb.DuckDBPyConnection, read: Callable[[], int], tmp: Path) -> list[str]:
    """Run ``read`` on a connection whose memory limit is lowered so that it spills; the spill files it left in
    ``tmp`` (before the connection is closed)."""
    con.execute(f"SET memory_limit = '{SPILL_LIMIT}'")
    con.execute("SET threads = 1")
    assert read() == ROWS
    return [str(p.relative_to(tmp)) for p in tmp.rglob("*")]


def test_store_read_spills_outside_the_working_directory(big_store: Path, spill_env: tuple[Path, Path]) -> None:
    cwd, tmp = spill_env
    store: Store | None = Store(big_store)
    assert store is not None
    spilled = _spilling_read(store._con, lambda: store.scalars("big").num_rows, tmp)
    assert os.listdir(cwd) == []  # DuckDB's default: ".tmp" here
    assert spilled and all(p.startswith("entropy-watch-duckdb-") for p in spilled)  # it did spill, privately
    store = None  # the connection closes with its Store
    gc.collect()
    assert os.listdir(tmp) == []  # the folder DuckDB made is removed with the connection


def test_tail_reader_spills_outside_the_working_directory(big_store: Path, spill_env: tuple[Path, Path]) -> None:
    cwd, tmp = spill_env
    reader = TailReader(big_store, tables=("scalars",))
    reader._con.execute(f"SET memory_limit = '{SPILL_LIMIT}'")

    def read() -> int:
        reader.poll()
        return reader.query("SELECT count(*) AS n FROM (SELECT * FROM scalars ORDER BY value)").to_pylist()[0]["n"]

    spilled = _spilling_read(reader._con, read, tmp)
    assert os.listdir(cwd) == []
    assert spilled and all(p.startswith("entropy-watch-duckdb-") for p in spilled)
    reader.close()
    assert os.listdir(tmp) == []


def test_store_connections_keep_the_sql_memory_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not DuckDB's 80% of the machine's memory: the limit the SQL sandbox has (``$ENTROPY_WATCH_SQL_MEMORY``)."""
    for value in (None, "300MB"):
        if value:
            monkeypatch.setenv("ENTROPY_WATCH_SQL_MEMORY", value)
        ref = sandbox().sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
        for obj in (Store(tmp_path), TailReader(tmp_path, tables=("scalars",))):
            assert obj._con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == ref
