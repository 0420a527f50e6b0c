"""SIGKILL a real writer process at random moments: every acknowledged segment reads back, reads never fail.

The writer prints ``ACK`` only after ``RunWriter.write`` returned, i.e. after ``os.replace`` published the segment
(on an S3 root: after its one PUT completed). Segments are large (20k rows) so a kill often lands inside
``pq.write_table`` or the upload. The kill trials run on a local folder and on a bucket of a real S3-compatible
server (moto). The last test shows the check is meaningful: a truncated Parquet file under a published name (what a
direct write would leave) makes reads fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, TailReader, quarantine
from entropy_watch.store.fs import is_object, read_bytes, walk_files
from entropy_watch.store.layout import default_root, run_dir, table_dir

ROWS = 20_000


def _tmp_files(root: Path) -> list[Path]:
    return sorted(table_dir(root, "crash", "scalars", 0).glob(".*.tmp"))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sigkill_keeps_every_acknowledged_segment(any_root: str, spawn: Callable, seed: int) -> None:
    root = default_root(any_root)
    rng = np.random.default_rng(seed)
    proc = spawn("writer", any_root, "crash", 0, 10_000, ROWS, 0)
    acked: list[int] = []
    wait_for = int(rng.integers(1, 6))
    while len(acked) < wait_for:
        line = proc.stdout.readline()
        assert line.startswith("ACK"), f"writer died early: {line!r} {proc.stderr.read()}"
        acked.append(int(line.split()[1]))
    time.sleep(float(rng.uniform(0.0, 0.03)))
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate()
    acked += [int(line.split()[1]) for line in rest.splitlines() if line.startswith("ACK")]
    assert proc.returncode == -signal.SIGKILL

    if is_object(root):  # no temporaries on S3: every object listed is a whole Parquet file (magic bytes at the end)
        objects = [p for _, p in walk_files(run_dir(root, "crash")) if p.name.endswith(".parquet")]
        assert objects and all(read_bytes(p)[-4:] == b"PAR1" for p in objects)
    else:  # plant a stale temporary of the dead writer, so "ignored and cleaned" is always exercised
        seg_dir = table_dir(root, "crash", "scalars", 0)
        some_seg = next(seg_dir.glob("seg-*.parquet"))
        stale = seg_dir / f".seg-{time.time_ns()}-{proc.pid}-000999.parquet.tmp"
        stale.write_bytes(some_seg.read_bytes()[: some_seg.stat().st_size // 2])

    quarantine._bad.clear()
    store = Store(root)
    rows = store.sql("SELECT step, count(*) AS n FROM scalars GROUP BY step").to_pylist()
    per_step = {r["step"]: r["n"] for r in rows}
    assert set(acked) <= set(per_step), "an acknowledged segment is missing"
    assert all(n == ROWS for n in per_step.values()), "a partial segment is visible"
    # At most one segment beyond the acknowledged ones: published, killed before its ACK was printed.
    assert len(set(per_step) - set(acked)) <= 1
    tail = TailReader(root, tables=("scalars",))
    assert tail.poll() == ROWS * len(per_step)
    assert not quarantine._bad, "a published file is unreadable: something wrote under a final name"
    if is_object(root):
        RunWriter(root, "crash").close()  # a restarted writer on the same rank starts cleanly
        assert Store(root).scalars("crash").num_rows == ROWS * len(per_step)
        return

    assert _tmp_files(root), "the planted temporary should still be there"
    RunWriter(root, "crash").close()  # the next writer on this rank removes the dead writer's temporaries
    assert _tmp_files(root) == []
    assert Store(root).scalars("crash").num_rows == ROWS * len(per_step)


def test_live_writers_tmp_is_not_removed(root: Path) -> None:
    w = RunWriter(root, "crash")
    w.write("scalars", {"step": [0], "name": ["m"], "value": [1.0]})
    seg_dir = table_dir(root, "crash", "scalars", 0)
    alive = subprocess.Popen(["sleep", "30"])
    try:
        theirs = seg_dir / f".seg-{time.time_ns()}-{alive.pid}-000777.parquet.tmp"
        theirs.write_bytes(b"in progress")
        RunWriter(root, "crash").close()
        assert theirs.exists(), "a live process's temporary must survive another writer's start"
    finally:
        alive.kill()
        alive.wait()


def test_direct_write_regression_would_be_caught(root: Path) -> None:
    """A truncated file under a published name is found unreadable and quarantined: the crash test above, which
    requires that nothing is quarantined, would notice one."""
    quarantine._bad.clear()
    w = RunWriter(root, "crash")
    good = w.write("scalars", {"step": np.arange(1000), "name": ["m"] * 1000, "value": np.ones(1000)})
    truncated = good.with_name(f"seg-{w.session}-999999.parquet")
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert Store(root).scalars("crash").num_rows == 1000
    assert TailReader(root, tables=("scalars",)).poll() == 1000
    assert quarantine.is_quarantined(truncated)
    quarantine._bad.clear()
