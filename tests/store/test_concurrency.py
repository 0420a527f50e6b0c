"""Real processes at once: writers appending, a reader polling (one-shot Store and TailReader), a compactor merging.

The reader process records every count it sees; the test asserts no read failed, counts never went down, and the
final count is exact (neither lost nor double-counted rows).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from entropy_watch.store import Store, TailReader

SEGS, ROWS = 30, 200


def _finish(procs: list, reader, stopfile: Path) -> dict:
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip().endswith("DONE") or out.strip().startswith("{"), out
    stopfile.touch()
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("n_writers", [1, 4])
def test_reader_while_writers_append(root: Path, tmp_path: Path, spawn: Callable, n_writers: int) -> None:
    expected = n_writers * SEGS * ROWS
    stop = tmp_path / "stop"
    reader = spawn("reader", root, expected, stop)
    writers = [spawn("writer", root, "conc", rank, SEGS, ROWS, 0.02) for rank in range(n_writers)]
    result = _finish(writers, reader, stop)
    assert result["errors"] == [], result["errors"][:1]
    assert result["monotone"]
    assert result["final"] == {"store": expected, "tail": expected}
    assert result["polls"] > 2
    assert Store(root).run_info("conc").ranks == list(range(n_writers))


def test_compaction_while_reader_polls(root: Path, tmp_path: Path, spawn: Callable) -> None:
    expected = 2 * SEGS * ROWS
    stop = tmp_path / "stop"
    reader = spawn("reader", root, expected, stop)
    compactor = spawn("compactor", root, stop)
    writers = [spawn("writer", root, "comp", rank, SEGS, ROWS, 0.02) for rank in range(2)]
    result = _finish(writers, reader, stop)
    out, err = compactor.communicate(timeout=60)
    assert compactor.returncode == 0, err
    assert json.loads(out)["merged"] > 0, "the compactor never merged anything: the test would prove nothing"
    assert result["errors"] == [], result["errors"][:1]
    assert result["monotone"]
    assert result["final"] == {"store": expected, "tail": expected}
    # After the final compaction: one file per (table, rank), same rows for every reader.
    for rank in range(2):
        files = list((root / "run=comp" / "table=scalars" / f"rank={rank}").glob("*.parquet"))
        assert len(files) == 1 and files[0].name.startswith("part-")
    assert Store(root).scalars("comp").num_rows == expected
    tail = TailReader(root, tables=("scalars",))
    assert tail.poll() == expected
