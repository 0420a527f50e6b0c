"""Log axes are ticked in plain numbers: the report's entropy chart used Plotly's own log labels, a bare "2" and "5"
at the 2x and 5x ticks, so the "2" beside the floor line (0.02 nats) read 2 nats; and a range of two decades that
crosses four decade lines lost its 2x and 5x ticks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from entropy_watch.axes import log_ticks


@pytest.mark.parametrize(("lo", "hi"), [(0.02, 2.5), (0.15, 7.3), (0.9, 1.2), (1e-5, 5.1), (0.003, 0.04), (2.0, 9e4)])
def test_log_ticks_are_round_plain_numbers_over_the_range(lo: float, hi: float) -> None:
    vals, text = log_ticks(lo, hi)
    assert vals == sorted(vals) and len(vals) == len(text) >= 1
    span = math.log10(hi / lo)
    allowed = (1.0,) if span >= 3 else (1.0, 2.0, 5.0)
    for v, t in zip(vals, text, strict=True):
        k = math.floor(math.log10(v) + 1e-9)
        assert any(math.isclose(v, m * 10.0**k) for m in allowed), v  # 1, 2 or 5 times a power of ten
        assert lo / 1.5 <= v <= hi * 1.5 and math.isclose(float(t), v, rel_tol=1e-9), (v, t)  # the label is the value
        assert not any(c in t for c in "mµk"), t
    naive = [m * 10.0**k for k in range(-8, 8) for m in allowed if lo / 1.5 <= m * 10.0**k <= hi * 1.5]
    np.testing.assert_allclose(vals, naive)  # every such tick, none left out


def test_the_report_entropy_axis_labels_its_ticks_with_their_values() -> None:
    pytest.importorskip("plotly")
    import plotly.graph_objects as go

    from entropy_watch.analysis import RunSeries, analyze
    from entropy_watch.report import _entropy_figure

    t = np.arange(120.0)
    h = 1.0 * np.exp(-t / 40) + 0.05  # 1.05 -> ~0.1 nats, floor 0.1 x H_ref
    s = RunSeries.from_arrays("r", t.astype(int), h)
    fig = _entropy_figure(go, s, analyze(s))
    y = fig.layout.yaxis
    assert y.type == "log" and y.tickvals is not None
    assert [float(x) for x in y.ticktext] == pytest.approx(list(y.tickvals))  # "0.2", never a bare "2"
    floor = analyze(s).verdict.floor
    assert min(y.tickvals) <= floor * 1.5 and max(y.tickvals) >= h.max() / 1.5  # the floor line and the run ticked


def test_log_ticks_over_what_an_axis_draws_reads_only_finite_positive_values() -> None:
    from entropy_watch.axes import log_ticks_over

    drawn = [np.array([0.3, np.nan, 1.2]), np.array([-1.0, 0.0, np.inf]), 0.02]  # lines and a level across them
    assert log_ticks_over(drawn) == log_ticks(0.02, 1.2)
    assert log_ticks_over([np.array([np.nan, 0.0])]) == ([], []) == log_ticks_over([])
