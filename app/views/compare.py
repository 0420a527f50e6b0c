"""Compare page: chosen runs overlaid on shared axes, aligned by step (e.g. GRPO vs REPO-R vs ADAPO).

Panels: entropy, H/H0 (each run over its own early level, so runs with different starting entropy compare),
reward, pass@k and clip fractions. A run without a metric is listed under the chart instead of failing it.
"""

from __future__ import annotations

import re

import numpy as np
import streamlit as st

from entropy_watch import metrics as M
from entropy_watch.analysis import DetectorConfig
from entropy_watch.app import charts, data, sidebar
from entropy_watch.app.queries import Trace

settings = sidebar.current()
root = settings.root
st.title("Compare runs")
names = [r["name"] for r in data.runs_now(root, data.poll(root))]
if len(names) < 1:
    st.info(f"No runs in the store `{root}` yet.")
    st.stop()
default = [n for n in st.session_state.get("compare_runs", []) if n in names] or names[: min(3, len(names))]
if "compare_select" not in st.session_state or not set(st.session_state["compare_select"]) <= set(names):
    st.session_state["compare_select"] = default
chosen = st.multiselect("Runs", names, key="compare_select")
st.session_state["compare_runs"] = list(chosen)


def overlay(per_run: dict[str, Trace], missing: list[str], key: str, title: str, y_title: str) -> None:
    if per_run:
        st.plotly_chart(charts.overlay(per_run, title, y_title), key=key)
        if missing:
            st.caption(f"Not logged by: {', '.join(missing)}")
    else:
        st.info(f"None of the chosen runs logged {title.lower()}.")


@st.fragment(run_every=settings.run_every)
def panels() -> None:
    if not chosen:
        st.info("Pick one or more runs above.")
        return
    gen = data.poll(root)
    versions = data.versions(root, gen)
    levels = data.entropy_levels(root, gen, DetectorConfig().ref_versions)
    runs = [r for r in chosen if r in versions]
    if len(runs) < len(chosen):
        st.caption(f"No metrics yet: {', '.join(r for r in chosen if r not in versions)}")
    pass_names = sorted(
        {n for r in runs for n in data.scalar_names(root, r, versions[r]) if n.startswith("eval/pass@")},
        key=lambda n: int(re.sub(r"\D", "", n) or 0),
    )
    wanted = (M.ENTROPY_MEAN, M.REWARD_MEAN, M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, *pass_names)
    per = {r: data.traces(root, r, versions[r], wanted, settings.window.bounds(versions[r][1])) for r in runs}

    def pick(name: str) -> tuple[dict[str, Trace], list[str]]:
        got = {r: per[r][name] for r in runs if name in per[r]}
        return got, [r for r in runs if r not in got]

    ent, miss = pick(M.ENTROPY_MEAN)
    c1, c2 = st.columns(2)
    with c1:
        overlay(ent, miss, "cmp_entropy", "Entropy (mean)", charts.NATS_AXIS)
    with c2:
        rel = {}
        for r, tr in ent.items():
            h0 = levels.get(r, (None, None))[1]
            if h0:
                rel[r] = Trace(r, tr.steps, tr.mean / h0, tr.lo / h0, tr.hi / h0, tr.width)
        overlay(rel, [r for r in runs if r not in rel], "cmp_rel", "Entropy relative to H0", "H / H0")
    c1, c2 = st.columns(2)
    with c1:
        overlay(*pick(M.REWARD_MEAN), "cmp_reward", "Reward (mean)", "reward")
    with c2:
        if pass_names:
            k = st.selectbox("pass@k", pass_names, key="cmp_passk") if len(pass_names) > 1 else pass_names[0]
            overlay(*pick(k), "cmp_pass", f"Evaluation {k.split('/')[1]}", "pass rate")
        else:
            st.info("None of the chosen runs logged an evaluation pass@k (eval/pass@k).")
    c1, c2 = st.columns(2)
    with c1:
        overlay(*pick(M.CLIP_HIGH_FRAC), "cmp_clip_high", "Clip-high fraction", "fraction of tokens")
    with c2:
        overlay(*pick(M.CLIP_LOW_FRAC), "cmp_clip_low", "Clip-low fraction", "fraction of tokens")
    last = {r: per[r][M.ENTROPY_MEAN].last() for r in runs if M.ENTROPY_MEAN in per[r]}
    if last:
        st.caption(
            "Latest entropy: "
            + " · ".join(f"{r} {v:.3f} nats" for r, v in last.items() if v is not None and np.isfinite(v))
        )


panels()
