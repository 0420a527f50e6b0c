"""``_runs.parquet``: settled runs listed from the manifest while unchanged, and never a stale answer after a change.

Folders are aged with ``os.utime`` (instead of sleeping past the settle time) so that the manifest records them.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from entropy_watch.importers import import_log
from entropy_watch.store import RunWriter, Store, write_catalog
from entropy_watch.store import manifest as manifest_mod
from entropy_watch.store.layout import run_dir


def _age(root: Path) -> None:
    """Every folder of the store 10 s old (older than the settle time)."""
    old = time.time() - 10
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (old, old))


def _runs(root: Path) -> list[tuple]:
    return [(i.name, i.state, i.last_step, i.ranks, i.meta.get("k"), i.latest) for i in Store(root).runs()]


def _scanned(root: Path) -> list[tuple]:
    """The same listing without the manifest."""
    kept = root / "_runs.parquet.bak"
    shutil.move(root / manifest_mod.MANIFEST, kept)
    try:
        return _runs(root)
    finally:
        shutil.move(kept, root / manifest_mod.MANIFEST)


def _store(root: Path, tmp_path: Path) -> None:
    for name, state in (("done", "finished"), ("broke", "failed"), ("stopped", "interrupted")):
        w = RunWriter(root, name)
        w.update_run_meta(k=name)
        w.write("scalars", {"step": [0, 1, 2], "name": ["entropy/mean"] * 3, "value": [1.0, 0.9, 0.8]})
        w.close(state)
    live = RunWriter(root, "live")
    live.write("scalars", {"step": [5], "name": ["entropy/mean"], "value": [0.5]})
    log = tmp_path / "log.csv"
    log.write_text("step,entropy\n0,1.0\n1,0.5\n")
    import_log(root, log, run="imp")


def test_settled_runs_come_from_the_manifest_and_match_a_scan(root: Path, tmp_path: Path, monkeypatch) -> None:
    _store(root, tmp_path)
    _age(root)
    write_catalog(root)
    recorded = manifest_mod.Manifest.load(root).rows
    assert sorted(recorded) == ["broke", "done", "imp", "stopped"], "running runs are never recorded"
    assert _runs(root) == _scanned(root)
    original, calls = Store._read_state, []

    def spy(self: Store, run: str):
        calls.append(run)
        return original(self, run)

    monkeypatch.setattr(Store, "_read_state", spy)
    _runs(root)
    assert calls == ["live"], "only the run that is not settled is read"


def test_changes_after_the_manifest_are_seen(root: Path, tmp_path: Path) -> None:
    _store(root, tmp_path)
    _age(root)
    write_catalog(root)
    RunWriter(root, "done", heartbeat=False).update_run_meta(k="edited")  # a side writer edits _run.json
    resumed = RunWriter(root, "broke")  # the failed run is resumed: running again
    resumed.write("scalars", {"step": [3], "name": ["entropy/mean"], "value": [0.7]})
    RunWriter(root, "stopped")  # the interrupted run is resumed (`train --resume`): running again
    shutil.rmtree(run_dir(root, "imp"))
    log = tmp_path / "log2.csv"
    log.write_text("step,entropy\n0,1.0\n1,0.5\n2,0.25\n")
    import_log(root, log, run="imp")  # deleted, then imported afresh: a new folder
    got = {r[0]: r for r in _runs(root)}
    assert got["done"][4] == "edited"
    assert got["broke"][1] == "running" and got["stopped"][1] == "running"
    assert got["imp"][2] == 2
    assert _runs(root) == _scanned(root)


def test_recently_changed_runs_are_not_recorded(root: Path, tmp_path: Path) -> None:
    _store(root, tmp_path)
    write_catalog(root)  # everything was written just now: within the settle time
    assert manifest_mod.Manifest.load(root).rows == {}
    assert _runs(root) == _scanned(root)


@pytest.mark.parametrize("garbage", [b"", b"not parquet"])
def test_an_unreadable_manifest_is_ignored(root: Path, tmp_path: Path, garbage: bytes) -> None:
    _store(root, tmp_path)
    (root / manifest_mod.MANIFEST).write_bytes(garbage)
    assert [r[0] for r in _runs(root)] == ["broke", "done", "imp", "live", "stopped"]
