"""The post-hoc HTML report: one self-contained file (plotly.js inlined once) for a run and its analysis.

Sections: entropy with the floor, the latest forecast curve, its ETA and 90% interval band, and the alerts as
markers; reward; the token-entropy heatmap over steps when the run has a ``hist`` table; the alerts table with
evidence and suggested actions. plotly is the ``app`` extra: imported inside :func:`build_report`.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entropy_watch.errors import MissingExtra

if TYPE_CHECKING:
    from entropy_watch.analysis import AnalysisResult, RunSeries

SEVERITY_COLOR = {"info": "#1f77b4", "warning": "#ff7f0e", "critical": "#d62728"}
MAX_HEATMAP_COLUMNS = 600  # steps shown in the heatmap (evenly thinned beyond that)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:28px} table{border-collapse:collapse;width:100%;font-size:.9em}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top} .sev{font-weight:600}
details{font-size:.85em} pre{white-space:pre-wrap;background:#f6f6f6;padding:6px} .muted{color:#777}
"""


def _entropy_figure(go: Any, series: RunSeries, result: AnalysisResult) -> Any:
    fig = go.Figure()
    steps, h = series.steps, series.entropy
    fig.add_scatter(x=steps, y=h, mode="lines", name="entropy (nats)", line={"width": 1, "color": "#888"})
    prep = result.prep
    if prep is not None and len(prep):
        fig.add_scatter(x=steps, y=prep.smooth, mode="lines", name="smoothed", line={"color": "#333"})
        if np.isfinite(prep.floor).any():
            fig.add_scatter(x=steps, y=prep.floor, mode="lines", name="floor", line={"dash": "dot", "color": "#d62728"})
    f = _latest_fit(series, result)
    if f is not None:
        end = f.step + (f.eta_hi if math.isfinite(f.eta_hi) else f.horizon_steps)
        end = min(end, f.step + 3 * max(f.horizon_steps, 1.0))
        xs = np.linspace(f.window_start_step, end, 200)
        fig.add_scatter(x=xs, y=f.curve(xs), mode="lines", name=f"forecast ({f.model})", line={"color": "#9467bd"})
        if math.isfinite(f.eta_median):
            lo = f.step + f.eta_lo
            hi = f.step + (f.eta_hi if math.isfinite(f.eta_hi) else end - f.step)
            fig.add_vrect(x0=lo, x1=hi, fillcolor="#9467bd", opacity=0.15, line_width=0,
                          annotation_text="ETA 90% interval", annotation_position="top left")  # fmt: skip
            fig.add_vline(x=f.step + f.eta_median, line_dash="dash", line_color="#9467bd")
    for sev, color in SEVERITY_COLOR.items():
        pts = [a for a in result.alerts if a.severity == sev]
        if pts:
            ys = [float(np.interp(a.step, steps, np.nan_to_num(h, nan=0.0))) for a in pts]
            fig.add_scatter(x=[a.step for a in pts], y=ys, mode="markers", name=f"{sev} alerts",
                            marker={"color": color, "size": 10, "symbol": "x"},
                            text=[a.message for a in pts], hoverinfo="text+x")  # fmt: skip
    fig.update_layout(title="Token entropy", xaxis_title="step", yaxis_title="nats", yaxis_type="log", height=420)
    return fig


def _latest_fit(series: RunSeries, result: AnalysisResult) -> Any:
    """The forecast at the last evaluation, fitted even when its gates failed (so the plot shows a trajectory)."""
    from entropy_watch.analysis import DetectorConfig
    from entropy_watch.analysis.forecast import evaluate

    prep = result.prep
    if prep is None or len(prep) < 20:
        return None
    for i in range(len(prep) - 1, max(len(prep) - 30, 0), -1):
        if prep.armed[i]:
            f = evaluate(prep, i, DetectorConfig(), always_fit=True)
            if f is not None:
                return f
    return None


def _reward_figure(go: Any, series: RunSeries) -> Any | None:
    from entropy_watch import metrics as M

    name = next((n for n in (M.pass_at_k(1), M.REWARD_MEAN) if n in series.scalars), None)
    if name is None:
        return None
    s, v = series.scalars[name]
    fig = go.Figure()
    fig.add_scatter(x=s, y=v, mode="lines+markers" if s.size < 300 else "lines", name=name)
    fig.update_layout(title=f"Reward ({name})", xaxis_title="step", height=300)
    return fig


def _heatmap_figure(go: Any, series: RunSeries) -> Any | None:
    if series.hist is None or series.hist_edges is None:
        return None
    hs, hc = series.hist
    if hs.size == 0:
        return None
    keep = np.unique(np.linspace(0, hs.size - 1, min(hs.size, MAX_HEATMAP_COLUMNS)).astype(int))
    hs, hc = hs[keep], hc[keep]
    share = hc / np.maximum(hc.sum(axis=1, keepdims=True), 1)
    edges = series.hist_edges
    labels = ["0"] + [f"{edges[b]:.2g}" for b in range(1, len(edges))]  # bin b: [edges[b-1], edges[b])
    fig = go.Figure(go.Heatmap(x=hs, y=labels[: share.shape[1]], z=share.T, colorscale="Viridis",
                               colorbar={"title": "share"}))  # fmt: skip
    fig.update_layout(title="Token-entropy distribution over steps (bin upper edge, nats)", xaxis_title="step",
                      height=420)  # fmt: skip
    return fig


def _alerts_table(result: AnalysisResult) -> str:
    if not result.alerts:
        return "<p>No alerts.</p>"
    rows = []
    for a in result.alerts:
        color = SEVERITY_COLOR[a.severity]
        actions = "".join(f"<li>{html.escape(x)}</li>" for x in a.actions)
        ev = html.escape(json.dumps(a.evidence, indent=1, default=str))
        rows.append(
            f"<tr><td>{a.step}</td><td class='sev' style='color:{color}'>{a.severity}</td><td>{a.kind}</td>"
            f"<td>{html.escape(a.detector)}</td><td>{html.escape(a.message)}"
            f"<details><summary>evidence and actions</summary><ul>{actions}</ul><pre>{ev}</pre></details></td></tr>"
        )
    head = "<tr><th>step</th><th>severity</th><th>kind</th><th>detector</th><th>message</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def build_report(series: RunSeries, result: AnalysisResult, path: str | Path, *, source: str = "") -> Path:
    """Write the report for ``series`` and its ``result`` to ``path`` (one HTML file); returns the path."""
    try:
        import plotly.graph_objects as go
        import plotly.io as pio
    except ImportError:
        raise MissingExtra("plotly is not installed; install it with: pip install 'entropy-watch[app]'") from None
    figs = [_entropy_figure(go, series, result), _reward_figure(go, series), _heatmap_figure(go, series)]
    parts = []
    first = True
    for fig in figs:
        if fig is None:
            continue
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=True if first else False))
        first = False
    notes = "".join(f"<p class='muted'>note: {html.escape(n)}</p>" for n in result.notes)
    worst = result.worst or "none"
    title = f"entropy_watch report: {html.escape(series.name)}"
    body = (
        f"<h1>{title}</h1><p class='muted'>{html.escape(source)} · {len(series)} logged steps · "
        f"{len(result.alerts)} alerts · worst severity: {worst}</p>{notes}"
        f"<h2>Entropy</h2>{parts[0] if parts else ''}{''.join(parts[1:])}<h2>Alerts</h2>{_alerts_table(result)}"
    )
    doc = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{_CSS}</style></head>"
    doc += f"<body>{body}</body></html>"
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc, encoding="utf-8")
    return out
