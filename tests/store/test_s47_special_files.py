"""A FIFO (or another file that is no regular file) planted in a store is left out, never opened.

Opening a FIFO for reading blocks until a writer opens it: a FIFO named ``_run.json`` or ``seg-….parquet`` hung
``ls``, ``show``, ``sql``, ``alerts`` and ``export`` for good, deaf even to SIGTERM (Python retries an interrupted
``open``), so a CI timeout could not stop them either.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store
from entropy_watch.store.layout import table_dir

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


def _within(fn: Callable[[], Any], fifos: list[Path], seconds: float = 10.0) -> Any:
    """``fn()``'s result; fails when it is still running after ``seconds`` (then frees it by opening each FIFO's
    writing end, so a hung read ends instead of hanging the test run)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    while thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # a blocked reader sees end of file
            except OSError:
                pass
        thread.join(0.1)
    assert not hung, "blocked on a FIFO in the store"
    if "error" in box:
        raise box["error"]
    return box["value"]


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
    runs = _within(lambda: [(r.name, r.last_step) for r in store.runs()], fifos)
    assert runs == [("a", 4), ("f", None)]
    assert _within(lambda: store.run_meta("f"), fifos) == {}
    rows = _within(lambda: store.sql("SELECT run, count(*) AS n FROM scalars GROUP BY run").to_pylist(), fifos)
    assert rows == [{"run": "a", "n": 5}]
    assert _within(lambda: store.scalars("a").num_rows, fifos) == 5
    assert all(f.exists() for f in fifos), "nothing removed"
