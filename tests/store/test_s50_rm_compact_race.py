"""``rm`` of a run while ``compact`` merges it (:mod:`entropy_watch.store.remove`, :mod:`entropy_watch.store.compact`).

On an object store neither takes a lock. A compactor that read the run before ``rm`` and PUT its part after ``rm``
finished left the deleted run's rows in the bucket: ``ls``, ``show`` and SQL listed the run again, without its config,
though ``rm`` had said "removed". One that read an input ``rm`` had just deleted failed (a cron ``compact`` of every
run stopped there). Each interleaving is forced here by the code's own seams (no sleeps); every one must end with the
run gone, the other run whole, and no object left under the removed run's prefix. A local store serialises the two
with ``.compact.lock`` (checked once, cheaply).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from entropy_watch.errors import EntropyWatchError
from entropy_watch.store import RunWriter, Store, compact, layout
from entropy_watch.store.fs import ObjectPath
from entropy_watch.store.remove import remove_run

compact_module = importlib.import_module("entropy_watch.store.compact")
files_module = importlib.import_module("entropy_watch.store.files")
fs_module = importlib.import_module("entropy_watch.store.fs")
remove_module = importlib.import_module("entropy_watch.store.remove")

GONE = {"b": 6}


def _store(root: str | Path) -> None:
    """Run ``a`` (4 segments of 2 rows) to remove, run ``b`` (6 rows) to keep."""
    for name, steps in (("a", 4), ("b", 3)):
        w = RunWriter(root, name, rank=0)
        for i in range(steps):
            w.write("scalars", {"step": [i, i], "name": ["m", "n"], "value": [1.0, 2.0]})
        w.close()


def _seen(root: str | Path) -> dict[str, int]:
    """Rows per run as ``ls`` lists the runs and as SQL over every run reads them (they must agree)."""
    store = Store(root)
    listed = {i.name: store.scalars(i.name).num_rows for i in store.runs()}
    tbl = store.sql("SELECT run, count(*) AS n FROM scalars GROUP BY run")
    assert dict(zip(tbl["run"].to_pylist(), tbl["n"].to_pylist(), strict=True)) == listed
    return listed


def _left(root: str, run: str = "a") -> list[str]:
    """Every key under the run's prefix, folder markers included (a marker alone lists the run)."""
    r = layout.default_root(root)
    infos = r.fs.get_file_info(pafs.FileSelector(f"{r.key}/run={run}", allow_not_found=True, recursive=True))
    return sorted(i.path for i in infos)


@pytest.mark.slow
def test_a_part_put_after_rm_does_not_bring_the_run_back(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compactor listed and read the run, then ``rm`` ran whole, then the part's PUT landed."""
    _store(s3_root)
    real = compact_module.publishing

    @contextlib.contextmanager
    def rm_before_put(path: Any, tmp: Any, *, fsync: bool = False) -> Iterator[Any]:
        with real(path, tmp, fsync=fsync) as fh:
            yield fh  # the inputs are read and the part's bytes written (to memory): the PUT comes on leaving
            remove_run(s3_root, "a")

    monkeypatch.setattr(compact_module, "publishing", rm_before_put)
    report = compact(s3_root, "a", min_age_s=0)
    assert report.parts_written == 0  # written, found orphaned, withdrawn: nothing to report
    assert _left(s3_root) == []
    assert _seen(s3_root) == GONE


@pytest.mark.slow
def test_a_compactor_reading_what_rm_deleted_skips_the_run(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``rm`` ran between the compactor's listing and its read of the inputs: no error, nothing written."""
    _store(s3_root)
    real = compact_module._write_part

    def rm_then_read(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(compact_module, "_write_part", real)  # run a's folder only
        remove_run(s3_root, "a")
        return real(*args, **kwargs)

    monkeypatch.setattr(compact_module, "_write_part", rm_then_read)
    report = compact(s3_root, min_age_s=0)  # every run, as cron runs it: run b is merged still
    assert report.parts_written == 1 and report.rows == 6
    assert _left(s3_root) == []
    assert _seen(s3_root) == GONE


@pytest.mark.slow
def test_a_part_deleted_before_its_footer_is_read_skips_the_run(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``rm`` ran between the compactor's listing of a folder and its read of a listed part's coverage."""
    _store(s3_root)
    compact(s3_root, "a", min_age_s=0)  # a part, its segments kept for the grace period
    w = RunWriter(s3_root, "a", rank=0)
    w.write("scalars", {"step": [9], "name": ["m"], "value": [0.0]})
    w.close()
    real = files_module.listdir

    def listed_then_removed(path: Any, **kwargs: Any) -> Any:
        found = real(path, **kwargs)
        if path.name == "rank=0" and "run=a/" in str(path):
            monkeypatch.setattr(files_module, "listdir", real)
            remove_run(s3_root, "a")
        return found

    monkeypatch.setattr(files_module, "listdir", listed_then_removed)
    assert compact(s3_root, "a", min_age_s=0).parts_written == 0
    assert _left(s3_root) == []
    assert _seen(s3_root) == GONE


@pytest.mark.slow
def test_a_compaction_started_while_rm_deletes_leaves_nothing(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cron ``compact`` that starts once ``rm`` deleted the run's first segment merges the rest and PUTs a part
    while ``rm`` is still deleting: the run's config is still there, so the part stays, and ``rm`` deletes it."""
    _store(s3_root)
    real = fs_module.unlink
    merged: list[int] = []

    def unlink(path: Any) -> None:
        real(path)
        if "run=a/table=" in str(path) and fs_module.unlink is unlink:
            monkeypatch.setattr(fs_module, "unlink", real)  # once
            merged.append(compact(s3_root, "a", min_age_s=0, final=True).parts_written)

    monkeypatch.setattr(fs_module, "unlink", unlink)
    remove_run(s3_root, "a")
    assert merged == [1]  # it did write a part
    assert _left(s3_root) == []
    assert _seen(s3_root) == GONE


@pytest.mark.slow
def test_a_part_whose_inputs_another_compactor_deleted_stays(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after the part's PUT a second compactor (grace 0) deletes the segments it covers, relying on it: the
    inputs are gone as after ``rm``, but the run's config is there, so the part stays (it is their only copy)."""
    _store(s3_root)
    real = compact_module.publishing

    @contextlib.contextmanager
    def then_compact(path: Any, tmp: Any, *, fsync: bool = False) -> Iterator[Any]:
        with real(path, tmp, fsync=fsync) as fh:
            yield fh
        assert compact(s3_root, "a", grace_s=0).merged_files == 4

    monkeypatch.setattr(compact_module, "publishing", then_compact)
    assert compact(s3_root, "a", min_age_s=0).parts_written == 1
    assert _seen(s3_root) == {"a": 8, **GONE}


@pytest.mark.slow
def test_a_run_without_config_keeps_its_part(s3_root: str) -> None:
    """A run of data only (no ``_run.json``, ``_meta`` or heartbeats: copied in by hand) is not taken for removed."""
    _store(s3_root)
    r = layout.default_root(s3_root)
    for rel, path in fs_module.walk_files(r / "run=a"):
        if not rel.startswith("table="):
            fs_module.unlink(path)
    assert compact(s3_root, "a", min_age_s=0).parts_written == 1
    assert _seen(s3_root) == {"a": 8, **GONE}


class _WrittenAfterDeletes:
    """An S3 filesystem on which something PUTs a part into the run (a compactor that checked the run while ``rm``
    was mid-way, or a writer) each time ``rm`` has just deleted the run's folder markers, ``times`` times."""

    def __init__(self, real: pafs.FileSystem, times: int) -> None:
        self.real, self.times = real, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def delete_dir(self, key: str) -> None:
        self.real.delete_dir(key)
        if self.times > 0:
            self.times -= 1
            with self.real.open_output_stream(f"{key}/table=scalars/rank=0/part-1-1-{self.times:06d}.parquet") as out:
                out.write(b"late")


def _hooked_root(s3_root: str, times: int, monkeypatch: pytest.MonkeyPatch) -> ObjectPath:
    real = layout.default_root(s3_root)
    # the run is not live: this filesystem is no pyarrow one, and the reads that tell so need one
    monkeypatch.setattr(remove_module, "check_removable", lambda *a, **k: False)
    return ObjectPath(_WrittenAfterDeletes(real.fs, times), real.key)


@pytest.mark.slow
def test_rm_deletes_what_appeared_after_its_deletions(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _store(s3_root)
    remove_run(_hooked_root(s3_root, 2, monkeypatch), "a")
    assert _left(s3_root) == []
    assert _seen(s3_root) == GONE


@pytest.mark.slow
def test_rm_says_so_when_objects_keep_appearing(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _store(s3_root)
    with pytest.raises(EntropyWatchError, match="was written to while rm deleted it") as info:
        remove_run(_hooked_root(s3_root, 1_000, monkeypatch), "a")
    assert type(info.value).__name__ == "RunWrittenMeanwhile" and "\n" not in str(info.value)
    assert all("/part-1-1-" in k or not k.endswith(".parquet") for k in _left(s3_root))  # only what came late


def test_local_rm_waits_for_a_compactor_mid_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Locally the compactor holds ``.compact.lock`` from its listing to its last deletion and ``rm`` takes it first:
    the ``rm`` started before the part's rename waits, then removes the run with the part."""
    pytest.importorskip("fcntl")
    root = tmp_path / "ew_runs"
    _store(root)
    real = compact_module.publishing
    rm = threading.Thread(target=remove_run, args=(root, "a"))

    @contextlib.contextmanager
    def rm_before_rename(path: Any, tmp: Any, *, fsync: bool = False) -> Iterator[Any]:
        with real(path, tmp, fsync=fsync) as fh:
            yield fh
            rm.start()
            rm.join(timeout=0.5)
            assert rm.is_alive()  # blocked on the lock (were it not, it would have moved the run away under us)

    monkeypatch.setattr(compact_module, "publishing", rm_before_rename)
    assert compact(root, "a", min_age_s=0).parts_written == 1
    rm.join(timeout=60)
    assert not rm.is_alive() and not (root / "run=a").exists()
    assert _seen(root) == GONE
