"""Run page: one run in depth — entropy with the detector's forecast, per-token distribution, its drivers, alerts.

Everything above the token explorer lives in one live fragment that polls the store: header metrics and the entropy
chart with its forecast on top, then tabs (distribution, drivers, reward and precision) of which only the open one
runs and sends its charts, then the alerts. The token explorer reads the (large) ``tokens`` table on demand with
filters and is never tailed. A chart whose data the run does not have is replaced by a short explanation.
"""

from __future__ import annotations

import streamlit as st

from entropy_watch import metrics as M
from entropy_watch.analysis import DetectorConfig
from entropy_watch.app import data, insight, sidebar
from entropy_watch.app import run_panels as P

# Above this many steps a cold analysis takes seconds: the page does not wait for it (it shows when done).
LARGE_RUN_STEPS = 20_000

settings = sidebar.current()
root = settings.root
generation = data.poll(root)
names = [r["name"] for r in data.runs_now(root, generation)]
if not names:
    st.title("Run")
    st.info(
        f"No runs in the store `{root}` yet: record one with `Watch`, `entropy-watch import` or `entropy-watch demo`."
    )
    st.stop()

wanted = st.query_params.get("run") or st.session_state.get("run")
if wanted not in names:
    wanted = names[0]
if st.session_state.get("run_select") not in names:
    st.session_state["run_select"] = wanted
elif st.query_params.get("run") in names and st.query_params.get("run") != st.session_state.get("_run_from_url"):
    st.session_state["run_select"] = st.query_params["run"]
st.session_state["_run_from_url"] = st.query_params.get("run")
run = st.selectbox("Run", names, key="run_select")
st.session_state["run"] = run
st.query_params["run"] = run


@st.fragment(run_every=settings.run_every)
def live_panel() -> None:
    gen = data.poll(root)
    version = data.versions(root, gen).get(run)
    info = next((r for r in data.runs_now(root, gen) if r["name"] == run), None)
    meta = data.run_meta(root, run, version)
    st.title(run)
    if version is None:
        st.info(
            "This run has no scalar metrics yet. It appears as soon as the trainer's first segment is published "
            f"(status: {info['state'] if info else 'unknown'})."
        )
        return
    window = settings.window.bounds(version[1])
    names_logged = data.scalar_names(root, run, version)
    cfg = DetectorConfig()
    tr = data.traces(root, run, version, tuple(n for n in names_logged if n in M.CANONICAL or "/" in n), window)
    # Boxes filled after the analysis wait; the tabs' queries run first, before the background detector starts
    # competing with them for the CPU (cold, that contention made the heatmap query ~20x slower).
    head_box = st.container()
    st.subheader("Entropy")
    entropy_box = st.container()
    # Only the open tab runs and sends its charts: a 100k-step run's first paint is the header, the entropy chart,
    # the open tab and the alerts, not every chart of the page at once.
    dist, drivers, reward = st.tabs(list(P.TABS), key="run_tab", on_change="rerun")
    if dist.open:
        with dist:
            P.distribution_tab(root, run, version, meta, tr, window)
    if drivers.open:
        with drivers:
            P.drivers_tab(root, run, version, names_logged, tr, window)
    wait = data.ANALYSIS_WAIT_S if version[1] <= LARGE_RUN_STEPS else min(data.ANALYSIS_WAIT_S, 0.3)
    job = data.analysis(root, run, version, wait_s=wait)
    band = insight.forecast_band(job.result, cfg) if job.result is not None else None
    with head_box:
        P.header(run, info, meta, version, job, data.entropy_levels(root, gen, cfg.ref_versions).get(run), band)
    with entropy_box:
        P.entropy_section(tr, job, band, window)
    if reward.open:
        with reward:
            P.reward_tab(root, run, version, names_logged, tr, job, window, cfg)
    st.subheader("Alerts")
    P.alerts_section(job, data.stored_alerts(root, run, gen), window)


live_panel()

st.subheader("Highest-entropy tokens in context")
P.tokens_section(root, run)
