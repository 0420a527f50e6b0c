"""Deleting a run (:mod:`entropy_watch.store.remove`): killed at any point it leaves a store every reader reads, with
the run either whole or gone; a compaction racing it does not fail; on S3 it deletes the run's objects."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from entropy_watch.store import RunWriter, Store, TailReader, compact, write_catalog
from entropy_watch.store.remove import LEFTOVER_PREFIX, clean_leftovers, remove_run

compact_module = importlib.import_module("entropy_watch.store.compact")


def _store(root: Path | str) -> None:
    for name, steps in (("a", 5), ("b", 3)):
        w = RunWriter(root, name, rank=0)
        for i in range(steps):
            w.write("scalars", {"step": [i, i], "name": ["m", "n"], "value": [1.0, 2.0]})
        w.close()
    w = RunWriter(root, "a", rank=1)
    w.write("scalars", {"step": [0], "name": ["m"], "value": [1.0]})
    w.close()


def _pairs(tbl: object) -> list[tuple[str, int]]:
    return [(r["run"], r["n"]) for r in tbl.to_pylist()]  # type: ignore[attr-defined]


WHOLE = {"a": 11, "b": 6}
GONE = {"b": 6}


def _seen(root: Path) -> list[dict[str, int]]:
    store = Store(root)
    tail = TailReader(root, tables=("scalars",))
    tail.poll()
    with duckdb.connect(str(write_catalog(root)), read_only=True) as con:
        catalog = dict(con.sql("SELECT run, count(*) FROM scalars GROUP BY run").fetchall())
    return [
        {i.name: store.scalars(i.name).num_rows for i in store.runs()},
        dict(_pairs(tail.query("SELECT run, count(*) AS n FROM scalars GROUP BY run"))),
        catalog,
    ]


_KILLER = """
import os, signal, sys
from pathlib import Path
from entropy_watch.store import remove
root, when = Path(sys.argv[1]), sys.argv[2]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if when == "locked":  # holding the run's locks, before the rename
    real = remove._locked
    def locked(rdir):
        cm = real(rdir)
        cm.__enter__()
        die()
    remove._locked = locked
    remove.remove_run(root, "a")
elif when == "hidden":  # right after the rename
    remove.remove_run(root, "a", _after_hide=die)
else:  # half-way through deleting the hidden folder
    def half():
        hidden = next(root.glob(".removing-*"))
        files = sorted(p for p in hidden.rglob("*") if p.is_file())
        for p in files[: len(files) // 2]:
            p.unlink()
        die()
    remove.remove_run(root, "a", _after_hide=half)
"""


@pytest.mark.parametrize(("when", "after"), [("locked", WHOLE), ("hidden", GONE), ("deleting", GONE)])
def test_rm_killed_mid_way_leaves_a_readable_store(tmp_path: Path, when: str, after: dict[str, int]) -> None:
    root = tmp_path / "ew_runs"
    _store(root)
    compact(root, "a", min_age_s=0)
    write_catalog(root)
    assert _seen(root) == [WHOLE] * 3
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILLER), str(root), when], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _seen(root) == [after] * 3  # the run whole, or gone: never a part of it
    leftovers = list(root.glob(f"{LEFTOVER_PREFIX}*"))
    assert len(leftovers) == (0 if when == "locked" else 1)
    assert clean_leftovers(root) == len(leftovers) and not list(root.glob(f"{LEFTOVER_PREFIX}*"))
    if when == "locked":  # nothing happened: rm again does it
        remove_run(root, "a")
    assert _seen(root) == [GONE] * 3


def test_compaction_racing_rm_skips_the_deleted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compactor that listed the run's folders before ``rm`` moved them away: nothing to do, no error."""
    root = tmp_path / "ew_runs"
    _store(root)
    real = compact_module.rank_dirs

    def listed_then_removed(tdir: object) -> list[object]:
        found = real(tdir)
        if (root / "run=a").exists():
            remove_run(root, "a")
        return found

    monkeypatch.setattr(compact_module, "rank_dirs", listed_then_removed)
    report = compact(root, min_age_s=0)
    assert report.busy == []
    assert _seen(root) == [GONE] * 3


def test_rm_waits_for_a_reader_mid_query(tmp_path: Path) -> None:
    """A reader holding ``.read.lock`` (mid-query) finishes before the run goes: rm takes it exclusively."""
    fcntl = pytest.importorskip("fcntl")
    root = tmp_path / "ew_runs"
    _store(root)
    compact(root, "a", min_age_s=0)  # creates the lock files
    lock = root / "run=a" / "table=scalars" / "rank=0" / ".read.lock"
    fd = os.open(lock, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    child = subprocess.Popen(
        [sys.executable, "-c", f"from entropy_watch.store import remove; remove.remove_run({str(root)!r}, 'a')"]
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=1.5)
        assert (root / "run=a").is_dir()  # still there while the reader reads
    finally:
        os.close(fd)
    assert child.wait(timeout=60) == 0
    assert not (root / "run=a").exists()


@pytest.mark.slow
def test_rm_on_s3_deletes_every_object_of_the_run(s3_root: str) -> None:
    import pyarrow.fs as pafs

    from entropy_watch.store import layout

    _store(s3_root)
    compact(s3_root, min_age_s=0)
    remove_run(s3_root, "a")
    store = Store(s3_root)
    assert [i.name for i in store.runs()] == ["b"] and store.scalars("b").num_rows == 6
    root = layout.default_root(s3_root)
    left = root.fs.get_file_info(pafs.FileSelector(f"{root.key}/run=a", allow_not_found=True, recursive=True))
    assert left == []  # no folder markers either (pyarrow leaves one in place of a folder's last file)
