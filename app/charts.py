"""Plotly figure builders for the app and the HTML report. Pure: arrays and dataclasses in, ``go.Figure`` out.

No Streamlit here, so ``entropy-watch report`` can reuse every figure. Entropy is in nats per token at the sampling
temperature, the x axis is the logged training step. Long series arrive already downsampled (``app/queries.py``):
an aggregated trace is drawn as its bucket mean with a shaded min–max band, so spikes stay visible. Traces are SVG
``go.Scatter`` (without a GPU, WebGL was 6–25× slower to render; STORE_AND_APP §5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from entropy_watch.app.queries import Heatmap, Trace

STEP_AXIS = "step (optimizer updates)"
NATS_AXIS = "entropy (nats/token)"
HEIGHT = 340
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
SEVERITY_COLOURS = {"info": "#1f77b4", "warning": "#ff7f0e", "critical": "#d62728"}


def _layout(fig: go.Figure, title: str, y_title: str, *, x_title: str = STEP_AXIS, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        template="plotly_white",
        height=height,
        margin={"l": 70, "r": 20, "t": 70, "b": 55},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        hovermode="x unified",
        uirevision="keep",
    )
    fig.update_xaxes(title_text=x_title, showgrid=True)
    fig.update_yaxes(title_text=y_title, showgrid=True)
    return fig


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def add_trace(
    fig: go.Figure, tr: Trace, label: str, colour: str, *, dash: str | None = None, band: bool = True, **kw: Any
) -> None:
    """Add ``tr`` as a line; an aggregated trace also gets its min–max band (legend-linked)."""
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
                name=f"{label} min–max per {tr.width} steps",
                **kw,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=tr.steps,
            y=tr.mean,
            mode="lines",
            name=label,
            line={"color": colour, "width": 1.8, "dash": dash},
            legendgroup=group,
            **kw,
        )
    )


def lines(
    traces: Sequence[tuple[str, Trace]],
    title: str,
    y_title: str,
    *,
    dashes: Mapping[str, str] | None = None,
    zero_line: bool = False,
) -> go.Figure:
    """Several labelled traces on one axis; ``zero_line`` marks y = 0 for signed quantities."""
    fig = go.Figure()
    for i, (label, tr) in enumerate(traces):
        add_trace(fig, tr, label, PALETTE[i % len(PALETTE)], dash=(dashes or {}).get(label))
    if zero_line:
        fig.add_hline(y=0.0, line={"color": "#999", "width": 1})
    return _layout(fig, title, y_title)


def entropy_forecast(
    entropy: Trace,
    *,
    floor: float | None = None,
    h_ref: float | None = None,
    forecast: Mapping[str, Any] | None = None,
) -> go.Figure:
    """Entropy mean with the detector's current forecast.

    ``forecast`` (see ``app/insight.py``): ``steps``, ``curve``, ``lo``, ``hi`` (the fitted decay and its 80% band,
    nats), ``eta_step`` / ``eta_lo_step`` / ``eta_hi_step`` (absolute steps where the fit meets the floor; None or inf
    when it never does), ``model``.
    """
    fig = go.Figure()
    add_trace(fig, entropy, "entropy mean", PALETTE[0])
    if forecast is not None and len(forecast.get("steps", ())):
        x = np.asarray(forecast["steps"], dtype=np.float64)
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([x, x[::-1]]),
                y=np.concatenate([forecast["hi"], np.asarray(forecast["lo"])[::-1]]),
                fill="toself",
                fillcolor="rgba(255,127,14,0.18)",
                line={"width": 0},
                name="forecast 80% band",
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=forecast["curve"],
                mode="lines",
                name=f"forecast ({forecast.get('model', 'fit')})",
                line={"color": "#ff7f0e", "dash": "dash", "width": 2},
            )
        )
        eta = forecast.get("eta_step")
        now = forecast.get("evaluated_at", -np.inf)
        if eta is not None and np.isfinite(eta) and eta > now:  # already at the floor: nothing ahead to mark
            lo, hi = forecast.get("eta_lo_step"), forecast.get("eta_hi_step")
            if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi) and hi > lo:
                fig.add_vrect(x0=lo, x1=hi, fillcolor="rgba(214,39,40,0.08)", line_width=0)
            fig.add_vline(
                x=eta,
                line={"color": "#d62728", "dash": "dot"},
                annotation_text=f"ETA to floor: step {eta:,.0f}",
                annotation_position="top left",
            )
    if floor is not None and np.isfinite(floor):
        fig.add_hline(y=floor, line={"color": "#d62728", "dash": "dash"}, annotation_text=f"floor {floor:.3g} nats")
    if h_ref is not None and np.isfinite(h_ref):
        fig.add_hline(
            y=h_ref,
            line={"color": "#7f7f7f", "dash": "dot"},
            annotation_text=f"H0 {h_ref:.3g} nats",
            annotation_position="top left",
        )
    return _layout(fig, "Token entropy (mean) and forecast", NATS_AXIS, height=380)


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
    ticks = [v for v in range(int(np.ceil(zmax)) + 1)]
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
    fig.update_yaxes(type="log")
    width = f" (columns of {hm.width} steps)" if hm.width > 1 else ""
    fig = _layout(fig, f"Token-entropy histogram over steps{width}", "token entropy (nats, log scale)", height=380)
    fig.update_layout(hovermode="closest")
    return fig


def quantile_fan(quantiles: Mapping[str, Trace]) -> go.Figure:
    """Entropy quantiles p10…p99 as a fan: p10–p90 shaded, p50 solid, p99 dashed (keys: metric names)."""
    from entropy_watch import metrics as M

    fig = go.Figure()
    p10, p50, p90, p99 = (quantiles.get(n) for n in (M.ENTROPY_P10, M.ENTROPY_P50, M.ENTROPY_P90, M.ENTROPY_P99))
    if p10 is not None and p90 is not None and len(p10) == len(p90):
        fig.add_trace(go.Scatter(x=p10.steps, y=p10.mean, mode="lines", line={"width": 0.8, "color": "#1f77b4"},
                                 name="p10"))  # fmt: skip
        fig.add_trace(go.Scatter(x=p90.steps, y=p90.mean, mode="lines", line={"width": 0.8, "color": "#1f77b4"},
                                 fill="tonexty", fillcolor="rgba(31,119,180,0.2)", name="p90"))  # fmt: skip
    else:
        for label, tr in (("p10", p10), ("p90", p90)):
            if tr is not None:
                fig.add_trace(go.Scatter(x=tr.steps, y=tr.mean, mode="lines", name=label))
    if p50 is not None:
        fig.add_trace(go.Scatter(x=p50.steps, y=p50.mean, mode="lines", name="p50 (median)",
                                 line={"color": "#1f77b4", "width": 2.2}))  # fmt: skip
    if p99 is not None:
        fig.add_trace(go.Scatter(x=p99.steps, y=p99.mean, mode="lines", name="p99",
                                 line={"color": "#d62728", "dash": "dash"}))  # fmt: skip
    return _layout(fig, "Token-entropy quantiles (fan)", NATS_AXIS)


def clip_chart(low: Trace | None, high: Trace | None, region: Trace | None = None) -> go.Figure:
    """Binding clip fractions: clip-low (A<0, ρ<1−ε_low) raises entropy, clip-high (A>0, ρ>1+ε_high) lowers it."""
    items = [(lbl, t) for lbl, t in (("clip-low (raises H)", low), ("clip-high (lowers H)", high)) if t is not None]
    if region is not None:
        items.append(("clip region (low+high)", region))
    fig = lines(items, "Clipped tokens: low vs high", "fraction of tokens", dashes={"clip region (low+high)": "dot"})
    fig.update_yaxes(rangemode="tozero")
    return fig


def delta_h_chart(predicted: Trace | None, observed: Trace | None) -> go.Figure:
    """Predicted (covariance, first order) vs observed per-step entropy change, nats."""
    items = [(lbl, t) for lbl, t in (("predicted ΔH (cov/pred_dH)", predicted), ("observed ΔH", observed)) if t]
    return lines(items, "Entropy change per step: predicted vs observed", "ΔH (nats/token per step)", zero_line=True)


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
        applicable = "" if law.get("applicable", True) else " — poor fit"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=b - a * np.exp(xs),
                mode="lines",
                name=f"R = −{a:.3g}·exp(H) + {b:.3g}  (R² {law.get('r2', float('nan')):.2f}){applicable}",
                line={"color": "#d62728", "dash": "dash"},
            )
        )
        ceiling = law.get("ceiling", b - a)
        fig.add_hline(
            y=ceiling,
            line={"color": "#7f7f7f", "dash": "dot"},
            annotation_text=f"ceiling at H=0: {ceiling:.3g}; headroom {law.get('headroom', float('nan')):.3g}",
            annotation_position="bottom right",
        )
    fig = _layout(fig, f"{reward_name} vs entropy", reward_name, x_title=NATS_AXIS)
    fig.update_layout(hovermode="closest")
    return fig


def alert_timeline(alerts: Sequence[Mapping[str, Any]], x_range: tuple[float, float] | None = None) -> go.Figure:
    """Alerts as markers on the step axis, one row per detector, coloured by severity."""
    fig = go.Figure()
    for severity, colour in SEVERITY_COLOURS.items():
        rows = [a for a in alerts if a["severity"] == severity]
        if not rows:
            continue
        fig.add_trace(
            go.Scatter(
                x=[a["step"] for a in rows],
                y=[a["detector"] for a in rows],
                mode="markers",
                marker={"color": colour, "size": 13, "symbol": "diamond"},
                name=severity,
                text=[a["message"] for a in rows],
                hovertemplate="step %{x}<br>%{text}<extra></extra>",
            )
        )
    fig = _layout(fig, "Alert timeline", "detector", height=max(220, 110 + 40 * len({a["detector"] for a in alerts})))
    if x_range is not None:
        fig.update_xaxes(range=list(x_range))
    fig.update_layout(hovermode="closest")
    return fig


def overlay(per_run: Mapping[str, Trace], title: str, y_title: str) -> go.Figure:
    """The same metric of several runs on shared axes, aligned by step (the compare view)."""
    return lines(list(per_run.items()), title, y_title)
