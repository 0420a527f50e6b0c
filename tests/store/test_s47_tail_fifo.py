"""A FIFO named like a segment is left out by the live reader and by a running run's summary, never opened.

``TailReader.poll`` listed rank folders by name and filtered only links, so a FIFO named
``seg-….parquet`` was handed to DuckDB, whose open blocks until a writer comes: the app's reader (and
``entropy-watch watch``) hung for good. A running rank's summary (``store/summary.py``) read the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, TailReader
from entropy_watch.store.layout import table_dir

from .fifos import within

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")

FIFO = "seg-1000000000000000000-1-000000.parquet"


def _write(w: RunWriter, steps: range) -> None:
    w.write("scalars", {"step": np.array(steps), "name": ["entropy/mean"] * len(steps), "value": np.ones(len(steps))})


def test_tail_poll_skips_a_fifo_named_like_a_segment(root: Path) -> None:
    w = RunWriter(root, "a")
    _write(w, range(5))
    w.close()
    fifo = table_dir(root, "a", "scalars", 0) / FIFO
    os.mkfifo(fifo)
    with TailReader(root) as tail:
        assert within(tail.poll, [fifo]) == 5
        assert tail.versions() == {"a": (5, 4)}
        _write(w2 := RunWriter(root, "a", rank=1), range(3))
        w2.close()
        assert within(tail.poll, [fifo]) == 3  # still there at the next poll: still left out
    assert fifo.exists()


def test_a_running_runs_summary_skips_a_fifo_named_like_its_segment(root: Path) -> None:
    w = RunWriter(root, "live")
    _write(w, range(4))
    seg = next(p.name for p in table_dir(root, "live", "scalars", 0).iterdir() if p.name.startswith("seg-"))
    session = "-".join(seg.split("-")[1:3])
    fifo = table_dir(root, "live", "scalars", 0) / f"seg-{session}-999999.parquet"  # uncovered by the heartbeat
    os.mkfifo(fifo)
    try:
        infos = within(Store(root).runs, [fifo])
        assert [(r.name, r.last_step) for r in infos] == [("live", 3)]
    finally:
        w.close()
