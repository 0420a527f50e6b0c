"""``entropy-watch compact`` when something in the store is wrong: an unreadable data file, a full disk.

An unreadable file (a torn copy written by another program) is left where it is, unmerged, and named in one warning
line that says what to do; the rest merges and the exit status is 0. A merge that fails on a full disk says the folder
is unchanged (and it is) and what to do. The full disk is real, at the OS level, and needs no privileges: the command
runs as a process whose ``RLIMIT_FSIZE`` is lowered (a write past it fails with ``EFBIG``, as one fails with
``ENOSPC`` on a full disk), as ``test_s46_catalog_status.py`` does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, quarantine, write_catalog
from entropy_watch.store.catalog import CatalogNotWritten

from ..cli_run import run_cli

resource = pytest.importorskip("resource")  # POSIX only


def _store(root: Path, runs: tuple[str, ...] = ("a", "b"), segments: int = 6) -> None:
    for i, run in enumerate(runs):
        w = RunWriter(root, run, heartbeat_interval_s=1e9)
        for step in range(segments):
            w.write("scalars", {"step": [step] * 2, "name": ["entropy/mean", "reward/mean"], "value": [i + step, 0.5]})
        w.close()


def _torn_copy(root: Path, run: str = "a") -> Path:
    """A truncated copy of a segment beside it, as another tool's torn write or a copy cut short leaves one."""
    folder = root / f"run={run}" / "table=scalars" / "rank=0"
    src = sorted(folder.glob("seg-*-000000.parquet"))[0]
    bad = src.with_name(src.name.replace("-000000.parquet", "-000007.parquet"))
    bad.write_bytes(src.read_bytes()[:300])
    return bad


def _rows(root: Path, run: str) -> list[tuple[int, str, float]]:
    t = Store(root).scalars(run)
    return sorted(zip(t["step"].to_pylist(), t["name"].to_pylist(), t["value"].to_pylist(), strict=True))


@pytest.fixture(autouse=True)
def _fresh_quarantine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: no file quarantined yet (a CLI run is one process)."""
    monkeypatch.setattr(quarantine, "_bad", {})


@pytest.mark.parametrize("args", [(), ("--min-age", "0"), ("--final",), ("a", "--final")])
def test_an_unreadable_segment_is_named_once_with_what_to_do_and_the_rest_merges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """It blamed a full disk or permissions ("free space or fix the permissions") for the torn file."""
    _store(tmp_path)
    expected = {run: _rows(tmp_path, run) for run in ("a", "b")}
    bad = _torn_copy(tmp_path)
    torn = bad.read_bytes()
    code, out, err = run_cli(capsys, "--store", tmp_path, "compact", *args)
    assert code == 0, err
    assert bad.read_bytes() == torn  # never deleted, moved or merged: it could not be read
    named = [line for line in err.splitlines() if str(bad) in line]
    assert len(named) == 1, err  # one line, not one per reader of it
    assert named[0].startswith("warning: ") and "Move it out of the store" in named[0] and "delete it" in named[0]
    assert "free space" not in err and "permissions" not in err
    assert "error" not in err.lower().replace("parquet", "")  # a warning, not an error
    assert "catalog views refreshed" not in out  # its views over the torn file would fail: not claimed
    if args != ():  # merged whatever was readable: one part per folder, the torn file beside it
        folder = bad.parent
        assert sorted(p.name.split("-")[0] for p in folder.glob("*.parquet")) == ["part", "seg"]
        assert "1 unreadable file left unmerged" in out
    quarantine._bad.clear()
    assert {run: _rows(tmp_path, run) for run in ("a", "b")} == expected  # every readable row, once
    # once the user moves it aside, compact finishes the job: catalog and all
    bad.rename(tmp_path.parent / "inspect-me.parquet")
    code, out, err = run_cli(capsys, "--store", tmp_path, "compact", "--final")
    assert (code, err) == (0, "")
    assert "catalog views refreshed" in out


def test_write_catalog_names_the_unreadable_file_not_the_disk(tmp_path: Path) -> None:
    _store(tmp_path, runs=("a",), segments=2)
    cat = write_catalog(tmp_path)
    before = cat.read_bytes()
    bad = _torn_copy(tmp_path)
    with pytest.raises(CatalogNotWritten) as info:
        write_catalog(tmp_path)
    msg = str(info.value)
    assert f"data file {bad} is unreadable" in msg and "delete it" in msg
    assert "free space" not in msg and "permissions" not in msg and "\n" not in msg
    assert cat.read_bytes() == before  # the previous catalog is kept
    assert quarantine.is_quarantined(bad)  # and the rest of the store reads without it
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("._catalog")] == []


def _full_disk(limit: int) -> Callable[[], None]:
    def limit_writes() -> None:  # in the child, before exec: SIG_IGN survives exec, the limit too
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return limit_writes


def test_a_merge_on_a_full_disk_says_the_folder_is_unchanged_and_what_to_do(tmp_path: Path) -> None:
    """It printed ``error: [Errno 28] No space left on device: '<part path>'``: no advice, a path not there."""
    rng = np.random.default_rng(0)
    w = RunWriter(tmp_path, "r", heartbeat_interval_s=1e9)
    for step in range(16):  # incompressible values: the merged part (~130 KiB) cannot fit under the 32 KiB limit
        w.write("scalars", {"step": [step] * 500, "name": [f"n{i}" for i in range(500)], "value": rng.random(500)})
    w.close()
    folder = tmp_path / "run=r" / "table=scalars" / "rank=0"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".parquet"}
    assert max(len(b) for b in before.values()) < 32 * 1024
    rows = _rows(tmp_path, "r")
    out = subprocess.run(
        [sys.executable, "-m", "entropy_watch", "--store", str(tmp_path), "compact", "--final", "--min-age", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_full_disk(32 * 1024),
        env={**os.environ, "COLUMNS": "1000"},
    )
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: cannot write a merged file in ") and str(folder) in lines[0]
    assert "nothing was lost" in lines[0] and "Free space, then run `entropy-watch compact` again" in lines[0]
    assert "Errno" not in lines[0]
    # and it is so: the same files, byte for byte, no temporary left, every row still read
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".parquet"} == before
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    assert _rows(tmp_path, "r") == rows
