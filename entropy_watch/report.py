"""The post-hoc HTML report: one self-contained file (plotly.js inlined once) for a run and its verdict.

It renders the run's :class:`~entropy_watch.analysis.Verdict` and nothing else from the analysis (no forecast of
its own): the headline and H_ref with how it was taken; entropy with the detector's level, H_ref and the floor, the
verdict's forecast curve with its band and ETA interval (in the alert's direction: decay for a collapse, rise for an
explosion, none otherwise), and the alerts as markers; reward; the token-entropy heatmap over steps when the run has
a ``hist`` table; the alerts table (most severe first) with evidence and suggested actions; the run's known change
points (a resume, an LR or config change) as dotted lines and under the verdict, in the words ``show`` and the app
use. It says when it was written, in UTC, and the step its verdict is at (a shared report is read days later,
elsewhere); a line of more than :data:`MAX_LINE_POINTS` points is drawn thinned (:func:`thinned`: each bucket's lowest
and highest point), and the page says so. plotly is the ``app`` extra: imported inside :func:`build_report`.

The report's head carries :data:`GENERATOR` (``<meta name="generator" content="entropy-watch">``): a file at the
output path is replaced only when it is such a report (or one written before the marker, recognised by its title),
never a user's other file.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from entropy_watch.analysis import changes
from entropy_watch.analysis.series import reward_name
from entropy_watch.axes import log_ticks_over
from entropy_watch.errors import EntropyWatchError, MissingExtra
from entropy_watch.overwrite import check_replaceable
from entropy_watch.store.atomic import publishing
from entropy_watch.store.fs import describe_error

if TYPE_CHECKING:
    from entropy_watch.analysis import AnalysisResult, RunSeries, Verdict

SEVERITY_COLOR = {"info": "#1f77b4", "warning": "#ff7f0e", "critical": "#d62728"}
MAX_HEATMAP_COLUMNS = 600  # steps shown in the heatmap (evenly thinned beyond that)
MAX_LINE_POINTS = 4000  # points a line draws: beyond that, the lowest and highest of each bucket (:func:`thinned`)
GENERATOR = '<meta name="generator" content="entropy-watch">'
LEGACY_TITLE = "<title>entropy_watch report: "  # reports written before GENERATOR: their head starts this way
_HEAD_BYTES = 8192  # where both markers are in a report (a run name is at most 200 bytes, escaped at most ×6)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:28px} table{border-collapse:collapse;width:100%;font-size:.9em}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top} .sev{font-weight:600}
details{font-size:.85em} pre{white-space:pre-wrap;background:#f6f6f6;padding:6px} .muted{color:#777}
.headline{font-size:1.15em;font-weight:600}
"""


def _entropy_figure(go: Any, series: RunSeries, result: AnalysisResult) -> Any:
    fig = go.Figure()
    steps, h = series.steps, series.entropy
    v = result.verdict
    keep = thinned(h)
    fig.add_scatter(x=steps[keep], y=h[keep], mode="lines", name="entropy (nats)", line={"width": 1, "color": "#888"})
    prep = result.prep
    if prep is not None and len(prep):
        keep = thinned(prep.smooth)
        fig.add_scatter(x=steps[keep], y=prep.smooth[keep], mode="lines", name="level (detector)",
                        line={"color": "#333"})  # fmt: skip
    if v is not None and v.reference.value is not None:
        _level_line(fig, v.reference.value, "H_ref", "#2ca02c", "bottom")
    if v is not None and v.floor is not None:
        _level_line(fig, v.floor, "floor", "#d62728", "top")
    line = v.unsettled_line if v is not None else None
    if line is not None and math.isfinite(line):
        # the warning line an unsettled explosion's points are still past: the headline quotes it, so it is drawn
        _level_line(fig, line, f"explosion warning line {line:.3g} nats: points still past it", "#9467bd", "bottom",
                    dash="dashdot")  # fmt: skip
    f = v.forecast if v is not None else None
    if f is not None and f.direction == "rise" and f.target is not None and math.isfinite(f.target):
        _level_line(fig, f.target, f.target_label, "#9467bd", "bottom", dash="dash")  # the ETA's target (6× H_ref)
    if f is not None:
        pct = f"{100 * f.interval:.0f}%"
        fig.add_scatter(x=f.steps + f.steps[::-1], y=f.hi + f.lo[::-1], fill="toself", line={"width": 0},
                        fillcolor="rgba(148,103,189,0.15)", name=f"forecast {pct} band", hoverinfo="skip")  # fmt: skip
        fig.add_scatter(x=f.steps, y=f.curve, mode="lines", name=f"forecast ({f.direction}, {f.model})",
                        line={"color": "#9467bd"})  # fmt: skip
        if f.eta_step is not None and not f.reached:
            # the chart ends where the drawn forecast does: a late end far past it (a slow decline's can lie at step
            # 10^8) would stretch the axis over it, shapes being part of the autorange
            span = step_range(series, result)
            right = span[1] if span is not None else 0.0
            if f.eta_lo_step is not None and f.eta_lo_step < right:
                x1 = right if f.eta_hi_step is None else min(f.eta_hi_step, right)
                fig.add_vrect(x0=f.eta_lo_step, x1=x1, fillcolor="#9467bd", opacity=0.12, line_width=0,
                              annotation_text=f"ETA {pct} interval", annotation_position="top left")  # fmt: skip
            if f.eta_step <= right:
                fig.add_vline(x=f.eta_step, line_dash="dash", line_color="#9467bd")
    alerts = list(v.alerts) if v is not None else []
    for sev, color in SEVERITY_COLOR.items():
        pts = [a for a in alerts if a.severity == sev]
        if pts:
            ys = [float(np.interp(a.step, steps, np.nan_to_num(h, nan=0.0))) for a in pts]
            fig.add_scatter(x=[a.step for a in pts], y=ys, mode="markers", name=f"{sev} alerts",
                            marker={"color": color, "size": 10, "symbol": "x"},
                            text=[a.message for a in pts], hoverinfo="text+x")  # fmt: skip
    _mark_changes(fig, series.changes)
    # the legend under the chart, so its plot is as wide as the reward chart's and the heatmap's below it
    fig.update_layout(title="Token entropy", xaxis_title="step", yaxis_title="nats", yaxis_type="log", height=470,
                      legend={"orientation": "h", "yanchor": "top", "y": -0.22})  # fmt: skip
    levels = [] if v is None else [v.reference.value, v.floor, line, f.target if f is not None else None]
    _plain_log_ticks(fig, [x for x in levels if x is not None])
    return fig


def _plain_log_ticks(fig: Any, levels: list[float]) -> None:
    """The log entropy axis ticked in plain numbers over what it draws (its lines and the ``levels`` across it):
    Plotly's own labels the 2x and 5x ticks with a bare digit, so a "2" beside the floor line read 2 nats, not 0.02."""
    vals, text = log_ticks_over([*(t.y for t in fig.data if t.y is not None and t.yaxis in (None, "y")), levels])
    if vals:
        fig.update_yaxes(tickvals=vals, ticktext=text)


def _level_line(fig: Any, nats: float, label: str, colour: str, side: str, dash: str = "dot") -> None:
    """A dotted level across the log-scaled entropy chart, labelled on it. Not ``add_hline(annotation_text=...)``:
    Plotly places that label at ``y`` in the axis's own units, log10 on a log axis, so "H_ref" at 1.15 nats stood
    at 14 nats, and the axis stretched to it squashed the run into a thin band."""
    if not nats > 0:
        return
    fig.add_hline(y=nats, line_dash=dash, line_color=colour)
    fig.add_annotation(x=0, xref="x domain", y=math.log10(nats), yref="y", text=label, showarrow=False,
                       xanchor="left", yanchor=side, font={"color": colour})  # fmt: skip


def step_range(series: RunSeries, result: AnalysisResult) -> tuple[float, float] | None:
    """The step axis every chart of the report shares: the run's steps and the drawn forecast past them."""
    steps = series.steps
    if not len(steps):
        return None
    f = result.verdict.forecast if result.verdict is not None else None
    right = max(float(steps[-1]), f.steps[-1] if f is not None and f.steps else 0.0)
    return float(steps[0]), right


def _mark_changes(fig: Any, points: list[dict[str, Any]]) -> None:
    """A dotted vertical line per change point, one trace per kind on a hidden 0-1 axis (however many there are),
    the hover saying what the analysis does there."""
    for kind in dict.fromkeys(c["kind"] for c in points):
        at = [c["step"] for c in points if c["kind"] == kind]
        xs = [x for s in at for x in (s, s, None)]
        fig.add_scatter(x=xs, y=[y for _ in at for y in (0, 1, None)], yaxis="y2", mode="lines",
                        line={"dash": "dot", "width": 1, "color": "#17becf" if kind == "resume" else "#8c564b"},
                        name=changes.change_label(kind), hovertext=changes.change_meaning(kind),
                        hoverinfo="text+x")  # fmt: skip
    if points:
        fig.update_layout(yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True})


def _reward_figure(go: Any, series: RunSeries) -> Any | None:
    """The reward the analysis read (:func:`~entropy_watch.analysis.series.reward_name`), as logged."""
    name = reward_name(series.scalars)
    if name is None:
        return None
    s, v = series.scalars[name]
    keep = thinned(v)
    fig = go.Figure()
    fig.add_scatter(x=s[keep], y=v[keep], mode="lines+markers" if s.size < 300 else "lines", name=name)
    fig.update_layout(title=f"Reward ({name})", xaxis_title="step", height=300)
    return fig


def thinned(values: np.ndarray, limit: int = MAX_LINE_POINTS) -> np.ndarray:
    """The indices of the points a line draws, in step order: every point up to ``limit``; beyond it, the first and
    the last and, in each of ``limit // 2`` buckets of consecutive points, the lowest and the highest finite one (and
    the first gap, NaN), so that a one-point spike or dip of a 100k-step run stays on the chart, as the app's min/max
    bands keep it, while the file carries 4,000 points a line, not 100,000 (a 100k-step run's report: 11 MB, 5.6 MB
    with plotly.js's 4.8 MB)."""
    n = len(values)
    if n <= limit:
        return np.arange(n)
    y = np.asarray(values, dtype=float)
    finite = np.isfinite(y)
    keep = [0, n - 1]
    edges = np.linspace(0, n, limit // 2 + 1).astype(int)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        ok = finite[a:b]
        if not ok.all():
            keep.append(a + int(np.argmin(ok)))  # a gap in the line stays a gap
        if ok.any():
            seg = np.where(ok, y[a:b], np.nan)
            keep += [a + int(np.nanargmin(seg)), a + int(np.nanargmax(seg))]
    return np.unique(np.asarray(keep, dtype=np.int64))


def _thinning_note(series: RunSeries) -> str:
    """What the charts leave out of a long run, said under its header (the verdict and the alerts read every point)."""
    name = reward_name(series.scalars)
    n = max(len(series.steps), len(series.scalars[name][1]) if name is not None else 0)
    if n <= MAX_LINE_POINTS:
        return ""
    return (
        f"<p class='muted'>{n:,} logged points: each line is drawn with the lowest and the highest point of each of "
        f"{MAX_LINE_POINTS // 2:,} buckets of steps; the verdict and the alerts read every point.</p>"
    )


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
    bar = {"title": "share", "orientation": "h", "y": -0.45, "thickness": 12}  # under it: the plot as wide as above
    fig = go.Figure(go.Heatmap(x=hs, y=labels[: share.shape[1]], z=share.T, colorscale="Viridis", colorbar=bar))
    fig.update_layout(title="Token-entropy distribution over steps (bin upper edge, nats)", xaxis_title="step",
                      height=460)  # fmt: skip
    return fig


def _alerts_table(v: Verdict) -> str:
    if not v.alerts:
        return "<p>No alerts.</p>"
    rows = []
    for a in v.alerts:
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


def _verdict_block(v: Verdict) -> str:
    """The headline, H_ref and how it was taken, the floor and ln V when known."""
    color = SEVERITY_COLOR.get(v.health, "#2ca02c" if v.health == "ok" else "#777")
    parts = [f"<p class='headline' style='color:{color}'>{html.escape(v.headline)}</p>"]
    ref = v.reference
    if ref.value is not None:
        parts.append(
            f"<p class='muted'>H_ref {ref.value:.4g} nats: {html.escape(ref.method)} "
            f"(steps {ref.first_step}–{ref.last_step}).{' ' + html.escape(ref.note) if ref.note else ''}</p>"
        )
    facts = []
    if v.floor is not None:
        facts.append(f"floor {v.floor:.4g} nats")
    if v.ln_v is not None:  # two decimals, as `show` prints it (the report read "ln V 11.9" beside its "11.93")
        facts.append(f"ln V {v.ln_v:.2f} nats")
    if facts:
        parts.append(f"<p class='muted'>{' · '.join(facts)}</p>")
    return "".join(parts)


def utc_text(t: float) -> str:
    """A time as the report writes it, in UTC and saying so: read days later on another machine, in another zone."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _dates(v: Verdict, times: RunTimes) -> str:
    """When the report was written, in UTC, and the step its verdict is at: what "now" in the verdict means to a
    reader of a shared report days later, the run perhaps still going on since; then when the run started and was
    last written (ISO 8601, UTC), where its metadata says: how old the data is, not only the page."""
    at = "" if v.step is None else f", of the data to step {v.step:,}"
    parts = [f"report written {utc_text(time.time())}{at}"]
    started, last, imported = times
    if started is not None:
        parts.append(f"{'imported into the store' if imported else 'run started'} {iso_utc(started)}")
    if last is not None:
        parts.append(f"{'log' if imported is None else 'run'} last written {iso_utc(last)}")
    return html.escape(" · ".join(parts))


RunTimes = tuple[float | None, float | None, bool | None]
"""``(started, last written, imported)``: Unix seconds (None: unknown); ``imported`` True for a run imported from a
log (its start is the import's), False for one a training wrote, None for a log file read directly."""


def iso_utc(t: float) -> str:
    """``t`` (Unix seconds) as ISO 8601 in UTC, to the second: ``2026-05-01T12:00:00Z``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(value: Any) -> float | None:
    """A time from run metadata (any writer's JSON): a finite number of Unix seconds a date can hold, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:  # an int past a float (JSON's 1e400 as digits) overflows float() and math.isfinite alike
        t = float(value)
        if not math.isfinite(t):
            return None
        iso_utc(t)
    except (OverflowError, OSError, ValueError):
        return None
    return t


def run_times(series: RunSeries, source: str) -> RunTimes:
    """When the run started and was last written: from the series' ``meta`` when it carries the run's ``created_at`` /
    ``updated_at`` (a _run.json passed in), else from where it was read, ``source``: a store's run folder
    (``.../run=NAME``: its _run.json's ``created_at`` and its latest heartbeat or _run.json write) or a log file (its
    modification time). Unknown parts are None; the metadata is never a reason for the report to fail."""
    meta = series.meta or {}
    started, last = _stamp(meta.get("created_at")), _stamp(meta.get("updated_at"))
    if started is not None or last is not None:
        return started, last, bool(meta.get("imported"))
    root, _, folder = source.rstrip("/").rpartition("/")
    try:
        if folder.startswith("run=") and root:
            from entropy_watch.store import Store

            info = Store(root).run_info(folder[len("run=") :])
            return _stamp(info.meta.get("created_at")), _stamp(info.updated_at), bool(info.meta.get("imported"))
        if source and Path(source).is_file():
            return None, _stamp(Path(source).stat().st_mtime), None
    except (EntropyWatchError, OSError, ValueError):
        pass
    return None, None, None


def build_report(
    series: RunSeries, result: AnalysisResult, path: str | Path, *, source: str = "", times: RunTimes | None = None
) -> Path:
    """Write the report for ``series`` and its ``result`` to ``path`` (one HTML file); returns the path. ``source``
    is where the run was read (shown; the run's times are read from it), ``times`` overrides :func:`run_times`.

    Raises :class:`EntropyWatchError` when ``path`` is a folder or a file that is not an entropy-watch report."""
    if getattr(result, "verdict", None) is None:  # before any figure reads it
        raise TypeError(
            "build_report needs analyze(series)'s result (an AnalysisResult with its verdict), "
            f"got {type(result).__name__}"
        )
    out = Path(path)
    check_report_dest(out)
    try:
        import plotly.graph_objects as go
        import plotly.io as pio
    except ImportError:
        raise MissingExtra("plotly is not installed; install it with: pip install 'entropy-watch[app]'") from None
    figs = [_entropy_figure(go, series, result), _reward_figure(go, series), _heatmap_figure(go, series)]
    span = step_range(series, result)
    for fig in figs:  # one step axis for the three: the forecast stretches the entropy chart's past the run
        if fig is not None and span is not None:
            fig.update_xaxes(range=list(span))
    parts = []
    first = True
    for fig in figs:
        if fig is None:
            continue
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=True if first else False))
        first = False
    v = result.verdict
    notes = "".join(f"<p class='muted'>note: {html.escape(n)}</p>" for n in v.notes)
    notes += "".join(f"<p class='muted'>change point {html.escape(x)}</p>" for x in changes.describe(series.changes))
    title = f"entropy_watch report: {html.escape(series.name)}"
    body = (
        f"<h1>{title}</h1><p class='muted'>{html.escape(source)} · {len(series):,} logged steps · "
        f"{len(v.alerts)} alert{'' if len(v.alerts) == 1 else 's'} · health: {v.health}</p>"
        f"<p class='muted'>{_dates(v, run_times(series, source) if times is None else times)}</p>"
        f"{_verdict_block(v)}{notes}{_thinning_note(series)}"
        f"<h2>Entropy</h2>{parts[0] if parts else ''}{''.join(parts[1:])}<h2>Alerts</h2>{_alerts_table(v)}"
    )
    doc = f"<!DOCTYPE html><html><head><meta charset='utf-8'>{GENERATOR}<title>{title}</title><style>{_CSS}</style>"
    doc += f"</head><body>{body}</body></html>"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # through a temporary beside it, then renamed: a full disk or a kill mid-write leaves the earlier report whole
        with publishing(out, out.with_name(f".{out.name}.{os.getpid()}.tmp")) as fh:
            fh.write(doc.encode("utf-8"))
    except OSError as exc:
        where = exc.filename or out
        raise ReportNotWritten(
            exc.errno,
            f"cannot write the report {where} ({describe_error(exc)}); an earlier report there, if any, is kept "
            "whole: free space or fix the permissions, or write it elsewhere with -o",
            str(where),
        ) from exc
    return out


class ReportNotWritten(EntropyWatchError, OSError):
    """The report file could not be written (full or read-only disk, no permission); ``errno`` is the OS error's.
    Its message names the file, the reason and what to do, in one line."""

    def __str__(self) -> str:
        return str(self.strerror)


def check_report_dest(path: Path) -> None:
    """Raise :class:`EntropyWatchError` unless ``path`` is free or an entropy-watch report (its head carries
    :data:`GENERATOR` or :data:`LEGACY_TITLE`): a report never replaces a user's other file or a folder."""

    def ours(head: bytes) -> bool:
        text = head.decode("utf-8", "replace")
        return GENERATOR in text or LEGACY_TITLE in text

    check_replaceable(path, "an entropy-watch report", ours, _HEAD_BYTES)
