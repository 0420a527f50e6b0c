"""A metric logged every k steps in a table shared with metrics logged more often: the NaN cells between its values
are gaps, not logged divergence (``off_cadence``); NaN where a value was due, or a NaN tail, stays a value."""

from __future__ import annotations

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.importers import load_log
from entropy_watch.importers.base import off_cadence


def _column(n: int, every: int, phase: int = 0) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(n, dtype=np.int64)
    values = np.where(steps % every == phase, 1.0 + steps / n, np.nan)
    return steps, values


@pytest.mark.parametrize(("every", "phase"), [(2, 0), (5, 0), (5, 3), (50, 7)])
def test_gaps_between_values_at_the_interval(every: int, phase: int) -> None:
    steps, values = _column(400, every, phase)
    gaps, k = off_cadence(steps, values)
    assert k == every
    assert np.array_equal(gaps, ~np.isfinite(values))


def test_nan_where_a_value_was_due_stays_a_value() -> None:
    steps, values = _column(400, 5)
    values[steps >= 300] = np.nan  # diverged at step 300: NaN at the cadence steps too
    gaps, k = off_cadence(steps, values)
    assert k == 5
    due = (steps % 5 == 0) & (steps >= 300)
    assert not gaps[due].any() and gaps[~due].sum() == np.isnan(values[~due]).sum()


def test_a_first_value_off_the_interval_is_kept() -> None:
    steps, values = _column(200, 5)
    values[1] = 0.5  # TRL's logging_first_step: step 1, then every 5
    gaps, k = off_cadence(steps, values)
    assert k == 5 and not gaps[1] and gaps.sum() == np.isnan(values).sum()


@pytest.mark.parametrize(
    "case",
    ["isolated", "tail", "all", "half-finite-off-phase", "irregular", "too-few"],
)
def test_no_gaps_read_where_the_nan_is_divergence(case: str) -> None:
    steps = np.arange(300, dtype=np.int64)
    values = 1.0 + np.sin(steps / 7.0) / 4
    if case == "isolated":  # a metric logged every step with failed steps
        values[[40, 41, 150, 151, 152, 290]] = np.nan
    elif case == "tail":
        values[200:] = np.nan
    elif case == "all":
        values[:] = np.nan
    elif case == "half-finite-off-phase":  # every 3rd due, but off-phase cells hold values half the time
        values[(steps % 3 != 0) & (steps % 2 == 0)] = np.nan
    elif case == "irregular":  # no interval dominates
        rng = np.random.default_rng(0)
        keep = np.sort(rng.choice(300, 60, replace=False))
        values = np.where(np.isin(steps, keep), values, np.nan)
    elif case == "too-few":
        values = np.where(np.isin(steps, [0, 100]), values, np.nan)
    gaps, k = off_cadence(steps, values)
    assert k == 0 and not gaps.any()


@pytest.mark.parametrize("na", ["NaN", "nan", ""])
def test_csv_with_a_sparse_column_imports_it_at_its_interval(tmp_path, na: str) -> None:
    rows = ["_step,train/reward,train/entropy"]
    for s in range(100):
        rows.append(f"{s},{s / 100:.2f},{1.0 - s / 200:.3f}" if s % 5 == 0 else f"{s},{s / 100:.2f},{na}")
    path = tmp_path / "wandb.csv"
    path.write_text("\n".join(rows) + "\n")
    (run,) = load_log(path)
    steps, values = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(0, 100, 5)) and np.isfinite(values).all()
    assert run.series(M.REWARD_MEAN)[0].size == 100
    noted = [n for n in run.notes if "not logged" in n]
    if na:
        assert len(noted) == 1 and "'train/entropy' (80 of 100 rows, logged every 5 steps)" in noted[0]
    else:  # empty cells were missing all along: nothing to say
        assert not noted
