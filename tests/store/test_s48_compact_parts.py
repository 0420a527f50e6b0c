"""Compaction merges its own small parts over time: a cron ``compact`` beside a live run keeps the run's folders at a
bounded number of files, every row read once at each step (Store, a tail reader that followed along, a fresh one,
the catalog), also when a merge of parts is killed between publishing and deleting."""

from __future__ import annotations

import importlib
from pathlib import Path

import duckdb
import pytest

from entropy_watch.store import RunWriter, Store, TailReader, compact, write_catalog
from entropy_watch.store.layout import table_dir

compact_module = importlib.import_module("entropy_watch.store.compact")
ROWS = 3


def _counts(root: Path, tail: TailReader) -> list[int]:
    tail.poll()
    fresh = TailReader(root, tables=("scalars",))
    fresh.poll()
    with duckdb.connect(str(write_catalog(root)), read_only=True) as con:
        catalog = con.sql("SELECT count(*) FROM scalars").fetchall()[0][0]
    return [
        Store(root).scalars("r").num_rows,
        *(t.query("SELECT count(*) AS n FROM scalars").column("n")[0].as_py() for t in (tail, fresh)),
        catalog,
    ]


def _files(root: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in table_dir(root, "r", "scalars", 0).glob("*.parquet"))


def _step(w: RunWriter, i: int) -> None:
    w.write("scalars", {"step": [i] * ROWS, "name": ["m"] * ROWS, "value": [float(i)] * ROWS})


def test_cron_compaction_beside_a_live_writer_keeps_few_parts(root: Path) -> None:
    limit = compact_module.MAX_SMALL_PARTS
    w = RunWriter(root, "r")  # live all along: never closed until the end
    tail = TailReader(root, tables=("scalars",))
    most = 0
    for i in range(3 * (limit + 1)):
        _step(w, 2 * i)
        _step(w, 2 * i + 1)  # two sealed segments a pass: each pass writes a part
        compact(root, "r", min_age_s=0)
        files = _files(root)
        most = max(most, len(files))
        assert files.count("seg") == 0 and len(files) <= limit + 1
        if i % 5 == 4:
            assert _counts(root, tail) == [2 * (i + 1) * ROWS] * 4
    assert most == limit + 1  # the policy let parts pile up to its limit, no further
    assert _counts(root, tail) == [2 * 3 * (limit + 1) * ROWS] * 4
    w.close()


def test_merge_of_parts_killed_before_deleting_reads_each_row_once(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = compact_module.MAX_SMALL_PARTS
    w = RunWriter(root, "r")
    tail = TailReader(root, tables=("scalars",))
    for i in range(limit + 1):
        _step(w, 2 * i)
        _step(w, 2 * i + 1)
        compact(root, "r", min_age_s=0)
    assert _files(root) == ["part"] * (limit + 1)
    monkeypatch.setattr(compact_module, "_unlink", lambda files: None)  # kill -9 after publishing the merged part
    _step(w, 100)
    assert compact(root, "r", min_age_s=0).parts_written == 1
    assert _files(root) == ["part"] * (limit + 2) + ["seg"]
    n = (2 * (limit + 1) + 1) * ROWS
    assert _counts(root, tail) == [n] * 4
    monkeypatch.undo()
    compact(root, "r", min_age_s=0)  # the next pass deletes what the merged part covers, and merges nothing again
    assert _files(root) == ["part"] and _counts(root, tail) == [n] * 4
    w.close()


def test_parts_a_wider_part_covers_are_not_merged_again(root: Path) -> None:
    """On an object store the merged parts stay until the grace period ends: they are not counted, nor re-merged."""
    limit = compact_module.MAX_SMALL_PARTS
    w = RunWriter(root, "r")
    for i in range(limit + 1):
        _step(w, 2 * i)
        _step(w, 2 * i + 1)
        compact(root, "r", min_age_s=0, grace_s=3600)  # what the parts cover stays until the grace period ends
    report = compact(root, "r", min_age_s=0, grace_s=3600)
    assert report.parts_written == 1 and report.rows == 2 * (limit + 1) * ROWS  # the parts merged
    _step(w, 5000)
    _step(w, 5001)
    report = compact(root, "r", min_age_s=0, grace_s=3600)
    assert report.parts_written == 1 and report.rows == 2 * ROWS  # only the new segments: no re-merge
    assert Store(root).scalars("r").num_rows == (2 * (limit + 1) + 2) * ROWS
    w.close()


def test_large_parts_are_left_alone(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = compact_module.MAX_SMALL_PARTS
    monkeypatch.setattr(compact_module, "SMALL_PART_BYTES", 1)  # every part is "large"
    w = RunWriter(root, "r")
    for i in range(limit + 2):
        _step(w, 2 * i)
        _step(w, 2 * i + 1)
        compact(root, "r", min_age_s=0)
    assert _files(root) == ["part"] * (limit + 2)  # never rewritten but by --final
    compact(root, "r", final=True)
    assert _files(root) == ["part"] and Store(root).scalars("r").num_rows == 2 * (limit + 2) * ROWS
    w.close()
