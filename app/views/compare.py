"""Compare page: chosen runs overlaid on shared axes, aligned by step (e.g. GRPO vs REPO-R vs ADAPO).

``/compare?run=A&run=B`` opens these runs, ``&scale=ref`` as H / H_ref and ``&log=1`` on a log axis; the URL follows
the picker and those two, so a reload, Back or a shared link shows the same runs the same way (a name the store does
not hold is named in a warning). The sidebar's step window and smoothing are the viewer's own, as on every page.
Panels: entropy — in nats or relative to each run's early level H_ref (from its verdict), on a linear or log axis so
one exploding run does not flatten the others — then reward, pass@k and clip fractions. A run without a metric is
listed under the chart instead of failing it. Each run's known change points (a resume, an LR or config change, a
reset) are marked on every panel in the run's colour, as the Run page marks them, and named under the entropy chart.
When the entropy overlay is the session's first chart it goes out alone and the other panels follow
(``app/first_paint.py``). Under the panels: each run's level and health, and a CSV of the panels' series.
"""

from __future__ import annotations

import re

import streamlit as st

from entropy_watch import metrics as M
from entropy_watch.app import charts, data, first_paint, guard, linked, sidebar
from entropy_watch.app import run_panels as P
from entropy_watch.app.display import MAX_NAME_CHARS, NAME_CHARS, fmt_nats, md, short_name
from entropy_watch.monitor import RunState
from entropy_watch.store import RunInfo
from entropy_watch.store.reads import MAX_POINTS, Trace

# A half-width panel's legend: a run's name in at most this many characters (about 7 px each), its middle elided.
HALF_LEGEND_CHARS = NAME_CHARS
# Names of a link's unknown runs quoted at most (a link may hold a thousand): the rest are counted. A comment, not a
# docstring: Streamlit's magic writes a page script's bare strings onto the page.
UNKNOWN_LISTED = 5


def unknown_text(root: str, unknown: list[str]) -> str:
    """The warning for a link's runs the store does not hold: the first :data:`UNKNOWN_LISTED`, each elided to a run
    name's length at most (:func:`short_name`), then how many more; markdown, the names made literal."""
    listed = ", ".join(short_name(n, MAX_NAME_CHARS) for n in unknown[:UNKNOWN_LISTED])
    more = f" and {len(unknown) - UNKNOWN_LISTED:,} more" if len(unknown) > UNKNOWN_LISTED else ""
    return f"Not in the store {md(root)}: {md(listed)}{more}."


settings = sidebar.current()
root = settings.root
st.title("Compare runs")
names = data.run_names(root)
if not names:
    st.info(f"No runs in the store {md(root)} yet.")
    st.stop()
asked = st.query_params.get_all("run")  # /compare?run=A&run=B: a link (or a reload) of these runs
default = [n for n in st.session_state.get("compare_runs", []) if n in names] or names[: min(3, len(names))]
if asked and asked != st.session_state.get("_cmp_from_url"):
    st.session_state["compare_select"] = [n for n in dict.fromkeys(asked) if n in names]  # a link wins
    if unknown := [n for n in dict.fromkeys(asked) if n not in names]:
        st.warning(unknown_text(root, unknown))
elif "compare_select" not in st.session_state or not set(st.session_state["compare_select"]) <= set(names):
    st.session_state["compare_select"] = default
st.session_state["_cmp_from_url"] = asked
# the picker on a row of its own, chips wrapping: every chosen run stays visible
chosen = st.multiselect("Runs", names, key="compare_select", wrap=True)
if list(chosen) != asked:  # the URL names the chosen runs: a reload, a shared link or Back shows the same ones
    if chosen:
        st.query_params["run"] = list(chosen)
    else:
        del st.query_params["run"]
    st.session_state["_cmp_from_url"] = list(chosen)
SCALES = {"ref": "H / H_ref"}  # &scale=ref in the URL; nats (the default) is no parameter
for param, key, value in (
    ("scale", "cmp_scale", lambda q: SCALES.get(q or "", "nats")),
    ("log", "cmp_log", lambda q: q == "1"),
):  # a link's (or a reload's, or Back's) view wins over this session's; then the URL follows the widgets
    if st.query_params.get(param) != st.session_state.get(f"_cmp_{param}_url", None):
        st.session_state[key] = value(st.query_params.get(param))
c2, c3, _ = st.columns([1.4, 1, 3])
scale = c2.radio(
    "Entropy as",
    ["nats", "H / H_ref"],
    key="cmp_scale",
    horizontal=True,
    help="H / H_ref: each run over its own early level, so runs that start apart compare",
)
log_y = c3.toggle("log y", key="cmp_log", help="a log axis keeps one exploding run from flattening the others")
st.session_state["compare_runs"] = list(chosen)
view = {"scale": next((k for k, v in SCALES.items() if v == scale), None), "log": "1" if log_y else None}
for param, text in view.items():
    if text is None:
        st.query_params.pop(param, None)
    elif st.query_params.get(param) != text:
        st.query_params[param] = text
    st.session_state[f"_cmp_{param}_url"] = text


COLOURS = charts.run_colours(chosen)  # one colour per run in every panel, whichever runs a panel lacks


def overlay(
    per_run: dict[str, Trace],
    missing: list[str],
    key: str,
    title: str,
    y_title: str,
    log: bool,
    percent: bool = False,
    changes: dict[str, charts.ChangeMarks] | None = None,
    legend_chars: int | None = None,
) -> None:
    """One panel: ``per_run``'s traces on shared axes, each run's ``changes`` marked in its colour; ``legend_chars``:
    a half-width panel's legend names each run in at most that many characters (the full-width entropy panel above
    names them whole)."""
    if per_run:
        fig = charts.overlay(
            per_run,
            title,
            y_title,
            log_y=log,
            smoothing=settings.smoothing,
            colours=COLOURS,
            percent=percent,
            legend_chars=legend_chars,
        )
        for run, marks in (changes or {}).items():
            if run in per_run and len(marks):
                charts.mark_changes(fig, marks, run=run, colour=COLOURS[run])
        st.plotly_chart(fig, key=key)
        if missing:
            st.caption(f"Not logged by: {md(', '.join(missing))}")
    else:
        st.info(f"None of the chosen runs logged {md(title.lower())}.")


@st.fragment(run_every=settings.run_every)
@guard.panel(root)
def panels() -> None:
    if not chosen:
        st.info("Pick one or more runs above.")
        return
    gen = data.poll(root)
    listed = {r.name for r in data.runs(root, gen)}
    # the reader keeps what it read of a run whose folder has gone: such a run is named, never drawn
    versions = {r: v for r, v in data.versions(root, gen).items() if r in listed}
    if gone := [r for r in chosen if r not in listed]:
        st.warning(f"{md(', '.join(gone))}: no longer in the store {md(root)} (deleted or moved), so not drawn.")
    runs = [r for r in chosen if r in versions]
    data.follow(root, *runs)  # held from the next poll on (read from their files until then)
    if waiting := [r for r in chosen if r in listed and r not in versions]:
        st.caption(f"No metrics yet: {md(', '.join(waiting))}")
    pass_names = sorted(
        {n for r in runs for n in data.scalar_names(root, r, versions[r]) if n.startswith("eval/pass@")},
        key=lambda n: int(re.sub(r"\D", "", n) or 0),
    )
    wanted = (M.ENTROPY_MEAN, M.REWARD_MEAN, M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, *pass_names)
    per = {
        r: data.traces(root, r, versions[r], wanted, settings.window.bounds(versions[r][1]), MAX_POINTS) for r in runs
    }

    marks = {r: P.change_marks(data.change_points(root, r, gen), settings.window.bounds(versions[r][1])) for r in runs}
    marks = {r: m for r, m in marks.items() if len(m)}

    def pick(name: str) -> tuple[dict[str, Trace], list[str]]:
        got = {r: per[r][name] for r in runs if name in per[r]}
        return got, [r for r in runs if r not in got]

    def panel(name: str, key: str, title: str, y_title: str, percent: bool = False) -> None:
        overlay(*pick(name), key, title, y_title, False, percent, marks, HALF_LEGEND_CHARS)

    ent, miss = pick(M.ENTROPY_MEAN)
    if scale == "nats":
        overlay(ent, miss, "cmp_entropy", "Entropy (mean)", charts.NATS_AXIS, log_y, changes=marks)
    else:
        rel, no_ref = {}, []
        for r, tr in ent.items():
            state, _ = data.state(root, r, versions[r])
            ref = state.verdict.reference.value if state is not None and state.verdict is not None else None
            if ref:
                rel[r] = Trace(r, tr.steps, tr.mean / ref, tr.lo / ref, tr.hi / ref, tr.width)
            else:
                no_ref.append(r)
        overlay(rel, miss + no_ref, "cmp_entropy", "Entropy relative to H_ref", "H / H_ref", log_y, changes=marks)
        if no_ref:
            st.caption(f"No H_ref yet (too short or still analysing): {md(', '.join(no_ref))}")
    shown = {r: m for r, m in marks.items() if r in ent}
    if shown:
        st.caption(P.changes_caption(shown))
    first_paint.hold()  # the entropy overlay is drawn on its own when it is the session's first chart
    c1, c2 = st.columns(2)
    with c1:
        panel(M.REWARD_MEAN, "cmp_reward", "Reward (mean)", "reward")
    with c2:
        if pass_names:
            k = st.selectbox("pass@k", pass_names, key="cmp_passk") if len(pass_names) > 1 else pass_names[0]
            panel(k, "cmp_pass", f"Evaluation {k.split('/')[1]}", "pass rate")
        else:
            st.info("None of the chosen runs logged an evaluation pass@k (eval/pass@k).")
    c1, c2 = st.columns(2)
    with c1:
        panel(M.CLIP_HIGH_FRAC, "cmp_clip_high", "Clip-high fraction", "share of tokens", True)
    with c2:
        panel(M.CLIP_LOW_FRAC, "cmp_clip_low", "Clip-low fraction", "share of tokens", True)
    windows = {r: settings.window.bounds(versions[r][1]) for r in runs}
    st.download_button(
        "Download these runs' series (CSV)",
        data=lambda: data.series_csv(root, windows, wanted),
        file_name="entropy_watch-compare.csv",
        mime="text/csv",
        key="cmp_csv",
        on_click="ignore",
        help="every logged point of the panels' metrics (entropy, reward, clip fractions, pass@k) in the steps shown,"
        " one row per run, metric and step; each chart's camera icon saves it as a PNG",
    )
    infos = {i.name: i for i in data.runs(root, gen)}
    now = [level_text(r, data.state(root, r, versions[r])[0], infos.get(r)) for r in runs if r in ent]
    if now:
        st.caption(
            "Entropy level (the verdict's, a rolling median, as on the Run page), the last logged value and the "
            "verdict's health: " + " · ".join(md(t) for t in now)
        )


def level_text(run: str, state: RunState | None, info: RunInfo | None) -> str:
    """One run's entropy now, each number named for what it is: the verdict's level (the same as the Run page's
    card and the Runs table), the newest logged point with its step (noisier: one step's value), then the verdict's
    health (as ``entropy-watch show``: seeds of one config compared, one collapsing, say so here, not only on each
    Run page)."""
    v = state.verdict if state is not None else None
    level = fmt_nats(v.level if v is not None else None)
    last = info.latest.get(M.ENTROPY_MEAN) if info is not None else None
    logged = f"last logged {fmt_nats(last[0])} at step {last[1]:,}" if last is not None else "last logged —"
    health = v.health if v is not None else "analysing…"
    return f"{run}: level {level} nats ({logged}), health {health}"


panels()
linked.link_step_axes()
