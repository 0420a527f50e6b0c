"""A FIFO (or another file that is no regular file) planted in a store is left out, never opened.

Opening a FIFO for reading blocks until a writer opens it: a FIFO named ``_run.json`` or ``seg-….parquet`` hung
``ls``, ``show``, ``sql``, ``alerts`` and ``export`` for good, deaf even to SIGTERM (Python retries an interrupted
``open``), so a CI timeout could not stop them either.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store
from entropy_watch.store.layout import table_dir

from .fifos import within

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


@pytest.fixture
def fifo_store(root: Path) -> tuple[Path, list[Path]]:
    w = RunWriter(root, "a")
    w.write("scalars", {"step": np.arange(5), "name": ["entropy/mean"] * 5, "value": np.linspace(1, 0.5, 5)})
    w.close()
    fifos = [
        table_dir(root, "a", "scalars", 0) / "seg-1000000000000000000-1-000000.parquet",
        root / "run=f" / "_run.json",
        table_dir(root, "f", "scalars", 0) / "seg-1000000000000000000-1-000000.parquet",
    ]
    for fifo in fifos:
        fifo.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(fifo)
    return root, fifos


def test_a_fifo_in_the_store_is_never_opened(fifo_store: tuple[Path, list[Path]]) -> None:
    root, fifos = fifo_store
    store = Store(root)
    runs = within(lambda: [(r.name, r.last_step) for r in store.runs()], fifos)
    assert runs == [("a", 4), ("f", None)]
    assert within(lambda: store.run_meta("f"), fifos) == {}
    rows = within(lambda: store.sql("SELECT run, count(*) AS n FROM scalars GROUP BY run").to_pylist(), fifos)
    assert rows == [{"run": "a", "n": 5}]
    assert within(lambda: store.scalars("a").num_rows, fifos) == 5
    assert all(f.exists() for f in fifos), "nothing removed"
