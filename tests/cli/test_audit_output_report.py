"""Audit of the HTML report against the verdict it renders: the lines the headline quotes are drawn on the entropy
chart — an unsettled explosion's warning line ("but K of its last W points are past ... (x nats)") and, for an
explosion's forecast, the level its ETA is to ("at this rate 6× H_ref (0.95 nats) by step N"). Before, the report drew
H_ref and the floor only, so a reader of the headline could not find on the chart the line the points were past."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.report import _entropy_figure

from ..real_runs import REAL

V1 = REAL / "rasbt__reasoning-from-scratch__ch07-7_6-format-reward-v1-c41b85c.csv"
RISE = REAL / "Sunshine535__nips-grpo-dynamics__qwen25-7b-exp1a-rho0.50_seed43.jsonl"


def _figure(path: Path):  # noqa: ANN202 - a plotly Figure
    go = pytest.importorskip("plotly.graph_objects")
    from entropy_watch.importers import load_log

    series = RunSeries.from_imported(load_log(path)[0])
    result = analyze(series)
    return result.verdict, _entropy_figure(go, series, result)


def _drawn_levels(fig) -> list[float]:  # noqa: ANN001
    """The y of every horizontal line across the chart (nats)."""
    return [float(s.y0) for s in fig.layout.shapes if s.y0 is not None and s.y0 == s.y1]


def _labels(fig) -> list[str]:  # noqa: ANN001
    return [str(a.text) for a in fig.layout.annotations]


@pytest.mark.skipif(not V1.exists(), reason="shared/real_runs not present")
def test_unsettled_explosion_line_is_drawn_where_the_headline_says() -> None:
    v, fig = _figure(V1)
    assert v.unsettled and v.unsettled_line is not None and v.forecast is None, v.headline
    line = v.unsettled_line
    assert any(math.isclose(y, line, rel_tol=1e-9) for y in _drawn_levels(fig)), (line, _drawn_levels(fig))
    assert any("explosion warning line" in t and f"{line:.3g} nats" in t for t in _labels(fig)), _labels(fig)


@pytest.mark.skipif(not RISE.exists(), reason="shared/real_runs not present")
def test_explosion_forecast_target_is_drawn() -> None:
    v, fig = _figure(RISE)
    f = v.forecast
    if f is None or f.direction != "rise":
        pytest.skip(f"this run's verdict has no rise forecast here: {v.headline}")
    assert f.target_label in v.headline  # the headline quotes the level its ETA is to ...
    assert any(math.isclose(y, f.target, rel_tol=1e-9) for y in _drawn_levels(fig))  # ... and the chart draws it
    assert f.target_label in _labels(fig)
