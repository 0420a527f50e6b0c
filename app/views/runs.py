"""Runs page: every run in the store with its health, status, latest step and entropy; pick runs to open or compare.

Health is the worst open alert of the run's detector analysis (``entropy_watch.analysis``, run in the background);
status comes from the heartbeats (running / finished / stalled / failed) or says ``imported`` for logs brought in
from other tools.
"""

from __future__ import annotations

import time
from datetime import datetime

import pandas as pd
import streamlit as st

from entropy_watch.analysis import DetectorConfig
from entropy_watch.app import data, insight, sidebar

HEALTH_BADGES = {
    "ok": "🟢 ok",
    "info": "🔵 info",
    "warning": "🟠 warning",
    "critical": "🔴 critical",
    "pending": "⏳ analysing",
    "none": "⚪ no entropy yet",
    "error": "⚠️ analysis failed",
}
STATUS_BADGES = {
    "running": "▶️ running",
    "finished": "✅ finished",
    "stalled": "⏸️ stalled",
    "failed": "❌ failed",
    "imported": "📥 imported",
}
SORTS = {
    "name": ("run", True),
    "health (worst first)": ("_health_rank", False),
    "last step": ("last step", False),
    "H/H0": ("H/H0", True),
    "last update": ("_updated", False),
}
HEALTH_RANK = {"critical": 4, "warning": 3, "error": 3, "info": 2, "pending": 1, "ok": 0, "none": -1}

settings = sidebar.current()
root = settings.root
st.title("Runs")
c1, c2, c3, c4 = st.columns([2, 2, 2, 1.5])
name_filter = c1.text_input("Filter by name", key="runs_filter", placeholder="substring, e.g. grpo")
status_filter = c2.multiselect("Status", list(STATUS_BADGES), key="runs_status", placeholder="any status")
health_filter = c3.multiselect("Health", ["ok", "info", "warning", "critical"], key="runs_health", placeholder="any")
sort_by = c4.selectbox("Sort by", list(SORTS), key="runs_sort")


def health_of(run: str, version: object, deadline: float) -> str:
    if version is None:
        return "none"
    job = data.analysis(root, run, version, wait_s=max(0.0, deadline - time.monotonic()))
    if job.error and job.result is None:
        return "error"
    if job.result is None:
        return "pending" if job.pending else "none"
    return insight.health(job.result.alerts)


@st.fragment(run_every=settings.run_every)
def runs_table() -> None:
    generation = data.poll(root)
    runs = data.runs_now(root, generation)
    if not runs:
        st.info(
            f"No runs in the store `{root}` yet. Record one with `entropy_watch.hooks.Watch` in a training loop, "
            "`entropy-watch import LOG` an existing log, or `entropy-watch demo`; it will appear here."
        )
        return
    versions = data.versions(root, generation)
    spark = data.sparklines(root, generation)
    levels = data.entropy_levels(root, generation, DetectorConfig().ref_versions)
    deadline = time.monotonic() + data.ANALYSIS_WAIT_S
    for r in runs:  # start every run's analysis first, then wait on them together
        if versions.get(r["name"]) is not None:
            data.analysis(root, r["name"], versions[r["name"]], wait_s=0.0)
    rows = []
    for r in runs:
        name = r["name"]
        last, h0 = levels.get(name, (None, None))
        health = health_of(name, versions.get(name), deadline)
        meta = r["meta"] or {}
        rows.append(
            {
                "run": name,
                "open": f"run?run={name}",
                "health": HEALTH_BADGES[health],
                "status": STATUS_BADGES.get(r["state"], r["state"]),
                "last step": r["last_step"],
                "H (nats)": last,
                "H/H0": (last / h0) if last is not None and h0 else None,
                "entropy": spark.get(name, []),
                "framework": meta.get("framework") or meta.get("source_format") or meta.get("source") or "",
                "updated": datetime.fromtimestamp(r["updated_at"]) if r["updated_at"] else None,
                "_health": health,
                "_state": r["state"],
                "_health_rank": HEALTH_RANK[health],
                "_updated": r["updated_at"] or 0.0,
            }
        )
    df = pd.DataFrame(rows)
    if name_filter:
        df = df[df["run"].str.contains(name_filter, case=False, regex=False)]
    if status_filter:
        df = df[df["_state"].isin(status_filter)]
    if health_filter:
        df = df[df["_health"].isin(health_filter)]
    col, ascending = SORTS[sort_by]
    df = df.sort_values(col, ascending=ascending, na_position="last", kind="stable")
    st.caption(f"{len(df)} of {len(rows)} runs in `{root}` · data generation {generation}")
    st.dataframe(
        df,
        hide_index=True,
        key="runs_df",
        column_order=[
            "run",
            "open",
            "health",
            "status",
            "last step",
            "H (nats)",
            "H/H0",
            "entropy",
            "framework",
            "updated",
        ],  # fmt: skip
        column_config={
            "open": st.column_config.LinkColumn("open", display_text="open ↗", width="small"),
            "last step": st.column_config.NumberColumn(format="%d"),
            "H (nats)": st.column_config.NumberColumn(format="%.3f", help="latest entropy/mean, nats per token"),
            "H/H0": st.column_config.ProgressColumn(
                "H/H0", min_value=0.0, max_value=1.0, format="%.2f", help="latest entropy over its early level H0"
            ),
            "entropy": st.column_config.LineChartColumn("entropy (nats) over steps", width="medium", y_min=0.0),
            "updated": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        },
    )


runs_table()

names = [r["name"] for r in data.runs_now(root, data.poll(root))]
if names:
    picked = st.multiselect("Pick runs to open or compare", names, key="runs_picked")
    b1, b2, _ = st.columns([1, 1, 4])
    if b1.button("Open run", key="open_run", disabled=len(picked) != 1, help="pick exactly one run"):
        st.session_state["run"] = picked[0]
        st.switch_page(data.PAGES_DIR / "run.py", query_params={"run": picked[0]})
    if b2.button("Compare", key="compare", disabled=len(picked) < 2, help="pick two or more runs"):
        st.session_state["compare_runs"] = list(picked)
        st.switch_page(data.PAGES_DIR / "compare.py")
