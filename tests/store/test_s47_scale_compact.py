"""Compaction's cost per folder grows linearly with the files in it (task p6, session 47).

``compact._redundant`` (which files a part already covers) tested each listed file for membership in a *list* of
the chosen files and compared it with every chosen file: quadratic in the files of a ``rank=`` folder. A run that
publishes a segment every 2 s for a day leaves ~43,000 per table and rank. Measured (one-row segments, 2 loaded
cores): 1,000 / 3,000 / 6,000 segments took 0.7 / 2.8 / 9.0 s to compact, 0.23 / 1.26 / 5.0 s of it in
``_redundant``; after the fix 0.4 / 1.9 / 2.7 s, 0.01 / 0.02 / 0.04 s. The tests count, never time: comparisons of
file paths, which the old code made ~n**2/2 of."""

from __future__ import annotations

import importlib
import pathlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entropy_watch.store import RunWriter, Store, compact
from entropy_watch.store.files import FileRef

compact_mod = importlib.import_module("entropy_watch.store.compact")  # the package exports the function
N = 600


@pytest.fixture
def path_eq_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts ``PurePath.__eq__`` calls (how FileRefs are compared)."""
    calls = [0]
    original = pathlib.PurePath.__eq__

    def counting(self: pathlib.PurePath, other: object) -> bool:
        calls[0] += 1
        return original(self, other)

    monkeypatch.setattr(pathlib.PurePath, "__eq__", counting)
    yield calls


def _naive(files: list[FileRef], now: float, grace_s: float, age: dict[Path, float]) -> list[FileRef]:
    """The rule, written plainly: a file none of the chosen files is, whose keys are all held by chosen parts old
    enough."""
    sel = compact_mod.select_files(files)
    chosen = sel.whole + [ref for ref, _ in sel.partial]
    out = []
    for f in files:
        if any(f.path == c.path for c in chosen):
            continue
        holders = [p for p in chosen if p.keys & f.keys]
        if holders and all(p.kind == "part" and now - age[p.path] >= grace_s for p in holders):
            out.append(f)
    return out


def _refs(tmp_path: Path) -> tuple[list[FileRef], dict[Path, float]]:
    """A folder as a killed compaction leaves it: two parts (one old, one fresh) and the segments they cover, plus
    segments nothing covers."""
    folder = tmp_path / "rank=0"
    segs = [FileRef(folder / f"seg-s-{i:06d}.parquet", "seg", frozenset({("s", i)})) for i in range(N)]
    old = FileRef(folder / "part-a-1.parquet", "part", frozenset(("s", i) for i in range(N // 3)))
    fresh = FileRef(folder / "part-b-1.parquet", "part", frozenset(("s", i) for i in range(N // 3, 2 * N // 3)))
    age = {f.path: 0.0 for f in segs} | {old.path: 0.0, fresh.path: 1000.0}
    return [old, fresh, *segs], age


def test_redundant_is_linear_in_the_files_of_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_eq_calls: list[int]
) -> None:
    files, age = _refs(tmp_path)
    monkeypatch.setattr(compact_mod, "_age", lambda ref: age[ref.path])
    path_eq_calls[0] = 0
    got = compact_mod._redundant(files, now=1000.0, grace_s=60.0)
    calls = path_eq_calls[0]
    assert calls < 10 * len(files), f"{calls:,} path comparisons for {len(files):,} files (quadratic)"
    assert got == _naive(files, 1000.0, 60.0, age)  # the old part's segments only
    assert [f.path.name for f in got] == [f"seg-s-{i:06d}.parquet" for i in range(N // 3)]


def test_compact_of_many_segments_keeps_every_row(tmp_path: Path, path_eq_calls: list[int]) -> None:
    """The user's path: ``compact`` of a long uncompacted run, then the same rows read back, one file left."""
    w = RunWriter(tmp_path, "long")
    for i in range(N):
        w.write("scalars", {"step": [i], "name": ["entropy/mean"], "value": [float(i)], "wall_time": [1.7e9 + i]})
    w.close()
    before = Store(tmp_path).scalars("long")
    path_eq_calls[0] = 0
    t = time.perf_counter()
    report = compact(tmp_path, "long", min_age_s=0)
    took = time.perf_counter() - t
    assert path_eq_calls[0] < 10 * N, f"{path_eq_calls[0]:,} path comparisons to compact {N} files ({took:.2f} s)"
    assert report.merged_files == N and report.parts_written == 1
    assert Store(tmp_path).scalars("long").equals(before)
    left = [p.name for p in (tmp_path / "run=long" / "table=scalars" / "rank=0").glob("*.parquet")]
    assert len(left) == 1 and left[0].startswith("part-")
