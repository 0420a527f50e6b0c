"""A corrupt or truncated data file is skipped with one warning naming it; every other row and run still reads.

Issue 11: a ``COPY (SELECT 42) TO '<segment>'`` made every read of that run fail ("too small to be a Parquet
file"). Whatever damaged the file, readers now quarantine it (see ``entropy_watch.store.quarantine``), compaction
neither merges nor deletes it, and a replaced file is read again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, TailReader, compact
from entropy_watch.store import quarantine as q
from entropy_watch.store.layout import table_dir


def _run(root: Path, run: str, segs: int = 3) -> list[Path]:
    w = RunWriter(root, run)
    paths = [
        w.write("scalars", {"step": np.arange(s * 10, s * 10 + 10), "name": ["x"] * 10, "value": np.ones(10) * s})
        for s in range(segs)
    ]
    w.close()
    return paths


DAMAGE = {
    "csv written over it": lambda p: p.write_text("42\n"),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "bad page behind a good footer": lambda p: p.write_bytes(p.read_bytes()[:8] + b"\xff" * 64 + p.read_bytes()[72:]),
}


@pytest.fixture(autouse=True)
def _fresh_quarantine():
    q._bad.clear()
    yield
    q._bad.clear()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_reads_skip_the_damaged_file_and_name_it(root: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    paths = _run(root, "hurt")
    _run(root, "fine")
    DAMAGE[damage](paths[1])
    store = Store(root)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        steps, _ = store.series("hurt", "x")
        assert store.scalars("hurt").num_rows == 20
        assert store.sql("SELECT count(*) AS n FROM scalars").column("n").to_pylist() == [50]
        tail = TailReader(root, tables=("scalars",))
        assert tail.poll() == 50
    assert steps.tolist() == list(range(10)) + list(range(20, 30))
    assert Store(root).series("fine", "x")[0].size == 30
    named = [r.getMessage() for r in caplog.records if paths[1].name in r.getMessage()]
    assert len(named) == 1 and "unreadable" in named[0], "warned once, naming the file"
    assert paths[1].exists(), "the damaged file stays for inspection"


def test_compaction_neither_merges_nor_deletes_a_damaged_file(root: Path) -> None:
    paths = _run(root, "hurt", segs=4)
    DAMAGE["csv written over it"](paths[2])
    report = compact(root, "hurt", min_age_s=0.0)
    assert report.parts_written == 1 and paths[2].exists()
    assert Store(root).scalars("hurt").num_rows == 30
    rdir = table_dir(root, "hurt", "scalars", 0)
    assert sorted(p.name for p in rdir.glob("seg-*.parquet")) == [paths[2].name]


def test_a_replaced_file_is_read_again(root: Path) -> None:
    paths = _run(root, "hurt")
    good = paths[0].read_bytes()
    paths[0].write_bytes(b"garbage")
    assert Store(root).scalars("hurt").num_rows == 20
    paths[0].write_bytes(good)
    assert Store(root).scalars("hurt").num_rows == 30


def test_errors_that_are_not_about_files_propagate(root: Path) -> None:
    import duckdb

    _run(root, "fine")
    with pytest.raises(duckdb.Error):
        Store(root).sql("SELECT no_such_column FROM scalars")
    assert not q._bad
