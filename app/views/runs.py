"""Runs page: every run in the store, worst health first, with its entropy relative to its early level, a sparkline,
its status and latest step; pick runs in the table to open or compare.

Health is the run's verdict (``entropy_watch.analysis``, computed by the background monitor): ``too short`` where
the detector had too few points to say anything. H/H_ref is the verdict's level over its H_ref, coloured by the
verdict's health and named by its kind ("45% collapse" in orange beside a warning collapse; spiking where the
verdict's explosion is unsettled, its median back down while its points still explode): never judged again from the
ratio, so it cannot read as a second verdict. H level is the verdict's level (a rolling median), as on the Run page.
Status comes from the heartbeats (running / finished / stalled / failed / terminated by SIGTERM / interrupted by
Ctrl-C) or says ``imported`` for logs brought in from other tools.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pandas as pd
import streamlit as st

from entropy_watch import metrics as M
from entropy_watch.app import data, guard, sidebar
from entropy_watch.app import run_panels as P
from entropy_watch.app.display import fmt_nats, fmt_ratio, md, short_name, verdict_tone
from entropy_watch.app.run_panels import LEVEL_HELP
from entropy_watch.monitor import RunState

HEALTH_BADGES = {
    "critical": "🔴 critical",
    "warning": "🟠 warning",
    "error": "⚠️ analysis failed",
    "info": "🔵 info",
    "pending": "⏳ analysing",
    "ok": "🟢 ok",
    "too-short": "⚪ too short",
    "none": "⚪ no entropy logged",
    "empty": "⚪ no data yet",
}
HEALTH_RANK = {h: i for i, h in enumerate(reversed(HEALTH_BADGES))}  # critical highest
STATUS_BADGES = {
    "running": "▶️ running",
    "finished": "✅ finished",
    "stalled": "⏸️ stalled",
    "failed": "❌ failed",
    "terminated": "⏹️ terminated",
    "interrupted": "✋ interrupted",  # Ctrl-C: stopped by hand (⏸️ is stalled's)
    "imported": "📥 imported",
}
SORTS = {
    "health (worst first)": (["_health_rank", "run"], [False, True]),
    "name": (["run"], [True]),
    "last step": (["last step"], [False]),
    "H/H_ref (lowest first)": (["_ratio"], [True]),
    "last update": (["_updated"], [False]),
}
ROW_PX = 35
TABLE_KEY = "runs_df"
SHOWN_KEY = "_runs_df_order"  # the run names in the order the table was last drawn (what its row numbers refer to)


settings = sidebar.current()
root = settings.root
st.title("Runs")
c1, c2, c3, c4 = st.columns([2, 2, 2, 1.6])
name_filter = c1.text_input("Filter by name", key="runs_filter", placeholder="substring, e.g. grpo")
status_filter = c2.multiselect("Status", list(STATUS_BADGES), key="runs_status", placeholder="any status")
health_filter = c3.multiselect("Health", list(HEALTH_BADGES), key="runs_health", placeholder="any health")
sort_by = c4.selectbox("Sort by", list(SORTS), key="runs_sort")


def health_of(state: RunState | None, has_data: bool, pending: bool) -> str:
    if not has_data:
        return "empty"
    if state is None:
        return "pending"
    if state.waiting:
        return "none"
    if state.error and state.verdict is None:
        return "error"
    if state.verdict is None:
        return "pending" if pending else "error"
    return str(state.verdict.health)


def row(info: Any, version: tuple[int, int] | None, state: RunState | None, pending: bool, spark: list[float]) -> dict:
    v = state.verdict if state is not None else None
    level = v.level if v is not None else None
    ref = v.reference.value if v is not None else None
    ratio = level / ref if level is not None and ref else None
    health = health_of(state, version is not None, pending)
    meta = info.meta or {}
    word, colour = verdict_tone(v.health, v.kind, v.unsettled is not None) if v is not None else ("", "")
    return {
        "run": info.name,
        "name": short_name(info.name),
        "open": f"run?run={quote(info.name, safe='')}",
        "health": HEALTH_BADGES[health],
        "H/H_ref": "",
        "entropy": spark,
        "H level (nats)": "",
        "last step": info.last_step,
        "status": STATUS_BADGES.get(info.state, info.state),
        "framework": meta.get("framework") or meta.get("source_format") or meta.get("source") or "",
        "updated": datetime.fromtimestamp(info.updated_at) if info.updated_at else None,
        "_health": health,
        "_state": info.state,
        "_health_rank": HEALTH_RANK[health],
        "_updated": info.updated_at or 0.0,
        "_ratio": ratio,
        "_level": level,
        "_tone": word,
        "_colour": colour,
    }


def styled(df: pd.DataFrame) -> Any:
    """H/H_ref cells coloured by the verdict's health and named by its kind (:func:`verdict_tone`); numbers as the
    verdict's headline writes them ("13%", "0.00031", "—" when unknown). The numeric columns stay in the frame
    (hidden) for sorting."""
    ratio = [fmt_ratio(x) for x in df["_ratio"]]
    out = df.assign(
        **{
            "H/H_ref": [f"{r} {w}" if w and r != "—" else r for r, w in zip(ratio, df["_tone"], strict=True)],
            "H level (nats)": [fmt_nats(x) for x in df["_level"]],
        }
    )
    colours = [c if r != "—" else "" for r, c in zip(ratio, df["_colour"], strict=True)]
    return out.style.apply(
        lambda col: [f"background-color: {c}; color: #111" if c else "" for c in colours], subset=["H/H_ref"]
    )


@st.fragment(run_every=settings.run_every)
@guard.panel(root)
def runs_table() -> None:
    generation = data.poll(root)
    runs = data.runs(root, generation)
    if not runs:
        st.info(
            f"No runs in the store {md(root)} yet. Record one with `entropy_watch.hooks.Watch` in a training loop, "
            "`entropy-watch import LOG` an existing log, or train a small one with `entropy-watch train`; it appears "
            "here."
        )
        return
    P.unreadable_files(data.unreadable(root), root)
    versions = data.versions(root, generation)
    spark = data.sparklines(root, generation, M.ENTROPY_MEAN)
    deadline = time.monotonic() + data.ANALYSIS_WAIT_S
    mon = data.monitor(root)
    rows = []
    for info in runs:
        version = versions.get(info.name)
        state = mon.state(info.name)
        if version is not None:
            state, _ = data.state(root, info.name, version, wait_s=max(0.0, deadline - time.monotonic()))
        pending = mon.pending(info.name, version)
        rows.append(row(info, version, state, pending, spark.get(info.name, [])))
    df = pd.DataFrame(rows)
    if name_filter:
        df = df[df["run"].str.contains(name_filter, case=False, regex=False)]
    if status_filter:
        df = df[df["_state"].isin(status_filter)]
    if health_filter:
        df = df[df["_health"].isin(health_filter)]
    cols, ascending = SORTS[sort_by]
    df = df.sort_values(cols, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)
    st.caption(
        f"{len(df)} of {len(rows)} runs in {md(root)} · data generation {generation} · select rows to open or "
        "compare them"
    )
    if df.empty:  # no empty grid (with the buttons drawn over it): say what matched nothing
        st.info(no_match_text(name_filter, status_filter, health_filter))
        return
    keep_picked(list(df["run"]))
    event = st.dataframe(
        styled(df),
        hide_index=True,
        key=TABLE_KEY,
        height=ROW_PX * (len(df) + 1) + 3,
        row_height=ROW_PX,
        on_select="rerun",
        selection_mode="multi-row",
        column_order=[
            "name",
            "open",
            "health",
            "H/H_ref",
            "entropy",
            "H level (nats)",
            "last step",
            "status",
            "framework",
            "updated",
        ],
        column_config={
            "name": st.column_config.TextColumn(
                "run",
                pinned=True,
                width=330,
                help="the run's name; a long one elided in the middle (select its row "
                "to read it in full under the table)",
            ),
            "open": st.column_config.LinkColumn("open", display_text="open ↗", width="small"),
            "health": st.column_config.TextColumn("health", width=150, help="the verdict of the detector"),
            "H/H_ref": st.column_config.TextColumn(
                "H/H_ref",
                width=190,
                alignment="right",
                help="the verdict's entropy level over the run's early level H_ref, coloured by the verdict's health "
                "and named by its kind (spiking: the level is back down but points still explode: the explosion has "
                "not settled)",
            ),
            "entropy": st.column_config.LineChartColumn("entropy over steps", width="medium", y_min=0.0),
            "H level (nats)": st.column_config.TextColumn(
                "H level (nats)", width="small", alignment="right", help=LEVEL_HELP
            ),
            "last step": st.column_config.NumberColumn(format="%d", width="small"),
            "updated": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        },
    )
    picked = [df["run"].iloc[i] for i in (event.selection.rows if event is not None else [])]
    if picked:
        st.caption("Selected: " + " · ".join(md(r) for r in picked))
    b1, b2, _ = st.columns([1, 1, 4])
    if b1.button("Open run", key="open_run", disabled=len(picked) != 1, help="select exactly one row"):
        st.session_state["run"] = picked[0]
        st.switch_page(data.VIEWS_DIR / "run.py", query_params={"run": picked[0]})
    if b2.button("Compare", key="compare", disabled=len(picked) < 2, help="select two or more rows"):
        st.session_state["compare_runs"] = list(picked)
        st.switch_page(data.VIEWS_DIR / "compare.py", query_params={"run": list(picked)})


def keep_picked(order: list[str]) -> None:
    """Keep the table's selection on the runs picked, not on row numbers: the grid reports a selection as positions
    in the frame it drew last, and a live refresh may reorder the rows (a run resumed ahead by last step, a verdict
    that changed its health, a newer update) or filter them. The picked names are read through the order drawn
    last and selected again wherever they are now (a run filtered out is unselected), so "Open run" and "Compare"
    act on the runs the user ticked."""
    drawn = st.session_state.get(SHOWN_KEY) or []
    value = st.session_state.get(TABLE_KEY)
    rows = list(value["selection"]["rows"]) if value else []
    at = {name: i for i, name in enumerate(order)}
    names = [drawn[i] for i in rows if isinstance(i, int) and 0 <= i < len(drawn)]
    now = [at[n] for n in names if n in at]
    if now != rows:
        st.session_state[TABLE_KEY] = {"selection": {"rows": now, "columns": [], "cells": []}}
    st.session_state[SHOWN_KEY] = order


def no_match_text(name: str, statuses: list[str], healths: list[str]) -> str:
    """The line shown instead of an empty table: the filters that matched no run, the name one quoted as data."""
    parts = [f"the name filter “{md(name)}”"] if name else []
    parts += [f"status {md(' or '.join(statuses))}"] if statuses else []
    parts += [f"health {md(' or '.join(healths))}"] if healths else []
    return f"No runs match {' and '.join(parts) or 'the filters'}. Change or clear the filters above."


runs_table()
