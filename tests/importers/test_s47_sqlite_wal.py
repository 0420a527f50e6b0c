"""Importing a trackio project (an SQLite file in WAL mode, as trackio writes it) leaves its folder as it was.

Opened read-only, a WAL-mode database with no ``-wal`` file beside it made SQLite create ``<db>-wal`` and ``<db>-shm``
next to the user's log, left there after the import (and a read-only folder could not be read at all).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from entropy_watch.importers.loader import load_log


def _trackio(path: Path, steps: int) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_name TEXT, step INTEGER, metrics TEXT)")
    _log(con, range(steps))
    return con


def _log(con: sqlite3.Connection, steps: range) -> None:
    rows = [("r", i, json.dumps({"entropy": 1.0 - 0.01 * i})) for i in steps]
    con.executemany("INSERT INTO metrics (run_name, step, metrics) VALUES (?, ?, ?)", rows)
    con.commit()


def test_a_closed_wal_project_is_read_without_writing_beside_it(tmp_path: Path) -> None:
    db = tmp_path / "project.db"
    _trackio(db, 20).close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert list(before) == ["project.db"]
    (run,) = load_log(db)
    assert run.step_range == (0, 19)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "nothing created or changed"


def test_a_project_still_being_written_reads_what_its_wal_holds(tmp_path: Path) -> None:
    db = tmp_path / "project.db"
    writer = _trackio(db, 10)
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        _log(writer, range(10, 30))  # committed to the -wal file, not yet to the database file
        assert (tmp_path / "project.db-wal").stat().st_size > 0
        (run,) = load_log(db)
        assert run.step_range == (0, 29)
    finally:
        writer.close()
