"""Sections of the Run page (``app/views/run.py``): the verdict header, entropy with the verdict's forecast and
the alerts in order of importance (the on-demand token explorer is ``app/token_explorer.py``).

Everything about the run's state — health, H_ref, the forecast, its ETA, the ordered alerts — comes from the one
verdict of ``entropy_watch.analysis`` (computed by the background monitor); nothing here computes a forecast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import streamlit as st

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert, DetectorConfig, Verdict
from entropy_watch.analysis.changes import RESET_EVENT_KINDS, change_label
from entropy_watch.analysis.outlook import Outlook, by_step_text, floor_label
from entropy_watch.app import charts, forecast_chart
from entropy_watch.app.display import fmt_nats, fmt_ratio, md
from entropy_watch.monitor import RunState
from entropy_watch.store import RunInfo
from entropy_watch.store.reads import Trace

HEALTH_ICONS = {"ok": "🟢", "info": "🔵", "warning": "🟠", "critical": "🔴", "too-short": "⚪"}
SEVERITY_ICONS = {"info": "🔵", "warning": "🟠", "critical": "🔴"}
ENTROPY_NAMES = (M.ENTROPY_MEAN, M.ENTROPY_SAMPLED_NLL)
MAX_ALERT_BOXES = 10
"""Warnings and critical alerts shown one box each (most severe first); further ones are listed in one table."""
MAX_STORED_ROWS = 200
"""Stored alerts outside the current verdict listed at most (the newest), with a line saying how many more."""
LEVEL_HELP = (
    "the entropy level the verdict quotes: the detector's level (a rolling median), not the last logged point; for "
    "an explosion the median of the last two points when higher, unless it is settling (its median back down while "
    "points still spike)"
)
"""What "entropy level" means wherever the app shows the verdict's level (the Run page's card, the Runs table, the
Compare page's caption), beside the last logged value where that is shown too."""


BOXES_KEY = "ew_header_boxes"
BOXES_WRAP = (
    f"<style>.st-key-{BOXES_KEY} [data-testid='stMetricValue'] {{font-size: 1.75rem; line-height: 1.25}}"
    f".st-key-{BOXES_KEY} [data-testid='stMetricValue'] * {{white-space: normal; overflow-wrap: anywhere; "
    "text-overflow: clip}</style>"
)
"""The header's boxes wrap a long value onto a second line (in a slightly smaller type) instead of Streamlit's one
line cut with an ellipsis: at 1280 px a box is ~150 px wide, and the ETA "beyond step 12,000" read "beyond…", hiding
the step the headline names."""


def entropy_name(names: list[str] | dict[str, Any]) -> str | None:
    """The entropy series the run logged (full-vocabulary mean preferred over the sampled-token estimate)."""
    return next((n for n in ENTROPY_NAMES if n in names), None)


def imported(info: RunInfo | None, meta: dict[str, Any]) -> bool:
    """Whether the run came from ``entropy-watch import`` (logs of another tool), not from a live recorder."""
    return bool(meta.get("source_format") or meta.get("importer_version")) or (
        info is not None and info.state == "imported"
    )


def change_marks(points: list[dict[str, Any]], window: tuple[int, int]) -> charts.ChangeMarks:
    """The run's known change points (rows of :func:`entropy_watch.app.data.change_points`) inside the step
    ``window``, for the step charts."""
    inside = [p for p in points if window[0] <= p["step"] <= window[1]]
    return charts.ChangeMarks(
        steps=np.asarray([p["step"] for p in inside], dtype=np.int64),
        kinds=tuple(p["kind"] for p in inside),
        payloads=tuple(p["payload"] for p in inside),
    )


def change_caption(marks: charts.ChangeMarks) -> str:
    """One line under the entropy chart: which change points the dotted lines mark (a kind's steps, or its count and
    step range when there are many) and what the analysis does at them; markdown, its data made literal."""
    return changes_caption({"": marks})


def changes_caption(per_run: Mapping[str, charts.ChangeMarks]) -> str:
    """:func:`change_caption` of one run (key ""), or of several on one chart (the compare view: each run's, named)."""
    parts, restart = [], []
    for run, marks in per_run.items():
        mine = []
        for kind in dict.fromkeys(marks.kinds):  # in step order of their first point
            at = sorted({int(s) for s, k in zip(marks.steps, marks.kinds, strict=True) if k == kind})
            label = change_label(kind)
            if len(at) <= 3:
                mine.append(f"{label} at step{'s' if len(at) > 1 else ''} {', '.join(f'{s:,}' for s in at)}")
            else:
                mine.append(f"{label} at {len(at):,} steps from {at[0]:,} to {at[-1]:,}")
            if kind in RESET_EVENT_KINDS and label not in restart:
                restart.append(label)
        if mine:
            parts.append(f"{run}: {', '.join(mine)}" if run else "; ".join(mine))
    why = "A jump of entropy at one is explained, not alerted"
    if restart:
        why += f"; the baselines (H_ref) restart at each {' and '.join(restart)}"
    whose = "the run's" if "" in per_run else "the runs'"
    return md(f"Dotted lines: {whose} known change points in these steps — {'; '.join(parts)}. {why}.")


def unreadable_files(files: Mapping[str, str], root: str) -> None:
    """Data files found unreadable (truncated, overwritten, refused), left out of the charts and the verdict: one
    line naming them (paths relative to the store) and what to do, as ``entropy-watch alerts`` reports them."""
    if not files:
        return
    base = root.rstrip("/") + "/"
    named = [f"{md(p[len(base) :] if p.startswith(base) else p)} ({md(why)})" for p, why in sorted(files.items())]
    more = f" and {len(named) - 3} more" if len(named) > 3 else ""
    n = len(named)
    st.warning(
        f"{n} data file{'s' if n != 1 else ''} cannot be read and {'are' if n != 1 else 'is'} left out of the charts "
        f"and the verdict: {'; '.join(named[:3])}{more}. Move {'them' if n != 1 else 'it'} out of the store to "
        "inspect, or delete; the rest of the data is shown."
    )


def header(
    info: RunInfo | None,
    meta: dict[str, Any],
    version: tuple[int, int],
    state: RunState | None,
    pending: bool,
    names: list[str],
) -> None:
    """The verdict's headline in a box coloured by health, then last step, entropy, H/H0, health and ETA."""
    v = state.verdict if state is not None else None
    if entropy_name(names) is None:
        st.warning(
            "This run logged no entropy (entropy/mean or entropy/sampled_nll), so there is nothing to analyse: "
            f"it has {len(names)} other metric{'s' if len(names) != 1 else ''}. Log entropy with "
            "`entropy_watch.hooks.Watch` or map a column with `entropy-watch import --map entropy/mean=COLUMN`."
        )
    elif v is None:
        st.info("⏳ The detector is analysing this run; the verdict appears here when it is done.")
    else:
        box = {"critical": st.error, "warning": st.warning, "ok": st.success}.get(v.health, st.info)
        box(f"{HEALTH_ICONS.get(v.health, '')} {md(v.headline)}")
    st.html(BOXES_WRAP)  # a style only: no space on the page
    cols = st.container(key=BOXES_KEY).columns(5)
    cols[0].metric("last step", f"{version[1]:,}")
    level = v.level if v is not None else None
    ref = v.reference.value if v is not None else None
    cols[1].metric("entropy level (nats)", fmt_nats(level), help=LEVEL_HELP)
    ratio = level / ref if level is not None and ref else None
    cols[2].metric("H / H_ref", fmt_ratio(ratio), help="current level over the run's early level H_ref")
    health = v.health if v is not None else "n/a" if entropy_name(names) is None else "analysing…" if pending else "—"
    cols[3].metric("health", health, help="the worst alert of the verdict; 'too-short' means nothing analysed yet")
    fc = v.forecast if v is not None else None
    target = fc.target_label if fc is not None else "the floor"
    cols[4].metric("ETA", eta_box_text(fc), help=f"median forecast step at which entropy reaches {target}")
    source = meta.get("framework") or (f"imported {meta['source_format']} log" if meta.get("source_format") else None)
    details = [f"status: {info.state if info else 'unknown'}", f"framework: {source or 'unknown'}"]
    if meta.get("entropy_definition"):
        details.append(f"entropy: {meta['entropy_definition']}")
    if v is not None and v.reference.value is not None:
        details.append(f"H_ref {fmt_nats(v.reference.value)} nats ({v.reference.method})")
    st.caption(" · ".join(md(d) for d in details))
    if v is not None and v.reference.note:
        st.caption(md(v.reference.note))
    if state is not None and state.error:
        st.warning(md(state.error))
    if v is not None:  # always one line: a live tick that starts or ends catching up changes its text, not the page
        st.caption(verdict_step_text(v.step, version[1], pending))
    for note in v.notes if v is not None else ():
        st.caption(md(note))


def eta_box_text(fc: Outlook | None) -> str:
    """The header's ETA box: "—" without a forecast, "now" where the headline says it (the quoted level past the
    target), "never" off course, else the median as the headline writes it (:func:`outlook.by_step_text`: "step
    1,240", or "beyond step 12,000" where the headline says so, never "500,000,005,884" beside it)."""
    if fc is None:
        return "—"
    if fc.now:
        return "now"
    return "never" if fc.eta_step is None else by_step_text(fc.eta_step, fc.fitted_at, by="")


def verdict_step_text(verdict_step: int, newest_step: int, pending: bool) -> str:
    """The header's line saying which steps the verdict above read: up to the newest one, up to the last with entropy
    (later steps logged other metrics), or (``pending``) an earlier one while the detector catches up."""
    text = f"Verdict from the steps up to {verdict_step:,}"
    if pending:
        return f"{text}; ⏳ the detector is catching up with the newest ({newest_step:,})."
    if verdict_step >= newest_step:
        return f"{text}, the newest."
    # analysed to the newest data, its later steps hold no entropy value (the trainer's final eval at step 60 read as
    # if the verdict were behind)
    return f"{text}, the last with an entropy value (the newest, {newest_step:,}, has none)."


def entropy_section(
    tr: dict[str, Trace],
    state: RunState | None,
    window: tuple[int, int],
    smoothing: float,
    logged: bool,
    x_range: tuple[float, float] | None = None,
    changes: charts.ChangeMarks | None = None,
) -> None:
    """The entropy chart with the verdict's H_ref, floor and forecast (drawn, never computed here), and the run's
    known change points in the step window (``changes``: :func:`change_marks`)."""
    src = entropy_name(tr)
    if src is None:
        st.info(
            "No entropy (entropy/mean or entropy/sampled_nll) in the chosen step range."
            if logged
            else "This run logged no entropy, so there is no entropy chart."
        )
        return
    v = state.verdict if state is not None else None
    fc = v.forecast if v is not None else None
    if fc is not None and len(fc.steps) and (fc.steps[-1] < window[0] or fc.steps[0] > window[1]):
        fc = None  # (a level past its target has no curve: its line is still drawn)
    h_ref = v.reference.value if v is not None else None
    floor = v.floor if v is not None else None
    f_label = ""
    if floor is not None and h_ref is not None:
        cfg = DetectorConfig()
        f_label = f" = {floor_label(floor, h_ref, cfg.floor_rel, cfg.floor_abs_nats).split(' (')[0]}"
    title = "Token entropy (mean) and forecast"
    if src == M.ENTROPY_SAMPLED_NLL:
        title = "Token entropy (sampled-token NLL estimate) and forecast"
    fig = charts.entropy_forecast(
        tr[src],
        floor=floor,
        floor_label=f_label,
        h_ref=h_ref,
        h_ref_label=f", {v.reference.method}" if v is not None else "",
        forecast=fc,
        unsettled_line=v.unsettled_line if v is not None else None,
        smoothing=smoothing,
        title=title,
        x_range=x_range,
        changes=changes,
    )
    st.plotly_chart(fig, key="entropy")
    if changes is not None and len(changes):
        st.caption(change_caption(changes))
    if fc is not None:
        st.caption(md(f"Forecast at step {fc.fitted_at:,} ({fc.model} fit): {fc.text}."))
        eta, shown = forecast_chart.eta_of(fc), forecast_chart.shown_eta(fc)
        when = "" if eta is None else by_step_text(eta, fc.fitted_at, by="")
        if eta is not None and shown is None:
            st.caption(f"Its ETA, {when}, lies further ahead than the forecast is drawn: not marked above.")
        elif shown is not None and x_range is not None and not x_range[0] <= shown <= x_range[1]:
            st.caption(f"Its ETA, {when}, lies past the steps shown: widen the step range to see it drawn.")
    elif v is not None and v.health == "too-short":
        st.caption("No forecast yet: the run is too short for the detector.")


def split_alerts(state: RunState | None, stored: list[dict[str, Any]]) -> tuple[list[Alert], list[Alert]]:
    """``(current, earlier)``: the verdict's alerts (most severe first), and the stored ones (``watch --write``, the
    trainer's live analysis) the verdict does not hold, newest first. Those were raised by an earlier analysis of
    the run and are not part of its current verdict: the page lists them apart, never beside the verdict's as if
    they stood (``entropy-watch alerts RUN`` does not show them either)."""
    v = state.verdict if state is not None else None
    current = list(v.alerts) if v is not None else []
    seen = {a.key for a in current}
    earlier = []
    for row in stored:
        try:
            a = Alert.from_row(row)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            continue
        if a.key not in seen:
            seen.add(a.key)
            earlier.append(a)
    return current, sorted(earlier, key=lambda a: a.step, reverse=True)


def alerts_section(
    state: RunState | None,
    pending: bool,
    stored: list[dict[str, Any]],
    window: tuple[int, int],
    has_entropy: bool,
    steps: tuple[int, int],
    actions: list[dict[str, Any]] | None = None,
    changes: charts.ChangeMarks | None = None,
) -> None:
    """The verdict's alerts (:func:`verdict_alerts`), then, apart and labelled as such, the stored alerts of an
    earlier analysis that the current verdict does not hold (:func:`recorded_alerts`); both in the step window."""
    current, earlier = split_alerts(state, stored)
    verdict_alerts(state, current, window, has_entropy, steps, actions, changes)
    recorded_alerts([a for a in earlier if window[0] <= a.step <= window[1]])


def verdict_alerts(
    state: RunState | None,
    every: list[Alert],
    window: tuple[int, int],
    has_entropy: bool,
    steps: tuple[int, int],
    actions: list[dict[str, Any]] | None = None,
    changes: charts.ChangeMarks | None = None,
) -> None:
    """The verdict's alerts (``every``): critical and warning first, each with its evidence and actions; info notes
    folded into one count; the ``on_alert`` actions the run took (checkpoint, stop, a callable) listed and marked on
    the timeline. The timeline spans ``steps`` (the run's shown step range), like the charts above it, and marks the
    known change points (``changes``) as they do."""
    alerts = [a for a in every if window[0] <= a.step <= window[1]]
    taken = [a for a in actions or () if window[0] <= a["step"] <= window[1]]
    v = state.verdict if state is not None else None
    if taken:
        st.markdown(f"**Actions taken** ({len(taken)})")
        for a in taken:
            st.text(f"step {a['step']:,}: {charts.action_text(a)}")
    if not alerts and not taken:
        if not has_entropy:
            st.info("No analysis: this run has no entropy series, so no alert can be raised either way.")
        elif v is None:
            st.info("The detector is still analysing this run; alerts appear here when it finishes.")
        elif v.health == "too-short":
            st.info(f"No alerts yet: {md(v.headline)}.")
        elif v.health == "ok" and not every:
            st.success("No alerts in the current verdict: no collapse, explosion, cliff or precision signal so far.")
        else:  # the window hides them: never an all-clear beside a verdict with a problem
            box = st.warning if v.health in ("warning", "critical") else st.info
            box(outside_window(v, len(every)))
        return
    x_range = (max(window[0], steps[0]), min(window[1], steps[1]))
    timeline = charts.alert_timeline(alerts, x_range, taken)
    if changes is not None and len(changes):
        charts.mark_changes(timeline, changes)
    st.plotly_chart(timeline, key="alerts")
    major = [a for a in alerts if a.severity != "info"]
    info = [a for a in alerts if a.severity == "info"]
    for a in major[:MAX_ALERT_BOXES]:
        _alert_box(a)
    if len(major) > MAX_ALERT_BOXES:
        rest = major[MAX_ALERT_BOXES:]
        with st.expander(f"{len(rest)} more warning and critical alert{'s' if len(rest) != 1 else ''}"):
            _alert_table(rest)
    if info:
        with st.expander(f"🔵 {len(info)} info note{'s' if len(info) != 1 else ''} (context, not findings)"):
            _alert_table(info)


RECORDED_TITLE = "recorded by an earlier analysis; not in the current verdict"


def recorded_alerts(alerts: list[Alert]) -> None:
    """Stored alerts the current verdict does not hold (:func:`split_alerts`), folded under their own label: an
    earlier analysis (``watch --write``, the trainer's live analysis, on fewer steps or an older detector) raised
    them; they are history, not findings standing now, so they get no severity box or icon of their own."""
    if not alerts:
        return
    n = len(alerts)
    with st.expander(f"{n} stored alert{'s' if n != 1 else ''} {RECORDED_TITLE}"):
        st.caption(
            "Written to the store by `entropy-watch watch --write` or the training's live analysis when they ran. "
            "The current verdict, from all the steps logged now, does not raise them; `entropy-watch alerts RUN` "
            "does not list them either."
        )
        _alert_table(alerts[:MAX_STORED_ROWS])
        if n > MAX_STORED_ROWS:
            st.caption(f"… and {n - MAX_STORED_ROWS:,} older ones.")


def outside_window(v: Verdict, n_alerts: int) -> str:
    """What the alerts panel says when the step window shows none of the run's ``n_alerts`` alerts: the verdict
    (health, kind and the step its active problem began) and that widening the window shows them."""
    if v.health == "ok":
        n = f"{n_alerts} alert{'s' if n_alerts != 1 else ''}"
        return f"No alerts in the steps shown; {n} outside them (widen the window to see them); the run's verdict: ok."
    active = [p for p in v.problems if p.cleared is None and (v.kind is None or p.kind == v.kind)]
    since = active[-1].since if active else min((a.step for a in v.alerts if a.severity == v.health), default=None)
    what = f"{v.health} {v.kind}" if v.kind else v.health
    at = f" since step {since:,}" if since is not None else ""
    return f"No alerts in the steps shown; the run's verdict: {what}{at} (widen the window to see it)."


ACTIONS_COLUMN = "suggested actions"


def _alert_table(alerts: list[Alert]) -> None:
    """Alerts as one table for lists too long for one box each: a static table, so long messages wrap instead of
    being cut; its cells are markdown, so every value goes through :func:`md` (shown as data). Each alert's
    suggested actions, as its box lists them (:func:`actions_markdown`), in a column of their own where any has."""
    rows = [{"step": f"{a.step:,}", "severity": a.severity, "kind": a.kind, "detector": a.detector,
             "message": a.message} for a in alerts]  # fmt: skip
    cells = [{k: md(x) for k, x in r.items()} for r in rows]
    if any(a.actions for a in alerts):
        for row, a in zip(cells, alerts, strict=True):
            row[ACTIONS_COLUMN] = actions_markdown(a.actions)
    st.table(cells, hide_index=True)


def actions_markdown(actions: Sequence[str]) -> str:
    """An alert's suggested actions (``alert.actions``, as the analysis wrote them: never recomputed here) as a
    markdown list, each one made literal by :func:`md`; "" for none."""
    return "\n".join(f"- {md(x)}" for x in actions)


def _alert_box(a: Alert) -> None:
    title = f"{SEVERITY_ICONS.get(a.severity, '')} {md(f'{a.severity} · {a.kind} at step {a.step:,} — {a.message}')}"
    with st.expander(title, expanded=a.severity == "critical"):
        st.text(a.message)
        if a.actions:
            st.markdown("**Suggested actions**\n" + actions_markdown(a.actions))
        st.markdown(f"**Evidence** ({md(a.detector)})")
        st.json(a.evidence, expanded=False)
