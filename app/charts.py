"""Plotly figure builders for the app. Pure: arrays, dataclasses and the verdict in, ``go.Figure`` out.

Entropy is in nats per token at the sampling temperature; the x axis is the logged training step. Long series arrive
already downsampled (``entropy_watch.store.reads``): an aggregated trace is drawn as its bucket mean with a shaded
min–max band, so spikes stay visible. Traces are SVG ``go.Scatter`` (without a GPU, WebGL was 6–25× slower to
render; STORE_AND_APP §5). Layout rules every figure follows: the title top left, the legend *under* the plot (it
never covers the title or the data), reference levels (H_ref, the floor) drawn as legend entries rather than labels
on the data, and one ``uirevision`` so a live refresh keeps the user's zoom. A run's known change points (a resume,
an LR or config change, a reset) are marked on every step chart of the Run page alike (:func:`mark_changes`).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from entropy_watch import metrics as M
from entropy_watch.analysis.changes import CHANGE_LABELS, RESET_EVENT_KINDS, change_label, change_meaning, change_what
from entropy_watch.app import forecast_chart
from entropy_watch.app.display import eta_reach, short_name, smooth
from entropy_watch.axes import log_ticks, log_ticks_over
from entropy_watch.store.reads import Heatmap, Trace

STEP_AXIS = "step (optimizer updates)"
NATS_AXIS = "entropy (nats/token)"
HEIGHT = 360
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
SEVERITY_COLOURS = {"info": "#1f77b4", "warning": "#ff7f0e", "critical": "#d62728"}
LEGEND_ROW_CHARS = 70  # legend characters per row under a half-width chart (about 7 px each)


def _legend_rows(fig: go.Figure) -> int:
    """Rows of the horizontal legend, packed as Plotly packs them: an entry that does not fit the row's rest starts
    the next row (a count of characters over the row width undercounts long run names, and the legend was cut)."""
    rows, used = 0, LEGEND_ROW_CHARS
    for name in (t.name for t in fig.data if t.showlegend is not False and t.name):
        width = len(name) + 6  # the entry's symbol and gap: about 6 characters
        if used + width > LEGEND_ROW_CHARS:
            rows, used = rows + 1, 0
        used += width
    return rows


def _layout(
    fig: go.Figure,
    title: str,
    y_title: str,
    *,
    x_title: str = STEP_AXIS,
    height: int = HEIGHT,
    log_y: bool = False,
    x_range: tuple[float, float] | None = None,
    band: int = 0,
) -> go.Figure:
    """Title, size, margins, the legend under the plot (shown even for one series: the legend says what the line
    is), plain-number ticks (``exponentformat="none"``: never Plotly's SI "100µ" or "2m"), and ``x_range`` as the x
    axis range when given (the sidebar's step window). ``band``: pixels added between the title and the plot (the
    change points' labels sit there, off the data). The titles are text (:func:`plain`): one may hold a logged
    metric's name (the Compare page's "Evaluation pass@k"), and Plotly reads ``<a href>`` and ``<span style>`` in it."""
    title, y_title, x_title = plain(title), plain(y_title), plain(x_title)
    rows = _legend_rows(fig)
    top, bottom = 44 + band, 58 + 22 * rows
    total = height + 22 * max(rows - 1, 0) + band
    plot_h = total - top - bottom
    fig.update_layout(
        title={
            "text": title,
            "x": 0.01,
            "xanchor": "left",
            "y": 1 - 12 / total,
            "yanchor": "top",
            "font": {"size": 15},
        },
        template="plotly_white",
        height=total,
        margin={"l": 70, "r": 20, "t": top, "b": bottom},
        legend={"orientation": "h", "yanchor": "top", "y": -50 / plot_h, "xanchor": "left", "x": 0.0},
        hovermode="x unified",
        uirevision="keep",
        showlegend=True,
    )
    fig.update_xaxes(title_text=x_title, showgrid=True, showspikes=True, spikemode="across", spikethickness=1)
    fig.update_yaxes(title_text=y_title, showgrid=True)
    fig.update_xaxes(exponentformat="none", separatethousands=True)
    fig.update_yaxes(exponentformat="none", separatethousands=True)
    if x_range is not None:
        step_range(fig, x_range)
    if log_y:
        vals, text = log_ticks_over(t.y for t in fig.data if t.y is not None and t.yaxis in (None, "y"))
        fig.update_yaxes(type="log", tickvals=vals or None, ticktext=text or None)
    return fig


def step_range(fig: go.Figure, x_range: tuple[float, float]) -> go.Figure:
    """Show the steps ``x_range`` (the sidebar's window) and fit a linear y axis to what is drawn there: a forecast
    or a reference line running on past the window would otherwise stretch the y axis over values not in view."""
    lo, hi = float(x_range[0]), float(x_range[1])
    fig.update_xaxes(range=[lo, hi], autorange=False)
    if fig.layout.yaxis.type == "log":
        return fig
    seen: list[np.ndarray] = []
    for t in fig.data:
        if not isinstance(t, go.Scatter) or t.x is None or t.y is None or t.yaxis not in (None, "y"):
            continue
        try:
            x, y = np.asarray(t.x, dtype=np.float64), np.asarray(t.y, dtype=np.float64)
        except (TypeError, ValueError):  # a categorical axis (the alert timeline's detectors)
            continue
        keep = (x >= lo) & (x <= hi)
        if x.size > 1:  # a segment crossing the window (a reference line from before it to after it) counts too
            seg = (np.minimum(x[:-1], x[1:]) <= hi) & (np.maximum(x[:-1], x[1:]) >= lo)
            keep[:-1] |= seg
            keep[1:] |= seg
        y = y[keep]
        seen.append(y[np.isfinite(y)])
    ys = np.concatenate(seen) if seen else np.empty(0)
    if ys.size:
        y0, y1 = float(ys.min()), float(ys.max())
        pad = 0.05 * (y1 - y0) if y1 > y0 else max(abs(y0) * 0.05, 1e-9)
        # the primary axis only: an overlaid one (the ETA line's, the change points', the controller's nats) keeps
        # its own range
        fig.update_layout(yaxis={"range": [y0 - pad, y1 + pad], "autorange": False})
    return fig


def plain(text: object) -> str:
    """Data text (run and metric names, alert messages) for a Plotly label or hover text: Plotly reads ``<b>``,
    ``<a href>`` and entities in them, so ``&``, ``<`` and ``>`` are written as entities and show as themselves."""
    return html.escape(str(text), quote=False)


def percent_axis(fig: go.Figure) -> go.Figure:
    """A fraction's y axis read as percentages ("0.01%", "25%"), ticks and hover alike."""
    return fig.update_yaxes(tickformat="~%", hoverformat=".3~%")


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def add_trace(
    fig: go.Figure,
    tr: Trace,
    label: str,
    colour: str,
    *,
    dash: str | None = None,
    band: bool = True,
    smoothing: float = 0.0,
    **kw: Any,
) -> None:
    """Add ``tr`` as a line; an aggregated trace also gets its min–max band, and with ``smoothing`` > 0 the raw line
    is drawn faint under its smoothed curve (legend-linked, like TensorBoard)."""
    group = f"{label}-{colour}"
    if band and tr.aggregated:
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([tr.steps, tr.steps[::-1]]),
                y=np.concatenate([tr.hi, tr.lo[::-1]]),
                fill="toself",
                fillcolor=_rgba(colour, 0.15),
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=group,
                name=plain(f"{label} min–max per {tr.width} steps"),
                **kw,
            )
        )
    if smoothing > 0:
        fig.add_trace(
            go.Scatter(
                x=tr.steps,
                y=tr.mean,
                mode="lines",
                name=plain(f"{label} (raw)"),
                showlegend=False,
                line={"color": _rgba(colour, 0.3), "width": 1},
                legendgroup=group,
                hoverinfo="skip",
                **kw,
            )
        )
    y = smooth(tr.mean, smoothing) if smoothing > 0 else tr.mean
    fig.add_trace(
        go.Scatter(
            x=tr.steps,
            y=y,
            mode="lines",
            name=plain(label),
            line={"color": colour, "width": 1.8, "dash": dash},
            legendgroup=group,
            **kw,
        )
    )


def hline(fig: go.Figure, y: float, x0: float, x1: float, label: str, colour: str, dash: str = "dash") -> None:
    """A horizontal reference level as a legend entry (never a label sitting on the data)."""
    fig.add_trace(
        go.Scatter(
            x=[x0, x1],
            y=[y, y],
            mode="lines",
            name=label,
            line={"color": colour, "dash": dash, "width": 1.2},
            hovertemplate=f"{label}<extra></extra>",
        )
    )


def lines(
    traces: Sequence[tuple[str, Trace]],
    title: str,
    y_title: str,
    *,
    dashes: Mapping[str, str] | None = None,
    zero_line: bool = False,
    smoothing: float = 0.0,
    log_y: bool = False,
    colours: Mapping[str, str] | None = None,
    percent: bool = False,
) -> go.Figure:
    """Several labelled traces on one axis; ``zero_line`` marks y = 0 for signed quantities. ``colours``: a fixed
    colour per label (else the palette in order); ``percent``: the values are fractions, read as percentages."""
    fig = go.Figure()
    for i, (label, tr) in enumerate(traces):
        colour = (colours or {}).get(label) or PALETTE[i % len(PALETTE)]
        add_trace(fig, tr, label, colour, dash=(dashes or {}).get(label), smoothing=smoothing)
    if zero_line:
        fig.add_hline(y=0.0, line={"color": "#999", "width": 1})
    fig = _layout(fig, title, y_title, log_y=log_y)
    return percent_axis(fig) if percent else fig


def entropy_forecast(
    entropy: Trace,
    *,
    floor: float | None = None,
    floor_label: str = "",
    h_ref: float | None = None,
    h_ref_label: str = "",
    forecast: Any = None,
    unsettled_line: float | None = None,
    smoothing: float = 0.0,
    title: str = "Token entropy (mean) and forecast",
    x_range: tuple[float, float] | None = None,
    changes: ChangeMarks | None = None,
) -> go.Figure:
    """Entropy mean with the verdict's forecast (an ``entropy_watch.analysis`` ``Outlook``: ``steps``, ``curve``,
    ``lo``, ``hi`` in nats, ``eta_step``/``eta_lo_step``/``eta_hi_step`` absolute steps or None, ``target_label``,
    ``interval``, ``reached``). Nothing here computes a forecast; it only draws the one it is given
    (:mod:`entropy_watch.app.forecast_chart`). Without ``x_range`` the step axis spans the data, the curve and the
    ETA; the reference lines span the axis. ``unsettled_line``: the warning line (nats) an unsettled explosion's
    points are still past (``Verdict.unsettled_line``; such a verdict has no forecast). ``changes``: the run's known
    change points in the step window, marked and labelled by kind (:func:`mark_changes`)."""
    fig = go.Figure()
    add_trace(fig, entropy, "entropy mean", PALETTE[0], smoothing=smoothing)
    x0 = float(entropy.steps[0]) if len(entropy) else 0.0
    x1 = max(float(entropy.steps[-1]) if len(entropy) else 1.0, forecast_chart.curve_end(forecast) or -math.inf)
    # the step axis: the window asked for, else the data, the curve and the ETA (the reference lines span it all)
    axis = x_range or (x0, eta_reach(x0, x1, forecast_chart.shown_eta(forecast)))
    x1 = max(x1, axis[1])
    if forecast is not None:
        forecast_chart.draw_forecast(fig, forecast, axis)
    if forecast is not None and forecast.direction == "rise":  # the level an explosion heads for, or is past
        hline(fig, forecast.target, x0, x1, f"explosion level {forecast.target:.3g} nats", "#9467bd", "dashdot")
    if unsettled_line is not None and math.isfinite(unsettled_line):
        label = f"explosion warning line {unsettled_line:.3g} nats: points still past it"
        hline(fig, unsettled_line, x0, x1, label, "#9467bd", "dashdot")
    if h_ref is not None and math.isfinite(h_ref):
        hline(fig, h_ref, x0, x1, f"H_ref {h_ref:.3g} nats{h_ref_label}", "#7f7f7f", "dot")
    if floor is not None and math.isfinite(floor):
        hline(fig, floor, x0, x1, f"floor {floor:.3g} nats{floor_label}", "#d62728")
    marked = changes is not None and len(changes) > 0
    if marked:
        mark_changes(fig, changes, labelled=True, span=x_range or (x0, x1))
    return _layout(fig, title, NATS_AXIS, height=400, x_range=x_range, band=CHANGE_BAND if marked else 0)


def entropy_heatmap(hm: Heatmap, edges: np.ndarray) -> go.Figure:
    """Token-entropy histogram over steps: one column per step bucket, one row per entropy bin, log colour scale.

    Rows are placed at each bin's geometric centre on a log entropy axis; bin 0 (exactly 0 nats) is the bottom row,
    drawn a decade under the first positive bin.
    """
    edges = np.asarray(edges, dtype=np.float64)
    first = float(edges[1]) if edges.size > 1 else 1e-4
    # bin 0: exactly 0 nats; bin 1: (0, edges[1]); bin i >= 2: [edges[i-1], edges[i]) at its geometric centre
    centres = np.concatenate([[first / 30.0, first / 3.0], np.sqrt(edges[1:-1] * edges[2:])])[: edges.size]
    counts = hm.counts[:, : centres.size].T.astype(np.float32)  # (bins, columns); float32 halves the payload
    z = np.log10(1.0 + counts)
    zmax = float(np.nanmax(z)) if z.size else 1.0
    ticks = list(range(int(np.ceil(zmax)) + 1))
    fig = go.Figure(
        go.Heatmap(
            x=hm.steps + (hm.width - 1) / 2.0,
            y=centres,
            z=z,
            colorscale="Viridis",
            zmin=0.0,
            colorbar={
                "title": {"text": "tokens"},
                "tickvals": ticks,
                "ticktext": ["0" if v == 0 else f"1e{v}" if v > 3 else f"{10**v:,}" for v in ticks],
            },
            customdata=counts,
            hovertemplate="step %{x:.0f}<br>H ≈ %{y:.3g} nats<br>%{customdata:,.0f} tokens<extra></extra>",
        )
    )
    tickvals, ticktext = log_ticks(float(centres[0]), float(centres[-1]))
    fig.update_yaxes(type="log", tickvals=tickvals, ticktext=ticktext)
    width = f" (columns of {hm.width} steps)" if hm.width > 1 else ""
    fig = _layout(fig, f"Token-entropy histogram over steps{width}", "token entropy (nats, log scale)", height=400)
    fig.update_layout(hovermode="closest")
    return fig


def quantile_fan(quantiles: Mapping[str, Trace], smoothing: float = 0.0) -> go.Figure:
    """Entropy quantiles p10…p99 as a fan: p10–p90 shaded, p50 solid, p99 dashed (keys: metric names)."""
    fig = go.Figure()
    p10, p50, p90, p99 = (quantiles.get(n) for n in (M.ENTROPY_P10, M.ENTROPY_P50, M.ENTROPY_P90, M.ENTROPY_P99))

    def y(tr: Trace) -> np.ndarray:
        return smooth(tr.mean, smoothing)

    if p10 is not None and p90 is not None and len(p10) == len(p90):
        fig.add_trace(
            go.Scatter(x=p10.steps, y=y(p10), mode="lines", line={"width": 0.8, "color": "#1f77b4"}, name="p10")
        )
        fig.add_trace(
            go.Scatter(
                x=p90.steps,
                y=y(p90),
                mode="lines",
                line={"width": 0.8, "color": "#1f77b4"},
                fill="tonexty",
                fillcolor="rgba(31,119,180,0.2)",
                name="p90",
            )
        )
    else:
        for label, tr in (("p10", p10), ("p90", p90)):
            if tr is not None:
                fig.add_trace(go.Scatter(x=tr.steps, y=y(tr), mode="lines", name=label))
    if p50 is not None:
        fig.add_trace(
            go.Scatter(
                x=p50.steps, y=y(p50), mode="lines", name="p50 (median)", line={"color": "#1f77b4", "width": 2.2}
            )
        )
    if p99 is not None:
        fig.add_trace(
            go.Scatter(x=p99.steps, y=y(p99), mode="lines", name="p99", line={"color": "#d62728", "dash": "dash"})
        )
    return _layout(fig, "Token-entropy quantiles (fan)", NATS_AXIS)


def clip_chart(low: Trace | None, high: Trace | None, region: Trace | None = None, smoothing: float = 0.0) -> go.Figure:
    """Binding clip fractions: clip-low (A<0, ρ<1−ε_low) raises entropy, clip-high (A>0, ρ>1+ε_high) lowers it."""
    items = [(lbl, t) for lbl, t in (("clip-low (raises H)", low), ("clip-high (lowers H)", high)) if t is not None]
    if region is not None:
        items.append(("clip region (low+high)", region))
    fig = lines(
        items,
        "Clipped tokens: low vs high",
        "fraction of tokens",
        dashes={"clip region (low+high)": "dot"},
        smoothing=smoothing,
        percent=True,
    )
    fig.update_yaxes(rangemode="tozero")
    return fig


def delta_h_chart(predicted: Trace | None, observed: Trace | None, smoothing: float = 0.0) -> go.Figure:
    """Predicted (covariance, first order) vs observed per-step entropy change, nats."""
    items = [(lbl, t) for lbl, t in (("predicted ΔH (cov/pred_dH)", predicted), ("observed ΔH", observed)) if t]
    title = "Entropy change per step: predicted vs observed"
    if len(items) == 1:  # say which one the chart shows
        title = f"Entropy change per step: {'predicted' if items[0][1] is predicted else 'observed'} only"
    return lines(
        items,
        title,
        "ΔH (nats/token per step)",
        zero_line=True,
        smoothing=smoothing,
    )


CONTROL_LABELS: dict[str, str] = {
    M.CONTROL_ZETA: "REPO-R ζ (control/zeta; > 0 pushes entropy up)",
    M.CONTROL_EPS_HIGH: "ADAPO ε_high (control/eps_high; clip at 1 + ε_high)",
    M.CONTROL_ENTROPY_COEF: "entropy bonus α (control/entropy_coef)",
    M.CONTROL_ZETA_MAX: "cap on |ζ| (control/zeta_max)",
    M.CONTROL_EPS_MAX: "cap on ε_high (control/eps_max)",
}
"""Controller knobs (left axis, unitless) and their meaning."""
CONTROL_CAPS: dict[str, str] = {M.CONTROL_ZETA_MAX: M.CONTROL_ZETA, M.CONTROL_EPS_MAX: M.CONTROL_EPS_HIGH}
"""Each knob's cap (constant): drawn dotted in the colour of the knob it bounds."""
CONTROL_NATS: dict[str, tuple[str, str]] = {
    M.CONTROL_ENTROPY: ("entropy the controller saw (control/entropy)", "solid"),
    M.CONTROL_TARGET: ("target entropy (control/target_entropy)", "dash"),
}
"""Controller entropy levels (right axis, nats)."""


def controller_chart(tr: Mapping[str, Trace], smoothing: float = 0.0) -> go.Figure | None:
    """The entropy controller's state: each knob it turns (left axis) and, on the right axis in nats, the entropy
    it compared with its target and the target band. Unknown ``control/*`` names are drawn on the left axis under
    their own name. None when nothing under ``control/`` was logged."""
    names = [n for n in tr if n.startswith("control/")]
    if not names:
        return None
    fig = go.Figure()
    knobs = [n for n in names if n not in CONTROL_NATS and n not in (M.CONTROL_BAND_LOW, M.CONTROL_BAND_HIGH)]
    colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(n for n in knobs if n not in CONTROL_CAPS)}
    for n in colours:
        add_trace(fig, tr[n], CONTROL_LABELS.get(n, n), colours[n], smoothing=smoothing)
    for cap, knob in CONTROL_CAPS.items():
        if cap in tr:
            add_trace(fig, tr[cap], CONTROL_LABELS[cap], colours.get(knob, "#7f7f7f"), dash="dot", band=False)
    low, high = tr.get(M.CONTROL_BAND_LOW), tr.get(M.CONTROL_BAND_HIGH)
    if low is not None and high is not None and len(low) == len(high):
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([low.steps, high.steps[::-1]]),
                y=np.concatenate([low.mean, high.mean[::-1]]),
                fill="toself",
                fillcolor="rgba(44,160,44,0.15)",
                line={"width": 0},
                yaxis="y2",
                name="target band (control/band_low–band_high, nats)",
                hoverinfo="skip",
            )
        )
    for n, (label, dash) in CONTROL_NATS.items():
        if n in tr:
            add_trace(
                fig,
                tr[n],
                label + ", nats",
                "#2ca02c" if dash == "dash" else "#7f7f7f",
                dash=dash,
                smoothing=smoothing,
                yaxis="y2",
            )
    fig = _layout(fig, "Entropy controller", "knob value" if knobs else "")
    if any(n in tr for n in CONTROL_NATS) or low is not None:
        fig.update_layout(  # plotly.js syncs an overlaying axis's ticks to the left one's grid by default: the
            yaxis2={  # nats read 0.067, 0.367, 0.668...; its own round ticks instead, from 0 nats
                "title": {"text": NATS_AXIS},
                "overlaying": "y",
                "side": "right",
                "showgrid": False,
                "tickmode": "auto",
                "rangemode": "tozero",
            }
        )
        fig.update_layout(margin={"r": 70})
    return fig


def reward_vs_entropy(
    steps: np.ndarray, h: np.ndarray, r: np.ndarray, law: Mapping[str, Any] | None, reward_name: str
) -> go.Figure:
    """Reward against entropy, coloured by step, with the fit R = −a·exp(H) + b (Cui et al. 2025) and its ceiling."""
    fig = go.Figure(
        go.Scatter(
            x=h,
            y=r,
            mode="markers",
            name="steps",
            marker={"color": steps, "colorscale": "Viridis", "size": 6, "colorbar": {"title": {"text": "step"}}},
            hovertemplate="H %{x:.3g} nats<br>R %{y:.3g}<br>step %{marker.color:.0f}<extra></extra>",
        )
    )
    if law is not None and h.size:
        a, b = float(law["a"]), float(law["b"])
        xs = np.linspace(0.0, float(np.nanmax(h)) * 1.05, 100)
        poor = "" if law.get("applicable", True) else " — poor fit"
        with np.errstate(over="ignore", invalid="ignore"):  # H of a corrupt cell (1e300 nats): no curve up there
            ys = b - a * np.exp(xs)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": "#d62728", "dash": "dash"},
                name=f"R = −{a:.3g}·exp(H) + {b:.3g}  (R² {law.get('r2', float('nan')):.2f}){poor}",
            )
        )
        ceiling = law.get("ceiling", b - a)
        hline(
            fig,
            ceiling,
            0.0,
            float(np.nanmax(h)) * 1.05,
            f"ceiling at H=0: {ceiling:.3g}; headroom {law.get('headroom', float('nan')):.3g}",
            "#7f7f7f",
            "dot",
        )
    fig = _layout(fig, f"{reward_name} vs entropy", reward_name, x_title=NATS_AXIS)
    fig.update_layout(hovermode="closest")
    return fig


# -- known change points ------------------------------------------------------------------------------------------
CHANGE_COLOURS: dict[str, str] = {
    "resume": "#17becf",
    "lr_schedule": "#8c564b",
    "lr_change": "#8c564b",
    "config": "#e377c2",
    "config_edit": "#e377c2",
    "reset": "#bcbd22",
}
"""Each kind of change point's colour; which kinds are change points, what they are called and what the analysis does
at them is :mod:`entropy_watch.analysis.changes`; a kind missing here is drawn in grey."""
CHANGE_AXIS = "y3"
"""The hidden axis (0 to 1, over the plot's whole height) the change points are drawn on: the data's axis keeps its
range, and the controller chart's second axis is left alone."""
CHANGE_BAND = 16
"""Pixels added between a chart's title and its plot for the change points' labels."""
MAX_CHANGE_MARKS = 200
"""Marks of one kind drawn at most per chart; more are thinned to the first of each of as many equal step ranges."""
MAX_CHANGE_LABELS = 10
"""Labels at most on one chart, each a tenth of the step axis from the last: a crowd of them would cover each other."""
MAX_PAYLOAD_FIELDS = 6
MAX_VALUE_CHARS = 120


@dataclass(frozen=True)
class ChangeMarks:
    """Known change points to mark on a step chart: ``steps`` (n,) int64, ``kinds`` (n,) and ``payloads`` (n,) each
    one's event payload (data: its hover shows it escaped, :func:`change_details`)."""

    steps: np.ndarray
    kinds: tuple[str, ...]
    payloads: tuple[Mapping[str, Any], ...]

    def __len__(self) -> int:
        return int(self.steps.shape[0])


def change_details(payload: Mapping[str, Any]) -> list[str]:
    """A change point's payload, one ``key: value`` line per field, plain text (values are data): at most
    :data:`MAX_PAYLOAD_FIELDS` fields, a value cut to :data:`MAX_VALUE_CHARS` in its middle (a path keeps its end)."""
    lines = []
    for key, value in list(payload.items())[:MAX_PAYLOAD_FIELDS]:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        lines.append(f"{key}: {short_name(text, MAX_VALUE_CHARS)}")
    if len(payload) > MAX_PAYLOAD_FIELDS:
        lines.append(f"… {len(payload) - MAX_PAYLOAD_FIELDS} more fields")
    return lines


def _thin(steps: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of ``steps`` (n,), the indices kept (the first of each of ``n_max`` equal step ranges, in step order), how
    many others each kept one stands for, and the last step of its range."""
    order = np.argsort(steps, kind="stable")
    s = steps[order]
    if s.size <= n_max:
        return order, np.zeros(s.size, np.int64), s
    bucket = np.minimum((s - s[0]) * n_max // max(int(s[-1] - s[0]), 1), n_max - 1)
    first = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    end = np.r_[first[1:], s.size]
    return order[first], end - first - 1, s[end - 1]


def mark_changes(
    fig: go.Figure,
    marks: ChangeMarks,
    *,
    labelled: bool = False,
    span: tuple[float, float] | None = None,
    run: str | None = None,
    colour: str | None = None,
) -> go.Figure:
    """Mark known change points on a step chart: a thin dotted vertical line over the plot's height at each one's
    step, coloured by kind, with a small marker at the top whose hover says what it is and what the analysis does
    there, then its payload as data. Two traces per kind (the lines, the markers) on :data:`CHANGE_AXIS`, never a shape
    per point; more than :data:`MAX_CHANGE_MARKS` of a kind are thinned, each kept one's hover counting the others.
    ``labelled`` (the entropy chart): a legend entry per kind and the kind's name over the markers, at most
    :data:`MAX_CHANGE_LABELS`, a tenth of ``span`` (the step axis range; default the marks' own) apart; the other
    step charts draw the lines and hovers only. ``run`` (the compare view, several runs on one chart): the marks are
    that run's, drawn in its ``colour`` and named after it in the hovers and the legend group."""
    steps = np.asarray(marks.steps, dtype=np.int64)
    kinds = np.asarray(marks.kinds, dtype=object)
    order = sorted(set(marks.kinds), key=lambda k: (list(CHANGE_LABELS).index(k) if k in CHANGE_LABELS else 99, k))
    # per kind: the points drawn (indices into marks), how many others each stands for, the last step of its range
    kept: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for kind in order:
        idx = np.flatnonzero(kinds == kind)
        keep, more, last = _thin(steps[idx], MAX_CHANGE_MARKS)
        kept[kind] = (idx[keep], more, last)
    shown: set[int] = set()  # the marks labelled: greedily in step order, a tenth of the axis apart
    if labelled:
        lo, hi = span if span is not None else (float(steps.min(initial=0)), float(steps.max(initial=0)))
        drawn = np.concatenate([k[0] for k in kept.values()]) if kept else np.zeros(0, np.int64)
        last_at = None
        for i in drawn[np.argsort(steps[drawn], kind="stable")]:
            if len(shown) == MAX_CHANGE_LABELS:
                break
            if last_at is None or steps[i] - last_at >= (hi - lo) / MAX_CHANGE_LABELS:
                shown.add(int(i))
                last_at = steps[i]
    who = f"{run}: " if run is not None else ""
    for kind, (idx, more, last) in kept.items():
        label, line_colour = change_label(kind), colour or CHANGE_COLOURS.get(kind, "#7f7f7f")
        # the hover: what the point is, then what the analysis does there (one text per kind, in the template), its
        # payload and the points it stands for
        hover = np.empty((idx.size, 2), dtype=object)
        for n, (i, others, end) in enumerate(zip(idx, more, last, strict=True)):
            details = change_details(marks.payloads[i])
            details += [f"+ {others} more {label} up to step {int(end):,}"] if others else []
            hover[n, 0] = plain(f"{who}step {int(steps[i]):,}: {change_what(kind, marks.payloads[i])}")
            hover[n, 1] = "".join(f"<br>{plain(line)}" for line in details)
        at = steps[idx].astype(np.float64)
        xs = np.repeat(at, 3)
        xs[2::3] = np.nan  # a gap between the lines: one trace draws them all
        labels = np.asarray([plain(label) if int(i) in shown else "" for i in idx], dtype=object)
        group = f"change:{kind}" + (f"@{run}" if run is not None else "")
        restart = "baselines restart" if kind in RESET_EVENT_KINDS else "baselines kept"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=np.tile([0.0, 1.0, np.nan], idx.size),
                yaxis=CHANGE_AXIS,
                mode="lines",
                line={"color": line_colour, "width": 1, "dash": "dot"},
                name=plain(f"{who}{label} ({restart})"),
                legendgroup=group,
                showlegend=labelled,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=at,
                y=np.ones(idx.size),
                yaxis=CHANGE_AXIS,
                mode="markers+text" if labelled else "markers",
                marker={"color": line_colour, "size": 8, "symbol": "triangle-down"},
                text=labels if labelled else None,
                textposition="top center",
                textfont={"size": 10, "color": line_colour},
                cliponaxis=False,
                customdata=hover,
                hovertemplate=f"%{{customdata[0]}} — {plain(change_meaning(kind))}%{{customdata[1]}}<extra></extra>",
                name=plain(f"{who}{label}"),
                legendgroup=group,
                showlegend=False,
            )
        )
    fig.update_layout(
        yaxis3={"overlaying": "y", "range": [0, 1], "autorange": False, "fixedrange": True, "visible": False}
    )
    return fig


ACTIONS_ROW = "actions taken"


def alert_timeline(
    alerts: Sequence[Any], x_range: tuple[float, float] | None = None, actions: Sequence[Mapping[str, Any]] = ()
) -> go.Figure:
    """Alerts as markers on the step axis, one row per detector, coloured by severity; the ``on_alert`` actions the
    run took (``actions``: rows of :func:`entropy_watch.app.data.actions_taken`) on a row of their own."""
    fig = go.Figure()
    if actions:
        fig.add_trace(
            go.Scatter(
                x=[a["step"] for a in actions],
                y=[ACTIONS_ROW] * len(actions),
                mode="markers",
                name="action",
                marker={"color": "#2ca02c", "size": 14, "symbol": "x"},
                text=[plain(action_text(a)) for a in actions],
                hovertemplate="step %{x}<br>%{text}<extra></extra>",
            )
        )
    for severity, colour in SEVERITY_COLOURS.items():
        rows = [a for a in alerts if a.severity == severity]
        if rows:
            fig.add_trace(
                go.Scatter(
                    x=[a.step for a in rows],
                    y=[plain(a.detector) for a in rows],
                    mode="markers",
                    name=severity,
                    marker={"color": colour, "size": 13, "symbol": "diamond"},
                    text=[plain(a.message) for a in rows],
                    hovertemplate="step %{x}<br>%{text}<extra></extra>",
                )
            )
    height = max(220, 110 + 40 * (len({a.detector for a in alerts}) + bool(actions)))
    fig = _layout(fig, "Alert timeline", "detector", height=height)
    if x_range is not None:
        fig.update_xaxes(range=list(x_range))
    fig.update_layout(hovermode="closest")
    return fig


def action_text(action: Mapping[str, Any]) -> str:
    """One line for an action event: what it did and the alert that fired it (``did`` entries are data)."""
    did = action.get("did") or action.get("actions") or ["(no description)"]
    alert = action.get("alert") or {}
    sev, kind, step = alert.get("severity", "?"), alert.get("kind", "?"), alert.get("step", "?")
    why = f" — on {sev} {kind} at step {step}" if alert else ""
    return "; ".join(str(d) for d in did) + why


def run_colours(runs: Sequence[str]) -> dict[str, str]:
    """One colour per run, by its place in ``runs``: the same run has the same colour in every panel."""
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(runs)}


def overlay(
    per_run: Mapping[str, Trace],
    title: str,
    y_title: str,
    *,
    log_y: bool = False,
    smoothing: float = 0.0,
    colours: Mapping[str, str] | None = None,
    percent: bool = False,
    legend_chars: int | None = None,
) -> go.Figure:
    """The same metric of several runs on shared axes, aligned by step (the compare view). ``log_y`` keeps one
    exploding run from flattening the others; ``colours`` (:func:`run_colours`) keeps each run's colour across
    panels whichever runs a panel lacks. ``legend_chars`` (a half-width panel): each run named in at most that many
    characters, its middle elided (:func:`short_name`), so a long name is not cut at the chart's edge, where runs
    that differ only at the end (``…rho0.30_seed43``, ``…rho0.50_seed43``) read the same."""
    if legend_chars is None:
        traces = list(per_run.items())
        return lines(traces, title, y_title, log_y=log_y, smoothing=smoothing, colours=colours, percent=percent)
    named = {short_name(r, legend_chars): (r, tr) for r, tr in per_run.items()}
    if len(named) < len(per_run):  # two names alike once elided: the full names, as before
        return overlay(per_run, title, y_title, log_y=log_y, smoothing=smoothing, colours=colours, percent=percent)
    colours = colours or run_colours(list(per_run))
    traces = [(short, tr) for short, (_, tr) in named.items()]
    by_short = {short: colours[r] for short, (r, _) in named.items() if r in colours}
    return lines(traces, title, y_title, log_y=log_y, smoothing=smoothing, colours=by_short, percent=percent)
