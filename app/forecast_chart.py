"""The verdict's forecast on the entropy chart (:func:`entropy_watch.app.charts.entropy_forecast`): its curve and
band, the ETA line, and the ETA's interval shaded and named in the legend. Pure: the verdict's ``Outlook`` in, Plotly
traces out; nothing here fits or changes a forecast, it only decides what of it lies on the step axis shown.

Every legend entry is on the chart: the ETA line and its interval are drawn only when the ETA lies on the drawn
curve and on the step axis (``Window.x_range`` and :func:`~entropy_watch.app.display.eta_reach` in ``app/display.py``
stretch the axis past it whenever the steps shown reach the run's end), and the interval is cut at the axis's right
end, its legend entry saying so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go

from entropy_watch.analysis.outlook import by_step_text, interval_range

ETA_COLOUR = "#d62728"
FORECAST_COLOUR = "#ff7f0e"
ETA_AXIS = "y2"
"""The hidden axis (0 to 1, the plot's whole height) the ETA line and its interval are drawn on."""


def eta_of(forecast: Any) -> float | None:
    """The outlook's median ETA (absolute step), or None when there is none or the level is already past the target
    (``reached``: nothing lies ahead)."""
    if forecast is None or forecast.reached or forecast.eta_step is None or not math.isfinite(forecast.eta_step):
        return None
    return float(forecast.eta_step)


def shown_eta(forecast: Any) -> float | None:
    """The ETA the chart marks: :func:`eta_of` where the verdict's drawn curve reaches it. The analysis draws the
    curve on to the ETA unless that lies more than ``outlook.MAX_REACH`` fit windows ahead, where a chart stretched
    over it would shrink the run into its first pixels (the HTML report stops there too); such an ETA is said under
    the chart instead (``run_panels.entropy_section``)."""
    eta, end = eta_of(forecast), curve_end(forecast)
    return eta if eta is not None and end is not None and eta <= end else None


def curve_end(forecast: Any) -> float | None:
    """The last step of the drawn forecast curve, or None without one."""
    return float(forecast.steps[-1]) if forecast is not None and len(forecast.steps) else None


def draw_forecast(fig: go.Figure, forecast: Any, axis: tuple[float, float]) -> None:
    """Add ``forecast``'s band and curve, and, when its ETA lies on ``axis`` (the step axis's range), the ETA line
    and its interval (shaded to the axis's right end at most, a legend entry of its own)."""
    pct = f"{100 * forecast.interval:.0f}%"
    if len(forecast.steps):
        x = np.asarray(forecast.steps, dtype=np.float64)
        band_y = np.concatenate([forecast.hi, np.asarray(forecast.lo)[::-1]])
        fig.add_trace(_shaded(np.concatenate([x, x[::-1]]), band_y, "rgba(255,127,14,0.18)", f"forecast {pct} band"))
        fig.add_trace(
            go.Scatter(
                x=x,
                y=forecast.curve,
                mode="lines",
                name=f"forecast ({forecast.model} fit)",
                line={"color": FORECAST_COLOUR, "dash": "dash", "width": 2},
            )
        )
    eta = shown_eta(forecast)
    left, right = float(axis[0]), float(axis[1])
    if eta is None or not left <= eta <= right:
        return
    lo, hi = forecast.eta_lo_step, forecast.eta_hi_step
    if lo is not None and (hi is None or hi > lo):
        a, b = max(float(lo), left), min(float(hi) if hi is not None else math.inf, right)
        cut = " (its late end past the chart)" if hi is None or hi > right else ""
        name = f"ETA {pct} interval: steps {interval_range(eta, lo, hi, forecast.fitted_at)}{cut}"
        fig.add_trace(_shaded([a, b, b, a, a], [0.0, 0.0, 1.0, 1.0, 0.0], "rgba(214,39,40,0.08)", name, ETA_AXIS))
    fig.add_trace(
        go.Scatter(
            x=[eta, eta],
            y=[0, 1],
            yaxis=ETA_AXIS,
            mode="lines",
            line={"color": ETA_COLOUR, "dash": "dot"},
            name=f"ETA to {forecast.target_label}: {by_step_text(eta, forecast.fitted_at, by='')}",
            hoverinfo="skip",
        )
    )
    fig.update_layout(yaxis2={"overlaying": "y", "range": [0, 1], "visible": False})


def _shaded(x: Any, y: Any, colour: str, name: str, yaxis: str = "y") -> go.Scatter:
    """A filled polygon (the forecast band, the ETA interval) with a legend entry and no hover."""
    return go.Scatter(x=x, y=y, yaxis=yaxis, mode="lines", fill="toself", fillcolor=colour, line={"width": 0},
                      name=name, hoverinfo="skip")  # fmt: skip
