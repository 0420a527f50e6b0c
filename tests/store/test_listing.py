"""FolderWatch: a poller lists only what is new, skips settled unchanged folders, and loses nothing to coarse mtimes
or to a poll that failed before it committed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from entropy_watch.store import RunWriter, TailReader
from entropy_watch.store import listing as listing_mod
from entropy_watch.store.files import CoverageCache
from entropy_watch.store.layout import run_dir, table_dir
from entropy_watch.store.listing import FolderWatch


def _seg(w: RunWriter, step: int) -> Path:
    return w.write("scalars", {"step": [step], "name": ["m"], "value": [1.0]})


def _age(path: Path, seconds: float = 10.0) -> None:
    for dirpath, _, _ in os.walk(path):
        t = os.stat(dirpath).st_mtime - seconds
        os.utime(dirpath, (t, t))


def _new(watch: FolderWatch, root: Path, runs: list[str], commit: bool = True) -> list[str]:
    scan = watch.scan(root, runs, "scalars", CoverageCache())
    if commit:
        watch.commit(scan)
    return [f.path.name for f in scan.new]


def test_only_new_files_and_settled_folders_cost_a_stat(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = RunWriter(root, "r")
    first = [_seg(w, i).name for i in range(3)]
    watch = FolderWatch()
    assert _new(watch, root, ["r"]) == first
    assert _new(watch, root, ["r"]) == []
    latest = _seg(w, 3).name
    assert _new(watch, root, ["r"]) == [latest]
    assert watch.files == 4
    _age(run_dir(root, "r"))
    assert _new(watch, root, ["r"]) == []  # the aged folders are listed once more, now settled
    listed = []
    real = os.listdir
    monkeypatch.setattr(listing_mod.os, "listdir", lambda p: listed.append(p) or real(p))
    assert _new(watch, root, ["r"]) == [] and listed == [], "an unchanged settled folder is not listed"
    newest = _seg(w, 4).name
    assert _new(watch, root, ["r"]) == [newest] and listed == [table_dir(root, "r", "scalars", 0)]


def test_a_file_in_the_same_mtime_tick_is_not_missed(root: Path) -> None:
    w = RunWriter(root, "r")
    _seg(w, 0)
    watch = FolderWatch()
    _new(watch, root, ["r"])
    folder = table_dir(root, "r", "scalars", 0)
    tick = os.stat(folder).st_mtime_ns
    late = _seg(w, 1).name
    os.utime(folder, ns=(tick, tick))  # as if published within the same coarse tick as the last listing
    assert _new(watch, root, ["r"]) == [late], "a folder listed within the settle time is listed again"


def test_nothing_is_remembered_until_commit_and_gone_folders_are_forgotten(root: Path) -> None:
    w = RunWriter(root, "r")
    names = [_seg(w, i).name for i in range(2)]
    watch = FolderWatch()
    assert _new(watch, root, ["r"], commit=False) == names
    assert _new(watch, root, ["r"]) == names, "an uncommitted scan (a failed ingest) is scanned again"
    shutil.rmtree(run_dir(root, "r"))
    assert _new(watch, root, ["r"]) == [] and watch.files == 0


def test_tail_poll_over_s3_lists_only_new_objects(s3_root: str) -> None:
    w = RunWriter(s3_root, "r")
    for i in range(3):
        _seg(w, i)
    tail = TailReader(s3_root, tables=("scalars",))
    assert tail.poll() == 3 and tail.poll() == 0 and tail.files_seen == 3
    _seg(w, 3)
    assert tail.poll() == 1 and tail.files_seen == 4
    assert tail.poll() == 0


def test_trust_in_an_unchanged_folder_expires(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A network filesystem may serve a cached modification time: an unchanged folder is listed again after a while."""
    w = RunWriter(root, "r")
    _seg(w, 0)
    _age(run_dir(root, "r"))
    watch = FolderWatch()
    _new(watch, root, ["r"])
    monkeypatch.setattr(listing_mod, "TRUST_NS", 0)
    hidden = _seg(w, 1)
    folder = hidden.parent
    t = os.stat(folder).st_mtime - 10
    os.utime(folder, (t, t))  # the time a stale attribute cache could still report
    assert watch.scan(root, ["r"], "scalars", CoverageCache()).new[-1].path.name == hidden.name
