"""Sections of the Run page (``app/pages/run.py``) that need more than one chart call: header metrics, entropy with
the forecast, clipping, reward vs entropy, alerts, and the on-demand token explorer."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import streamlit as st

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert, DetectorConfig
from entropy_watch.app import charts, data, insight
from entropy_watch.app.queries import Trace

SEVERITY_ICONS = {"info": "🔵", "warning": "🟠", "critical": "🔴"}
HEALTH_TEXT = {"ok": "ok", "info": "info", "warning": "warning", "critical": "critical"}


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None or not np.isfinite(x) else format(x, spec)


def header(
    run: str,
    info: dict[str, Any] | None,
    meta: dict[str, Any],
    version: tuple[int, int],
    job: insight.JobState,
    levels: tuple[float | None, float | None] | None,
    band: dict[str, Any] | None,
) -> None:
    """Status line and headline metrics: last step, entropy, H/H0, health, ETA to the floor."""
    last, h0 = levels or (None, None)
    eta = band["eta_step"] if band else None
    health = insight.health(job.result.alerts) if job.result is not None else None
    cols = st.columns(6)
    cols[0].metric("status", (info or {}).get("state", "unknown"))
    cols[1].metric("last step", f"{version[1]:d}")
    cols[2].metric("entropy (nats)", _fmt(last))
    cols[3].metric("H/H0", _fmt(last / h0 if last is not None and h0 else None, ".2f"))
    icon = {"ok": "🟢", "info": "🔵", "warning": "🟠", "critical": "🔴"}.get(health or "", "")
    cols[4].metric(f"health {icon}", HEALTH_TEXT.get(health or "", "analysing…" if job.pending else "—"),
                   help="the worst open alert of the detector")  # fmt: skip
    eta_text = "—"
    if band is not None:
        eta_text = (
            "at floor" if eta is not None and eta <= band["evaluated_at"] else f"step {eta:,.0f}" if eta else "none"
        )
    cols[5].metric("ETA to floor", eta_text, help="median forecast step where entropy reaches the collapse floor")
    details = [f"framework: {meta.get('framework', 'unknown')}"]
    if meta.get("entropy_definition"):
        details.append(f"entropy: {meta['entropy_definition']}")
    st.caption(" · ".join(details))
    if job.error:
        st.warning(job.error)
    if job.pending:
        st.caption("⏳ The detector is catching up with the newest steps; alerts and the forecast refresh when done.")
    if job.result is not None:
        for note in job.result.notes:
            st.caption(note)


def entropy_section(
    tr: dict[str, Trace], job: insight.JobState, band: dict[str, Any] | None, window: tuple[int, int]
) -> None:
    src = M.ENTROPY_MEAN if M.ENTROPY_MEAN in tr else M.ENTROPY_SAMPLED_NLL if M.ENTROPY_SAMPLED_NLL in tr else None
    if src is None:
        st.info("This run logged no entropy (entropy/mean or entropy/sampled_nll) in the chosen step range.")
        return
    floor, h_ref = None, None
    res = job.result
    if res is not None and res.prep is not None and len(res.prep):
        floor, h_ref = float(res.prep.floor[-1]), float(res.prep.h_ref[-1])
        if band is not None and band["steps"][-1] < window[0] or band is not None and band["steps"][0] > window[1]:
            band = None
    fig = charts.entropy_forecast(tr[src], floor=floor, h_ref=h_ref, forecast=band)
    if src == M.ENTROPY_SAMPLED_NLL:
        fig.update_layout(title_text="Token entropy (sampled-token NLL estimate) and forecast")
    st.plotly_chart(fig, key="entropy")
    if band is not None:
        eta = band["eta_step"]
        where = "never reaches the floor" if eta is None else f"reaches the floor at step {eta:,.0f}"
        if band["eta_lo_step"] and band["eta_hi_step"]:
            where += f" (90% interval {band['eta_lo_step']:,.0f}–{band['eta_hi_step']:,.0f})"
        st.caption(
            f"Forecast at step {band['evaluated_at']:,} ({band['model']} fit): entropy {where}; "
            f"P(reach the floor within the horizon) = {band['p_cross']:.0%}."
        )
    elif res is None and not job.pending:
        st.caption("No forecast: the detector needs more steps.")


def clip_section(tr: dict[str, Trace]) -> None:
    onpolicy = tr.get(M.CLIP_ONPOLICY)
    if onpolicy is not None and onpolicy.last() is not None and onpolicy.last() >= 0.5:
        st.info(
            "Clipping: **N/A — on-policy** (clip/onpolicy = 1). With no old log-probs the importance ratio is 1, "
            "so nothing can be clipped; zero clip fractions here are not a sign of health."
        )
        return
    low, high, region = tr.get(M.CLIP_LOW_FRAC), tr.get(M.CLIP_HIGH_FRAC), tr.get(M.CLIP_REGION_FRAC)
    if low is None and high is None:
        st.info("No clip fractions (clip/low_frac, clip/high_frac) logged for this run.")
        return
    st.plotly_chart(charts.clip_chart(low, high, region), key="clip")


def reward_section(
    root: str,
    run: str,
    version: tuple[int, int],
    names: list[str],
    job: insight.JobState,
    window: tuple[int, int],
    cfg: DetectorConfig,
) -> None:
    rname = insight.reward_name(names)
    hname = M.ENTROPY_MEAN if M.ENTROPY_MEAN in names else M.ENTROPY_SAMPLED_NLL
    if rname is None:
        st.info("No reward logged for this run (reward/mean or eval/pass@1), so there is no reward–entropy view.")
        return
    steps, h, r = data.paired(root, run, version, hname, rname, window)
    if steps.size == 0:
        st.info(f"{rname} and {hname} were never logged at the same step in this range.")
        return
    law = None
    if job.result is not None and job.series is not None:
        law = insight.reward_law(job.result, job.series, cfg)
    st.plotly_chart(charts.reward_vs_entropy(steps, h, r, law, rname), key="reward")
    if law is None:
        st.caption("The entropy–reward law is fitted once there are enough pairs spanning enough entropy change.")
    elif not law.get("applicable"):
        st.caption(f"The law R = −a·exp(H) + b fits poorly here (R² {law['r2']:.2f}); read its ceiling with care.")
    else:
        st.caption(
            f"Predicted ceiling when entropy is spent (H = 0): {law['ceiling']:.3g}; "
            f"headroom over the recent reward: {law['headroom']:.3g}."
        )


def _merge_alerts(job: insight.JobState, stored: list[dict[str, Any]]) -> list[Alert]:
    alerts = list(job.result.alerts) if job.result is not None else []
    seen = {(a.step, a.detector, a.severity) for a in alerts}
    for row in stored:
        try:
            a = Alert.from_row(row)
        except (ValueError, KeyError, json.JSONDecodeError):
            continue
        if (a.step, a.detector, a.severity) not in seen:
            alerts.append(a)
    return sorted(alerts, key=lambda a: a.step)


def alerts_section(job: insight.JobState, stored: list[dict[str, Any]], window: tuple[int, int]) -> None:
    alerts = [a for a in _merge_alerts(job, stored) if window[0] <= a.step <= window[1]]
    if not alerts:
        if job.pending and job.result is None:
            st.info("The detector is still analysing this run; alerts appear here when it finishes.")
        else:
            st.success("No alerts in this step range: no collapse, explosion, cliff or precision signal so far.")
        return
    st.plotly_chart(charts.alert_timeline([a.to_dict() for a in alerts]), key="alerts")
    for a in reversed(alerts):
        title = f"{SEVERITY_ICONS.get(a.severity, '')} step {a.step} · {a.detector} · {a.kind} — {a.message}"
        with st.expander(title, expanded=False):
            st.markdown(f"**{a.severity}** · {a.message}")
            if a.actions:
                st.markdown("**Suggested actions**\n" + "\n".join(f"- {x}" for x in a.actions))
            st.markdown("**Evidence**")
            st.json(a.evidence, expanded=False)


@st.fragment
def tokens_section(root: str, run: str) -> None:
    """On-demand explorer of the sampled ``tokens`` table (filters rerun only this section)."""
    c = st.columns([1, 1, 1, 2, 1])
    lo = c[0].number_input("from step", min_value=0, value=0, step=10, key="tok_lo")
    hi = c[1].number_input("to step", min_value=0, value=10**9, step=10, key="tok_hi")
    min_h = c[2].number_input("min entropy (nats)", min_value=0.0, value=0.0, step=0.1, key="tok_min")
    text = c[3].text_input("token contains", key="tok_text", placeholder="e.g. wait")
    limit = c[4].number_input("show top", min_value=5, max_value=500, value=25, step=5, key="tok_limit")
    tbl = data.tokens(root, run, int(lo), int(hi), float(min_h), text, int(limit))
    if tbl.num_rows == 0:
        st.info(
            "No sampled tokens match. Imported logs carry no token samples; runs recorded with "
            "`entropy_watch.hooks.Watch` keep the highest-entropy tokens of each step (`sample_tokens`)."
        )
        return
    st.dataframe(
        tbl.to_pandas(),
        hide_index=True,
        key="tokens_df",
        column_config={
            "entropy": st.column_config.NumberColumn("entropy (nats)", format="%.3f"),
            "logp": st.column_config.NumberColumn("log p (nats)", format="%.3f"),
            "advantage": st.column_config.NumberColumn(format="%.3f"),
            "context": st.column_config.TextColumn("context (token in ⟦ ⟧, … = unsampled)", width="large"),
        },
    )


# Tabs of the Run page below the entropy chart; only the open one runs (``app/pages/run.py``).
# Secondary charts get at most this many points per trace and heatmap columns (the entropy chart keeps the
# query default): halves their Plotly payload and SVG path length on a 100k-step run.
TABS = ("Distribution", "Drivers: clipping, advantages, covariance", "Reward and precision")
TAB_POINTS = 1000
HEATMAP_COLS = 500


def coarsen(tr: Trace, max_points: int = TAB_POINTS) -> Trace:
    """``tr`` merged ``k`` buckets at a time until it has ≤ ``max_points`` points: mean of the bucket means (steps
    and values), min of ``lo``, max of ``hi``; ``width`` grows ``k``-fold. Short traces are returned unchanged."""
    n = len(tr)
    if n <= max_points:
        return tr
    k = -(-n // max_points)
    m = -(-n // k) * k
    pad = m - n

    def fold(a: np.ndarray, how: Any) -> np.ndarray:
        x = np.concatenate([a.astype(np.float64), np.full(pad, np.nan)]).reshape(-1, k)
        return how(x, axis=1)

    return Trace(tr.name, fold(tr.steps, np.nanmean), fold(tr.mean, np.nanmean), fold(tr.lo, np.nanmin),
                 fold(tr.hi, np.nanmax), tr.width * k)  # fmt: skip


def distribution_tab(
    root: str, run: str, version: tuple[int, int], meta: dict[str, Any], tr: dict[str, Trace], window: tuple[int, int]
) -> None:
    """Token-entropy histogram over steps and the quantile fan."""
    c1, c2 = st.columns(2)
    with c1:
        edges = meta.get("hist_edges")
        if not edges:
            st.info("No histogram bin edges in run.json (`hist_edges`): this run has no per-token distribution.")
        else:
            hm = data.heatmap(root, run, version, len(edges), window, HEATMAP_COLS)
            if hm.steps.size == 0:
                st.info(
                    "No token-entropy histogram for this run: imported logs carry only scalar metrics. "
                    "Record with `entropy_watch.hooks.Watch` to get the per-token distribution."
                )
            else:
                st.plotly_chart(charts.entropy_heatmap(hm, np.asarray(edges)), key="heatmap")
    with c2:
        quant = {n: coarsen(tr[n]) for n in M.ENTROPY_QUANTILES if n in tr}
        if quant:
            st.plotly_chart(charts.quantile_fan(quant), key="fan")
        else:
            st.info("No entropy quantiles (entropy/p10…p99) logged for this run.")


def drivers_tab(
    root: str, run: str, version: tuple[int, int], names: list[str], tr: dict[str, Trace], window: tuple[int, int]
) -> None:
    """Clipping, advantages, predicted vs observed ΔH and the covariance drive."""
    tr = {n: coarsen(t) for n, t in tr.items()}
    c1, c2 = st.columns(2)
    with c1:
        clip_section(tr)
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
        src = M.ENTROPY_MEAN if M.ENTROPY_MEAN in names else M.ENTROPY_SAMPLED_NLL
        # same-batch change the trainer measured (entropy_drift.py) if logged, else the step-to-step change of src
        observed = tr.get(M.ENTROPY_DELTA_OBS) or data.delta(root, run, version, src, window)
        if M.COV_PRED_DH in tr or observed is not None:
            obs = coarsen(observed) if observed is not None else None
            st.plotly_chart(charts.delta_h_chart(tr.get(M.COV_PRED_DH), obs), key="dh")
        else:
            st.info("Not enough entropy points to show its per-step change.")
    with c2:
        cov = [(n, tr[n]) for n in (M.COV_PG_DRIVE, M.COV_LOGP_ADV) if n in tr]
        if cov:
            title = "Covariance drive (positive ⇒ the step spends entropy)"
            st.plotly_chart(charts.lines(cov, title, "covariance (nats)", zero_line=True), key="cov")
        else:
            st.info("No covariance terms (cov/pg_drive, cov/logp_adv) logged: they need log-probs and advantages.")


def reward_tab(
    root: str,
    run: str,
    version: tuple[int, int],
    names: list[str],
    tr: dict[str, Trace],
    job: insight.JobState,
    window: tuple[int, int],
    cfg: DetectorConfig,
) -> None:
    """Reward vs entropy with the law's ceiling, precision signals and the controller's state."""
    tr = {n: coarsen(t) for n, t in tr.items()}
    c1, c2 = st.columns(2)
    with c1:
        reward_section(root, run, version, names, job, window, cfg)
    with c2:
        prec = [(n, tr[n]) for n in (M.RATIO_LOG_MEAN, M.PRECISION_LOGP_GAP_MEAN, M.PRECISION_LOGP_GAP_MAX) if n in tr]
        if prec:
            title, y_title = "Precision signals (bf16 ratio bias)", "log-prob gap / mean log ratio (nats)"
            st.plotly_chart(charts.lines(prec, title, y_title, zero_line=True), key="precision")
        else:
            st.info("No precision signals (ratio/log_mean, precision/logp_gap_*) logged for this run.")
    control = [(n.split("/", 1)[1], tr[n]) for n in names if n.startswith("control/") and n in tr]
    if control:
        st.plotly_chart(charts.lines(control, "Controller state (control/*)", "value"), key="control")
