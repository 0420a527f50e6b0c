"""Audit of verdict wording every surface prints: counts agree in number ("1 logged point"), a note does not repeat
the run name every surface already prints before it ("one: no alerts (one: 1 logged points; ...)"), and an unsettled
explosion whose warning line moved says the lines stood at its points' steps, then what the line is now."""

from __future__ import annotations

import numpy as np
import pytest

from entropy_watch.analysis import RunSeries, analyze

from ..real_runs import REAL

V1 = REAL / "rasbt__reasoning-from-scratch__ch07-7_6-format-reward-v1-c41b85c.csv"


@pytest.mark.parametrize("n", [1, 2, 5])
def test_too_short_note_counts_points_in_words(n: int) -> None:
    series = RunSeries.from_arrays("short-run", np.arange(1, n + 1), np.full(n, 0.5))
    res = analyze(series)
    assert res.verdict.health == "too-short"
    counted = f"{n} logged point" + ("" if n == 1 else "s")
    notes = [x for x in res.notes if "the detector decides from" in x]
    assert notes and notes[0].startswith(f"{counted};"), res.notes
    assert not any("1 logged points" in x or x.startswith("short-run:") for x in res.notes), res.notes


def test_few_finite_values_note_does_not_repeat_the_run_name() -> None:
    h = np.full(12, np.nan)
    h[:3] = 0.5
    res = analyze(RunSeries.from_arrays("nan-run", np.arange(1, 13), h))
    assert any(x.startswith("fewer than 6 finite entropy values") for x in res.notes), res.notes
    assert not any(x.startswith("nan-run:") for x in res.notes), res.notes


@pytest.mark.skipif(not V1.exists(), reason="shared/real_runs not present")
def test_moved_warning_line_is_quoted_per_step_then_now() -> None:
    from entropy_watch.importers import load_log

    v = analyze(RunSeries.from_imported(load_log(V1)[0])).verdict
    if not v.unsettled or "as it stood" not in v.unsettled:
        pytest.skip(f"the line did not move within the counted points here: {v.headline}")
    assert "the warning line as it stood at their steps (it is " in v.unsettled, v.unsettled
    assert "at their step (" not in v.unsettled, v.unsettled


def test_a_share_under_the_floor_never_prints_as_the_floor() -> None:
    """'entropy 0.046 nats (10% of H_ref 0.47); below 10% of H_ref (0.047 nats) now': 9.8% was rounded up onto the
    floor's 10% (and 10.4% printed '10%' beside 'back above 10%'). Under 11% a share keeps one decimal, cut down."""
    from entropy_watch.analysis.alert import fmt_share

    shares = (0.098, 0.0999, 0.07, 0.04, 0.104, 0.1, 0.13)
    assert [fmt_share(x) for x in shares] == ["9.8%", "9.9%", "7%", "4%", "10.4%", "10.0%", "13%"]
    x = 0.046 / 0.47
    assert fmt_share(x) != "10%" and float(fmt_share(x).rstrip("%")) <= 100 * x


def test_an_interval_within_one_step_is_one_step() -> None:
    """A noise-free log's interval printed '(80% interval 49–49)'."""
    from entropy_watch.analysis.outlook import interval_range

    assert interval_range(49.2, 49.1, 49.3, 40.0) == "49" and interval_range(49.0, 40.0, 60.0, 40.0) == "40–60"
