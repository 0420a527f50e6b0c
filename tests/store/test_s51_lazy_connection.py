"""A :class:`Store` opens its DuckDB database (~25 ms of CPU each) at its first query, not when it is made: listing
finished runs reads their heartbeats and queries nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from entropy_watch.errors import RunNotFound
from entropy_watch.store import RunWriter, Store


def _finished(root: Path, name: str) -> None:
    w = RunWriter(root, name)
    w.write("scalars", {"step": [0, 1], "name": ["entropy/mean"] * 2, "value": [1.0, 0.9]})
    w.close()


def test_listing_finished_runs_opens_no_database_and_a_query_opens_one(tmp_path: Path) -> None:
    _finished(tmp_path, "a")
    _finished(tmp_path, "b")
    store = Store(tmp_path)
    assert [i.name for i in store.runs()] == ["a", "b"] and store.run_info("a").last_step == 1
    with pytest.raises(RunNotFound):
        store.series("gone", "entropy/mean")
    assert store._db._con is None  # before: every Store opened one when made
    steps, values = store.series("a", "entropy/mean")
    assert steps.tolist() == [0, 1] and values.tolist() == [1.0, 0.9]
    assert store._db._con is not None and store._con is store._db._con  # one, kept for the next query
