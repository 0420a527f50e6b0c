"""The Run page's tabs under the entropy chart: the per-token distribution, the drivers of entropy change, reward and
precision with the entropy controller. Only the open tab runs (``app/views/run.py``), and each chart here is drawn
from at most :data:`TAB_POINTS` points per trace and :data:`HEATMAP_COLS` histogram columns (the entropy chart keeps
the full downsampled resolution): that halves their Plotly payload on a 100k-step run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from entropy_watch import metrics as M
from entropy_watch.analysis import DetectorConfig, corroborate
from entropy_watch.analysis.series import analysed, hist_edges
from entropy_watch.app import charts, data
from entropy_watch.app.display import md
from entropy_watch.app.run_panels import entropy_name
from entropy_watch.monitor import RunState
from entropy_watch.store.reads import Trace


@dataclass(frozen=True)
class RunView:
    """What every tab draws from: the run, its data version, scalar names, the traces of the step ``window`` (at
    most :data:`TAB_POINTS` points each), the drawing smoothing, ``run.json``, whether it was imported, the monitor's
    state (verdict and analysis), the step axis range of the charts (the sidebar's window; None: all steps) and the
    known change points in the window, marked on every step chart as on the entropy chart."""

    root: str
    run: str
    version: tuple[int, int]
    names: list[str]
    tr: dict[str, Trace]
    window: tuple[int, int]
    smoothing: float
    meta: dict[str, Any]
    was_imported: bool
    state: RunState | None
    x_range: tuple[float, float] | None = None
    changes: charts.ChangeMarks | None = None


TABS = ("Distribution", "Drivers: clipping, advantages, covariance", "Reward, precision and controller")
TAB_NAMES: tuple[tuple[str, ...], ...] = (
    tuple(M.ENTROPY_QUANTILES),
    (M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.CLIP_REGION_FRAC, M.CLIP_ONPOLICY, M.ADV_MEAN, M.ADV_STD, M.ADV_MIN,
     M.ADV_MAX, M.ADV_FRAC_ZERO_GROUPS, M.COV_PRED_DH, M.COV_PG_DRIVE, M.COV_LOGP_ADV, M.ENTROPY_DELTA_OBS),
    (M.RATIO_LOG_MEAN, M.PRECISION_LOGP_GAP_MEAN, M.PRECISION_LOGP_GAP_MAX),
)  # fmt: skip
"""The series each tab draws (the reward tab also draws every ``control/*`` name): only the open tab's are read."""
TAB_POINTS = 1000
CONTROL_LEVERS: tuple[str, ...] = tuple(charts.CONTROL_LABELS)
"""What an entropy controller turns (REPO-R's ζ, ADAPO's ε_high, an entropy bonus α): the controller panel is drawn
only when one of them was logged."""
HEATMAP_COLS = 500


def step_chart(
    fig: Any, key: str, x_range: tuple[float, float] | None, changes: charts.ChangeMarks | None = None
) -> None:
    """Draw a step-axis chart over the sidebar's step window (``RunView.x_range``; None: Plotly's autorange), with
    the run's known change points in it (``RunView.changes``) marked as on the entropy chart."""
    if x_range is not None:
        charts.step_range(fig, x_range)
    if changes is not None and len(changes):
        charts.mark_changes(fig, changes)
    st.plotly_chart(fig, key=key)


def distribution_tab(v: RunView) -> None:
    """Token-entropy histogram over steps and the quantile fan."""
    c1, c2 = st.columns(2)
    with c1:
        edges = hist_edges(v.meta)
        hm = data.heatmap(v.root, v.run, v.version, len(edges), v.window, HEATMAP_COLS) if edges else None
        if hm is not None and hm.steps.size:
            step_chart(charts.entropy_heatmap(hm, np.asarray(edges)), "heatmap", v.x_range, v.changes)
        elif v.was_imported:
            st.info("No token-entropy histogram: imported logs carry only scalar metrics.")
        else:
            st.info(
                "No token-entropy histogram for this run: it logged no per-token entropies. `Watch.log_tokens` "
                "writes one per step when it is given the logits or the token entropies."
            )
    with c2:
        quant = {n: v.tr[n] for n in M.ENTROPY_QUANTILES if n in v.tr}
        if quant:
            step_chart(charts.quantile_fan(quant, v.smoothing), "fan", v.x_range, v.changes)
        else:
            st.info("No entropy quantiles (entropy/p10…p99) logged for this run.")


def clip_section(
    tr: dict[str, Trace],
    smoothing: float,
    x_range: tuple[float, float] | None = None,
    changes: charts.ChangeMarks | None = None,
) -> None:
    onpolicy = tr.get(M.CLIP_ONPOLICY)
    low, high, region = tr.get(M.CLIP_LOW_FRAC), tr.get(M.CLIP_HIGH_FRAC), tr.get(M.CLIP_REGION_FRAC)
    if low is None and high is None and onpolicy is not None and onpolicy.last() is not None and onpolicy.last() >= 0.5:
        st.info(
            "Clipping: **N/A — on-policy** (clip/onpolicy = 1). With no old log-probs the importance ratio is 1, "
            "so nothing can be clipped; zero clip fractions here are not a sign of health."
        )
        return
    if low is None and high is None:
        st.info("No clip fractions (clip/low_frac, clip/high_frac) logged for this run.")
        return
    step_chart(charts.clip_chart(low, high, region, smoothing), "clip", x_range, changes)


def drivers_tab(v: RunView) -> None:
    """Clipping, advantages, predicted vs observed ΔH and the covariance drive."""
    tr = v.tr
    c1, c2 = st.columns(2)
    with c1:
        clip_section(tr, v.smoothing, v.x_range, v.changes)
    with c2:
        adv = [(n.split("/")[1], tr[n]) for n in (M.ADV_MEAN, M.ADV_STD, M.ADV_MIN, M.ADV_MAX) if n in tr]
        if M.ADV_FRAC_ZERO_GROUPS in tr:
            adv.append(("share of zero-variance groups", tr[M.ADV_FRAC_ZERO_GROUPS]))
        if len(adv) == 1 and M.ADV_FRAC_ZERO_GROUPS in tr:  # the share alone: say so in the title and axis
            title, y_title = "Advantages: share of zero-variance groups (no learning signal)", "share of groups"
            fig = charts.lines(adv, title, y_title, smoothing=v.smoothing, percent=True)
            step_chart(fig, "adv", v.x_range, v.changes)
        elif adv:
            fig = charts.lines(adv, "Advantages", "advantage (reward units) / share", smoothing=v.smoothing)
            step_chart(fig, "adv", v.x_range, v.changes)
        else:
            st.info("No advantage statistics (adv/*) logged for this run.")
    c1, c2 = st.columns(2)
    with c1:
        src = entropy_name(v.names)
        # the same-batch change the trainer measured (entropy_drift.py) if logged, else the step-to-step change
        observed = tr.get(M.ENTROPY_DELTA_OBS)
        if observed is None and src is not None:
            observed = data.delta(v.root, v.run, v.version, src, v.window, TAB_POINTS)
        if M.COV_PRED_DH in tr or observed is not None:
            step_chart(charts.delta_h_chart(tr.get(M.COV_PRED_DH), observed, v.smoothing), "dh", v.x_range, v.changes)
        else:
            st.info("Not enough entropy points to show its per-step change.")
    with c2:
        cov = [(n, tr[n]) for n in (M.COV_PG_DRIVE, M.COV_LOGP_ADV) if n in tr]
        if cov:
            title = "Covariance drive (positive ⇒ the step spends entropy)"
            fig = charts.lines(cov, title, "covariance (nats)", zero_line=True, smoothing=v.smoothing)
            step_chart(fig, "cov", v.x_range, v.changes)
        else:
            st.info("No covariance terms (cov/pg_drive, cov/logp_adv) logged: they need log-probs and advantages.")


def reward_name(names: list[str]) -> str | None:
    """The reward series to plot against entropy before the detector has named its own (:func:`reward_law`): of
    evaluation pass@1 and the training reward mean, the first the analysis reads
    (:func:`~entropy_watch.analysis.series.analysed`), else the first logged."""
    logged = [n for n in (M.pass_at_k(1), M.REWARD_MEAN) if n in names]
    return next((n for n in logged if analysed(n)), logged[0] if logged else None)


def reward_law(state: RunState | None, cfg: DetectorConfig) -> tuple[str | None, dict[str, Any] | None]:
    """``(series, law)``: the reward series the detector's corroboration layer read at the newest analysed step, and
    the entropy–reward law R = −a·exp(H) + b (Cui et al. 2025) it fitted on that series there, with its ceiling (R at
    H = 0) and headroom (None when it cannot be fitted yet). ``(None, None)`` before the first analysis. The chart
    plots that series, so the fitted curve and its ceiling are of the points drawn under them."""
    if state is None or state.result is None or state.series is None or state.result.prep is None:
        return None, None
    prep = state.result.prep
    if len(prep) == 0:
        return None, None
    i = len(prep) - 1
    lo = max(int(prep.seg_start[i]), i - cfg.window_max + 1)
    flags = corroborate.reward_flags(state.series, prep, i, lo, cfg)
    law = flags.get("law")
    return flags.get("reward_series"), (dict(law) if law else None)


def reward_tab(v: RunView) -> None:
    """Reward vs entropy with the law's ceiling, precision signals and the controller's state."""
    tr = v.tr
    c1, c2 = st.columns(2)
    with c1:
        reward_section(v)
    with c2:
        prec = [(n, tr[n]) for n in (M.RATIO_LOG_MEAN, M.PRECISION_LOGP_GAP_MEAN, M.PRECISION_LOGP_GAP_MAX) if n in tr]
        if prec:
            title, y_title = "Precision signals (bf16 ratio bias)", "log-prob gap / mean log ratio (nats)"
            fig = charts.lines(prec, title, y_title, zero_line=True, smoothing=v.smoothing)
            step_chart(fig, "precision", v.x_range, v.changes)
        else:
            st.info("No precision signals (ratio/log_mean, precision/logp_gap_*) logged for this run.")
    levers = [n for n in CONTROL_LEVERS if n in tr]
    if levers:
        fig = charts.controller_chart({n: t for n, t in tr.items() if n.startswith("control/")}, v.smoothing)
        step_chart(fig, "control", v.x_range, v.changes)
    else:  # a target alone is no controller (the reference trainer's earlier runs logged plain GRPO's H_0 as one)
        st.caption(
            "No entropy controller in this run: none of its levers (control/zeta, control/eps_high, "
            "control/entropy_coef) was logged."
        )


def reward_section(v: RunView) -> None:
    fitted, law = reward_law(v.state, DetectorConfig())
    rname, hname = fitted or reward_name(v.names), entropy_name(v.names)
    if rname is None or hname is None:
        missing = "reward (reward/mean or eval/pass@1)" if rname is None else "entropy"
        st.info(f"No {missing} logged for this run, so there is no reward–entropy view.")
        return
    steps, h, r = data.paired(v.root, v.run, v.version, hname, rname, v.window)
    if steps.size == 0:
        st.info(f"{md(rname)} and {md(hname)} were never logged at the same step in this range.")
        return
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


def tab_names(tab: int, logged: list[str]) -> tuple[str, ...]:
    """The logged series tab number ``tab`` (0, 1, 2 in :data:`TABS`) draws."""
    wanted = set(TAB_NAMES[tab])
    return tuple(n for n in logged if n in wanted or (tab == 2 and n.startswith("control/")))
