"""A name logged twice at one step within one flush, in a run that logs every 10th step ({0, 10, 20, 20}): every
reader reads that step once, with the value ``series`` keeps. The readers tell a repeat inside one segment only by a
step range too short for its rows, which steps 10 apart never are: ``series_many`` and ``downsampled`` read step 20
twice. The recorder now puts the second write in a segment of its own (nothing lost: both rows stay in the store),
where the readers' overlap check finds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from entropy_watch.recorder import Recorder
from entropy_watch.store import RunWriter, Store

RUN = "every10"
NAME = "entropy/mean"


def _record(root: Path, rows: list[tuple[int, float, float]]) -> None:
    rec = Recorder(RunWriter(root, RUN), flush_secs=3600, handle_sigterm=False)  # one flush: one segment
    for step, value, wall in rows:
        rec.scalars(step, {NAME: value}, wall_time=wall)
    rec.close()


def _check(root: Path, want_steps: list[int], want_values: list[float]) -> None:
    store = Store(root)
    steps, values = store.series(RUN, NAME)
    assert steps.tolist() == want_steps and values.tolist() == want_values  # the reference: one row per step
    many = store.series_many(RUN, [NAME])[NAME]
    assert many[0].tolist() == want_steps and many[1].tolist() == want_values
    trace = store.downsampled(RUN, [NAME])[NAME]
    np.testing.assert_allclose(trace.steps, want_steps)
    np.testing.assert_allclose(np.asarray(trace.mean, dtype=float), want_values)


def test_a_repeat_within_one_flush_reads_once_where_steps_skip(tmp_path: Path) -> None:
    _record(tmp_path, [(0, 2.0, 100.0), (10, 1.9, 101.0), (20, 1.5, 102.0), (20, 1.7, 103.0)])
    _check(tmp_path, [0, 10, 20], [2.0, 1.9, 1.7])  # the later write of step 20 wins


def test_the_row_kept_is_the_latest_wall_time_not_the_last_row(tmp_path: Path) -> None:
    _record(tmp_path, [(0, 2.0, 100.0), (10, 1.9, 101.0), (20, 1.5, 105.0), (20, 1.7, 103.0)])
    _check(tmp_path, [0, 10, 20], [2.0, 1.9, 1.5])  # as LATEST_FIRST orders rows: wall_time first
    (info,) = Store(tmp_path).runs()
    assert info.last_step == 20


def test_both_writes_stay_in_the_store(tmp_path: Path) -> None:
    _record(tmp_path, [(0, 2.0, 100.0), (20, 1.5, 102.0), (20, 1.7, 103.0)])
    rows = Store(tmp_path).sql(f"SELECT step, value FROM scalars WHERE name = '{NAME}' ORDER BY step, value")
    assert rows.to_pylist() == [{"step": 0, "value": 2.0}, {"step": 20, "value": 1.5}, {"step": 20, "value": 1.7}]
