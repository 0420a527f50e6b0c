"""Run page: one run in depth — entropy with the detector's forecast, per-token distribution, its drivers, alerts.

Everything above the token explorer lives in one live fragment that polls the store; the token explorer reads the
(large) ``tokens`` table on demand with filters and is never tailed. A chart whose data the run does not have is
replaced by a short explanation.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from entropy_watch import metrics as M
from entropy_watch.analysis import DetectorConfig
from entropy_watch.app import charts, data, insight, sidebar
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
    # Boxes filled last: the detector's results are awaited only after every other chart has been sent.
    head_box = st.container()
    st.subheader("Entropy")
    entropy_box = st.container()
    tr = data.traces(root, run, version, tuple(n for n in names_logged if n in M.CANONICAL or "/" in n), window)
    c1, c2 = st.columns(2)
    with c1:
        edges = meta.get("hist_edges")
        if not edges:
            st.info("No histogram bin edges in run.json (`hist_edges`): this run has no per-token distribution.")
        else:
            hm = data.heatmap(root, run, version, len(edges), window)
            if hm.steps.size == 0:
                st.info(
                    "No token-entropy histogram for this run: imported logs carry only scalar metrics. "
                    "Record with `entropy_watch.hooks.Watch` to get the per-token distribution."
                )
            else:
                st.plotly_chart(charts.entropy_heatmap(hm, np.asarray(edges)), key="heatmap")
    with c2:
        quant = {n: tr[n] for n in M.ENTROPY_QUANTILES if n in tr}
        if quant:
            st.plotly_chart(charts.quantile_fan(quant), key="fan")
        else:
            st.info("No entropy quantiles (entropy/p10…p99) logged for this run.")

    st.subheader("Drivers: clipping, advantages, covariance")
    c1, c2 = st.columns(2)
    with c1:
        P.clip_section(tr)
    with c2:
        adv = [(n.split("/")[1], tr[n]) for n in (M.ADV_MEAN, M.ADV_STD, M.ADV_MIN, M.ADV_MAX) if n in tr]
        if M.ADV_FRAC_ZERO_GROUPS in tr:
            adv.append(("share of zero-variance groups", tr[M.ADV_FRAC_ZERO_GROUPS]))
        if adv:
            st.plotly_chart(charts.lines(adv, "Advantages", "advantage (reward units) / share"), key="adv")
        else:
            st.info("No advantage statistics (adv/*) logged for this run.")
    c1, c2 = st.columns(2)
    with c1:
        src = M.ENTROPY_MEAN if M.ENTROPY_MEAN in names_logged else M.ENTROPY_SAMPLED_NLL
        # same-batch change the trainer measured (entropy_drift.py) if logged, else the step-to-step change of src
        observed = tr.get(M.ENTROPY_DELTA_OBS) or data.delta(root, run, version, src, window)
        if M.COV_PRED_DH in tr or observed is not None:
            st.plotly_chart(charts.delta_h_chart(tr.get(M.COV_PRED_DH), observed), key="dh")
        else:
            st.info("Not enough entropy points to show its per-step change.")
    with c2:
        cov = [(n, tr[n]) for n in (M.COV_PG_DRIVE, M.COV_LOGP_ADV) if n in tr]
        if cov:
            fig = charts.lines(cov, "Covariance drive (positive ⇒ the step spends entropy)", "covariance (nats)")
            fig.add_hline(y=0.0, line={"color": "#999", "width": 1})
            st.plotly_chart(fig, key="cov")
        else:
            st.info("No covariance terms (cov/pg_drive, cov/logp_adv) logged: they need log-probs and advantages.")

    st.subheader("Reward and precision")
    c1, c2 = st.columns(2)
    reward_box = c1.container()
    with c2:
        prec = [(n, tr[n]) for n in (M.RATIO_LOG_MEAN, M.PRECISION_LOGP_GAP_MEAN, M.PRECISION_LOGP_GAP_MAX) if n in tr]
        if prec:
            fig = charts.lines(prec, "Precision signals (bf16 ratio bias)", "log-prob gap / mean log ratio (nats)")
            fig.add_hline(y=0.0, line={"color": "#999", "width": 1})
            st.plotly_chart(fig, key="precision")
        else:
            st.info("No precision signals (ratio/log_mean, precision/logp_gap_*) logged for this run.")
    control = [(n.split("/", 1)[1], tr[n]) for n in names_logged if n.startswith("control/") and n in tr]
    if control:
        st.subheader("Controller state")
        st.plotly_chart(charts.lines(control, "Controller state (control/*)", "value"), key="control")

    st.subheader("Alerts")
    wait = data.ANALYSIS_WAIT_S if version[1] <= LARGE_RUN_STEPS else min(data.ANALYSIS_WAIT_S, 0.3)
    job = data.analysis(root, run, version, wait_s=wait)
    band = insight.forecast_band(job.result, cfg) if job.result is not None else None
    with head_box:
        P.header(run, info, meta, version, job, data.entropy_levels(root, gen, cfg.ref_versions).get(run), band)
    with entropy_box:
        P.entropy_section(tr, job, band, window)
    with reward_box:
        P.reward_section(root, run, version, names_logged, job, window, cfg)
    P.alerts_section(job, data.stored_alerts(root, run, gen), window)


live_panel()

st.subheader("Highest-entropy tokens in context")
P.tokens_section(root, run)
