"""Real processes at once: writers appending, readers polling (one-shot Store and TailReader), a compactor merging.

Each reader process records every count it sees; the tests assert no read failed, counts never went down, and the
final count is exact (neither lost nor double-counted rows). Every test runs on a local folder and on a bucket of a
real S3-compatible server (moto), where there is no rename and no lock: the writers of the last test share nothing
but the bucket, like ranks on different nodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from entropy_watch.store import Store, TailReader
from entropy_watch.store.files import list_table_files
from entropy_watch.store.fs import is_object
from entropy_watch.store.layout import default_root, run_dir

SEGS, ROWS = 30, 200
GRACE_S = 1.0  # object stores: merged segments are deleted 1 s after their part appeared (readers race it)


def _finish(procs: list, readers: list, stopfile: Path) -> list[dict]:
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert out.strip().endswith("DONE") or out.strip().startswith("{"), out
    stopfile.touch()
    results = []
    for reader in readers:
        out, err = reader.communicate(timeout=180)
        assert reader.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _check(result: dict, expected: int) -> None:
    assert result["errors"] == [], result["errors"][:1]
    assert result["monotone"]
    assert result["final"] == {"store": expected, "tail": expected}


def _compactor(spawn: Callable, root: str, stop: Path):
    return spawn("compactor", root, stop, GRACE_S if is_object(default_root(root)) else "")


def _files_per_rank(root: str, run: str) -> dict[int, list[str]]:
    """Data file names of ``run``'s scalars per rank (listed through the store's own seam, local or S3)."""
    from entropy_watch.store.files import CoverageCache

    out: dict[int, list[str]] = {}
    for ref in list_table_files(run_dir(default_root(root), run) / "table=scalars", CoverageCache()):
        out.setdefault(int(ref.path.parent.name[5:]), []).append(ref.path.name)
    return out


@pytest.mark.parametrize("n_writers", [1, 4])
def test_reader_while_writers_append(any_root: str, tmp_path: Path, spawn: Callable, n_writers: int) -> None:
    expected = n_writers * SEGS * ROWS
    stop = tmp_path / "stop"
    reader = spawn("reader", any_root, expected, stop)
    # Writers start once the reader has polled: under load its imports outlasted the writers, it saw every row at
    # its first poll and `polls >= 2` failed, a reader that never read concurrently.
    assert reader.stdout.readline().strip() == "READY"
    writers = [spawn("writer", any_root, "conc", rank, SEGS, ROWS, 0.02) for rank in range(n_writers)]
    (result,) = _finish(writers, [reader], stop)
    _check(result, expected)
    assert result["polls"] >= 2
    assert Store(any_root).run_info("conc").ranks == list(range(n_writers))


def test_compaction_while_reader_polls(any_root: str, tmp_path: Path, spawn: Callable) -> None:
    expected = 2 * SEGS * ROWS
    stop = tmp_path / "stop"
    reader = spawn("reader", any_root, expected, stop)
    compactor = _compactor(spawn, any_root, stop)
    writers = [spawn("writer", any_root, "comp", rank, SEGS, ROWS, 0.02) for rank in range(2)]
    (result,) = _finish(writers, [reader], stop)
    out, err = compactor.communicate(timeout=180)
    assert compactor.returncode == 0, err
    assert json.loads(out)["merged"] > 0, "the compactor never merged anything: the test would prove nothing"
    _check(result, expected)
    # After the final compaction: one file per (table, rank), same rows for every reader.
    files = _files_per_rank(any_root, "comp")
    assert sorted(files) == [0, 1] and all(len(f) == 1 and f[0].startswith("part-") for f in files.values()), files
    assert Store(any_root).scalars("comp").num_rows == expected
    tail = TailReader(any_root, tables=("scalars",))
    assert tail.poll() == expected


@pytest.mark.slow
def test_eight_writers_two_readers_and_a_compactor(any_root: str, tmp_path: Path, spawn: Callable) -> None:
    """4 ranks of one run plus 4 single-rank runs, all writing at once, while 2 readers poll and a compactor merges."""
    segs = 12
    jobs = [("multi", rank) for rank in range(4)] + [(f"solo-{i}", 0) for i in range(4)]
    expected = len(jobs) * segs * ROWS
    stop = tmp_path / "stop"
    readers = [spawn("reader", any_root, expected, stop) for _ in range(2)]
    compactor = _compactor(spawn, any_root, stop)
    writers = [spawn("writer", any_root, run, rank, segs, ROWS, 0.02) for run, rank in jobs]
    results = _finish(writers, readers, stop)
    out, err = compactor.communicate(timeout=180)
    assert compactor.returncode == 0, err
    for result in results:
        _check(result, expected)
    store = Store(any_root)
    infos = {i.name: i for i in store.runs()}
    assert sorted(infos) == ["multi", "solo-0", "solo-1", "solo-2", "solo-3"]
    assert infos["multi"].ranks == [0, 1, 2, 3] and infos["multi"].state == "finished"
    assert {n: store.scalars(n).num_rows for n in infos} == {
        "multi": 4 * segs * ROWS,
        **{f"solo-{i}": segs * ROWS for i in range(4)},
    }
    assert all(len(f) == 1 for f in _files_per_rank(any_root, "multi").values())
