"""Catalog publication on a full disk, and the run status of a run resumed on fewer ranks.

The full disk is real, at the OS level, and needs no privileges: a subprocess lowers its own ``RLIMIT_FSIZE`` (a write
past it fails with ``EFBIG``, as one fails with ``ENOSPC`` on a full disk), the way ``test_s46_full_disk.py`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from entropy_watch.store import RunWriter, write_catalog

resource = pytest.importorskip("resource")  # POSIX only

CATALOG_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from entropy_watch.store import write_catalog

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        write_catalog(sys.argv[1])
        print("WROTE")
    except Exception as exc:
        print("FAILED", type(exc).__name__, exc)
    """
)


def _views(path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return sorted(r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall())
    finally:
        con.close()


def _store_with_run(root: Path) -> None:
    w = RunWriter(root, "r", heartbeat_interval_s=1e9)
    w.write("scalars", {"step": [0, 1], "name": ["entropy/mean"] * 2, "value": [1.0, 0.9], "wall_time": [1.0, 2.0]})
    w.close()


def test_catalog_on_a_full_disk_keeps_the_previous_one_and_leaves_nothing(tmp_path: Path) -> None:
    """The views sat in the write-ahead log when the close-time checkpoint failed silently: a catalog without views
    was published, and the views stayed in an orphaned ``._catalog.duckdb.<pid>.0.tmp.wal`` nothing cleaned."""
    _store_with_run(tmp_path)
    cat = write_catalog(tmp_path)
    views = _views(cat)
    assert views == ["alerts", "events", "hist", "scalars", "tokens"]
    # 64 KiB: the write-ahead log of the views fits, the checkpointed database (~140 KiB) does not
    out = subprocess.run(
        [sys.executable, "-c", CATALOG_UNDER_LIMIT, str(tmp_path), str(64 * 1024)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "FAILED CatalogNotWritten" in out.stdout, out.stdout
    assert "_catalog.duckdb" in out.stdout and "previous catalog" in out.stdout
    assert _views(cat) == views  # the old catalog, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("._catalog")] == []


def test_catalog_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    _store_with_run(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    litter = [tmp_path / f"._catalog.duckdb.{pid}.0.tmp", tmp_path / f"._catalog.duckdb.{pid}.0.tmp.wal"]
    for p in litter:
        p.write_bytes(b"x" * 100)
    live = tmp_path / f"._catalog.duckdb.{os.getppid()}.0.tmp.wal"  # a live process's: left alone
    live.write_bytes(b"x")
    write_catalog(tmp_path)
    assert not any(p.exists() for p in litter)
    assert live.exists()


# -- a run resumed on fewer ranks -------------------------------------------------------------------------------------
def _session(root: Path, ranks: range, steps: range, *, end: str | None, resume: bool, beat_s: float = 1e9) -> None:
    """One launch of ``ranks``: each logs entropy at ``steps`` (rank 0 first writes a resume event at the first
    step when ``resume``) and closes in state ``end`` (None: never closes, as a killed or hung rank)."""
    writers = [RunWriter(root, "r", rank, heartbeat_interval_s=beat_s) for rank in ranks]
    for w in writers:
        if resume and w.rank == ranks[0]:
            w.write("events", {"step": [steps[0]], "kind": ["resume"], "payload": ["{}"]})
        for step in steps:
            w.write("scalars", {"step": [step], "name": ["entropy/mean"], "value": [1.0 - step / 100]})
        w.heartbeat()
        if end is not None:
            w.close(end)


def test_a_rank_the_resumed_session_does_not_have_no_longer_decides_the_state(tmp_path: Path) -> None:
    """3 ranks, rank 2 fails at step 5; resumed from step 2 on ranks 0 and 1, which finish: ``finished``, last step
    3 (rank 2's step 5 was replaced by the resume), where ``ls`` read ``failed`` at step 5 for good."""
    from entropy_watch.store import Store

    _session(tmp_path, range(2), range(0, 2), end="failed", resume=False)
    _session(tmp_path, range(2, 3), range(0, 6), end="failed", resume=False)
    _session(tmp_path, range(2), range(2, 4), end="finished", resume=True)
    info = Store(tmp_path).run_info("r")
    assert (info.state, info.last_step, info.latest["entropy/mean"]) == ("finished", 3, (1.0 - 3 / 100, 3))
    assert info.ranks == [0, 1, 2]
    assert [i.state for i in Store(tmp_path).runs()] == ["finished"]


def test_without_a_resume_the_earlier_rank_still_decides(tmp_path: Path) -> None:
    from entropy_watch.store import Store

    _session(tmp_path, range(3), range(0, 2), end="failed", resume=False)
    _session(tmp_path, range(2), range(2, 4), end="finished", resume=False)
    assert Store(tmp_path).run_info("r").state == "failed"


def test_a_rank_of_the_resumed_session_that_stalls_still_decides(tmp_path: Path) -> None:
    import time

    from entropy_watch.store import Store

    _session(tmp_path, range(3), range(0, 2), end="failed", resume=False)
    _session(tmp_path, range(1), range(2, 4), end="finished", resume=True)
    _session(tmp_path, range(1, 2), range(2, 3), end=None, resume=False, beat_s=0.05)  # killed: never closes
    time.sleep(0.3)  # past 3 heartbeat intervals
    assert Store(tmp_path).run_info("r").state == "stalled"


# -- the heartbeat's latest value, as the readers keep it -------------------------------------------------------------
@pytest.mark.parametrize("one_segment", [True, False])
def test_heartbeat_latest_is_the_value_show_reads(tmp_path: Path, one_segment: bool) -> None:
    """Two rows of one step: the readers keep the latest ``wall_time`` (``reads.LATEST_FIRST``); the heartbeat kept
    the step's last row in the file (or the later segment), so ``ls`` listed 0.9 where ``show`` read 0.5."""
    from entropy_watch.store import Store

    w = RunWriter(tmp_path, "r", heartbeat_interval_s=1e9)
    rows = {"step": [5, 5], "name": ["entropy/mean"] * 2, "value": [0.5, 0.9], "wall_time": [12.0, 11.0]}
    if one_segment:
        w.write("scalars", rows)
    else:
        for i in range(2):
            w.write("scalars", {k: v[i : i + 1] for k, v in rows.items()})
    w.heartbeat()
    store = Store(tmp_path)
    shown = store.ends("r", ("entropy/mean",))["entropy/mean"][1]
    assert shown == (0.5, 5)
    assert store.run_info("r").latest["entropy/mean"] == shown
    w.close()
    assert Store(tmp_path).run_info("r").latest["entropy/mean"] == shown
