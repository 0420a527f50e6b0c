"""Compaction, step by step: every intermediate state of a folder reads each row exactly once.

States checked for the one-shot Store, a TailReader that ingested the segments earlier, a fresh TailReader and the
catalog view: segments only; part published with its segments still present (a compactor killed before deleting);
part only; a final part next to the parts it merged; partly overlapping parts (two compactors racing).
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from entropy_watch.store import RunWriter, Store, TailReader, compact, write_catalog
from entropy_watch.store.files import COVERAGE_KEY, FileRef, decode_coverage, select_files
from entropy_watch.store.layout import table_dir

ROWS = 10
# The package re-exports the function `compact`, which shadows the submodule attribute of the same name.
compact_module = importlib.import_module("entropy_watch.store.compact")


def _write(root: Path, n: int, start: int = 0, rank: int = 0) -> RunWriter:
    w = RunWriter(root, "r", rank=rank)
    for i in range(start, start + n):
        w.write("scalars", {"step": [i] * ROWS, "name": ["m"] * ROWS, "value": list(map(float, range(ROWS)))})
    return w


def _counts(root: Path, tails: list[TailReader]) -> list[int]:
    """Row count seen by: Store, each tail (after a poll), a fresh tail, the catalog view."""
    out = [Store(root).scalars("r").num_rows]
    for tail in tails:
        tail.poll()
        out.append(tail.query("SELECT count(*) AS n FROM scalars").column("n")[0].as_py())
    fresh = TailReader(root, tables=("scalars",))
    fresh.poll()
    out.append(fresh.query("SELECT count(*) AS n FROM scalars").column("n")[0].as_py())
    con = duckdb.connect(str(write_catalog(root)), read_only=True)
    out.append(con.sql("SELECT count(*) FROM scalars").fetchall()[0][0])
    con.close()
    return out


def _files(root: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in table_dir(root, "r", "scalars", 0).glob("*.parquet"))


def test_part_with_segments_still_present_is_not_double_counted(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(root, 6)
    early = TailReader(root, tables=("scalars",))
    assert _counts(root, [early]) == [60] * 4
    monkeypatch.setattr(compact_module, "_unlink", lambda files: None)  # killed after publishing the part
    report = compact(root, "r", min_age_s=0)
    assert report.parts_written == 1 and _files(root) == ["part"] + ["seg"] * 6
    assert _counts(root, [early]) == [60] * 4
    monkeypatch.undo()
    report = compact(root, "r", min_age_s=0)  # the next compaction deletes the covered segments
    assert report.merged_files == 6 and report.parts_written == 0 and _files(root) == ["part"]
    assert _counts(root, [early]) == [60] * 4


def test_incremental_then_final_compaction(root: Path) -> None:
    w = _write(root, 4)
    tail = TailReader(root, tables=("scalars",))
    assert _counts(root, [tail]) == [40] * 4
    compact(root, "r", min_age_s=0)
    for i in range(4, 7):
        w.write("scalars", {"step": [i] * ROWS, "name": ["m"] * ROWS, "value": [0.0] * ROWS})
    compact(root, "r", min_age_s=0)
    _write(root, 2, start=7)  # a restarted writer session
    assert _files(root) == ["part", "part", "seg", "seg"]
    assert _counts(root, [tail]) == [90] * 4
    report = compact(root, "r", final=True)
    assert report.parts_written == 1 and _files(root) == ["part"]
    part = next(table_dir(root, "r", "scalars", 0).glob("part-*.parquet"))
    assert len(decode_coverage(pq.read_schema(part).metadata[COVERAGE_KEY])) == 9
    assert _counts(root, [tail]) == [90] * 4
    assert compact(root, "r", final=True).parts_written == 0  # already one file


def test_final_part_next_to_merged_parts_and_young_segments_kept(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(root, 3)
    compact(root, "r", min_age_s=0)
    _write(root, 3, start=3)
    compact(root, "r", min_age_s=0)
    tail = TailReader(root, tables=("scalars",))
    assert _counts(root, [tail]) == [60] * 4
    monkeypatch.setattr(compact_module, "_unlink", lambda files: None)
    compact(root, "r", final=True)
    assert _files(root) == ["part"] * 3
    assert _counts(root, [tail]) == [60] * 4
    monkeypatch.undo()
    _write(root, 1, start=6)
    assert compact(root, "r").parts_written == 0  # default min_age_s=60: fresh segments are not sealed yet
    assert _counts(root, [tail]) == [70] * 4


def test_partly_overlapping_parts_read_each_key_once(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two compactors that raced: parts covering seqs {0,1,2} and {1,2,3,4}; each row still counted once."""
    _write(root, 5)
    seg_dir = table_dir(root, "r", "scalars", 0)
    segs = sorted(seg_dir.glob("seg-*.parquet"))
    backup = seg_dir.parent / "backup"
    backup.mkdir()
    for s in segs:
        shutil.copy(s, backup / s.name)
    monkeypatch.setattr(compact_module, "_unlink", lambda files: None)
    for keep in (segs[0:3], segs[1:5]):
        for s in segs:
            s.unlink(missing_ok=True)
        for s in keep:
            shutil.copy(backup / s.name, seg_dir / s.name)
        compact(root, "r", min_age_s=0)
    for s in segs:
        s.unlink(missing_ok=True)
    shutil.rmtree(backup)
    assert _files(root) == ["part", "part"]
    tail = TailReader(root, tables=("scalars",))
    assert _counts(root, [tail]) == [50] * 4
    monkeypatch.undo()
    compact(root, "r", final=True)
    assert _files(root) == ["part"] and _counts(root, [tail]) == [50] * 4


def test_select_files_prefers_widest_coverage() -> None:
    def ref(name: str, kind: str, keys: set[tuple[str, int]]) -> FileRef:
        return FileRef(Path(name), kind, frozenset(keys))

    segs = [ref(f"seg-{i}", "seg", {("w", i)}) for i in range(4)]
    part = ref("part-a", "part", {("w", 0), ("w", 1), ("w", 2)})
    sel = select_files([*segs, part])
    assert [f.path.name for f in sel.whole] == ["part-a", "seg-3"] and not sel.partial
    sel = select_files([*segs, part], exclude={("w", 0)})
    assert [f.path.name for f in sel.whole] == ["seg-3"] and sel.partial[0][1] == {("w", 1), ("w", 2)}
    assert select_files([]).empty
