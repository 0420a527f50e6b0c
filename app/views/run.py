"""Run page: one run in depth — the verdict, entropy with its forecast, the per-token distribution, its drivers, the
alerts in order of importance, and the highest-entropy tokens.

``/run?run=NAME`` opens a run directly; a name the store does not hold says so and lists the close names (the URL is
left as it was), and, live, opens the run once the store lists it. Live panels are separate fragments that each poll the
store and redraw only their own part: the header, the entropy chart, the tabs (of which only the open one runs, and
opening one reruns the tabs alone), the alerts. Their queries are cached per (run, data version), so a refresh with
nothing new sends nothing new, and the verdict comes from the background monitor without waiting on it. When the entropy
chart is the session's first chart it goes out alone and the rest follows once the browser can reveal it
(``app/first_paint.py``).
"""

from __future__ import annotations

import difflib

import streamlit as st

from entropy_watch.app import charts, data, first_paint, forecast_chart, guard, linked, sidebar, token_explorer
from entropy_watch.app import run_panels as P
from entropy_watch.app import run_tabs as T
from entropy_watch.app.display import MAX_NAME_CHARS, md, short_name
from entropy_watch.store import RunInfo

LISTED = 10  # runs listed at most on the run-not-found page when no name is close (it says how many there are)

settings = sidebar.current()
root = settings.root
names = data.run_names(root)
asked = st.query_params.get("run") or None  # "/run?run=" names no run: the picker, not "no run named “”"


@st.fragment(run_every=settings.run_every)
def await_run(name: str | None) -> None:
    """Live, on the pages that say a run is not there: the page reruns once the store lists ``name`` (any run when
    None). A link from an alert opened as its trainer starts, or before the app's poll of the store saw the run,
    said "Run not found" until the user reloaded."""
    now = data.run_names(root)
    if (name in now) if name is not None else bool(now):
        st.rerun()


if asked is not None and asked not in names:
    st.title("Run not found")
    st.error(f"There is no run named “{md(short_name(asked, MAX_NAME_CHARS))}” in the store {md(root)}.")
    close = difflib.get_close_matches(asked, names, n=6, cutoff=0.5)
    shown = close or names[:LISTED]
    if close:
        st.markdown("Close names:")
    elif len(names) > len(shown):
        st.markdown(f"Runs in this store: the first {len(shown)} of {len(names):,} by name (All runs lists every one):")
    elif shown:
        st.markdown("Runs in this store:")
    for name in shown:
        st.page_link(data.VIEWS_DIR / "run.py", label=md(name), icon="🔬", query_params={"run": name})
    st.page_link(data.VIEWS_DIR / "runs.py", label="All runs", icon="🗂️")
    await_run(asked)
    st.stop()
if not names:
    st.title("Run")
    st.info(
        f"No runs in the store {md(root)} yet: record one with `entropy_watch.hooks.Watch` in a training loop, "
        "`entropy-watch import LOG` an existing log, or train a small one with `entropy-watch train`."
    )
    await_run(None)
    st.stop()

if asked is not None and asked != st.session_state.get("_run_from_url"):
    st.session_state["run_select"] = asked  # a link was followed: it wins over the last selection
elif st.session_state.get("run_select") not in names:
    st.session_state["run_select"] = st.session_state.get("run") if st.session_state.get("run") in names else names[0]
st.session_state["_run_from_url"] = asked
run = st.selectbox("Run", names, key="run_select")
st.session_state["run"] = run
if asked != run:
    st.query_params["run"] = run
    st.session_state["_run_from_url"] = run

data.follow(root, run)  # its rows held from this poll on: the live tail follows the runs drawn
gen = data.poll(root)
version0 = data.versions(root, gen).get(run)
pending0 = version0 is not None and data.monitor(root).pending(run, version0)
# While paused, a panel whose analysis is still running refreshes itself until the verdict is in.
every = settings.run_every or (1.0 if pending0 else None)


def listed(generation: int) -> RunInfo | None:
    """The run as the store lists it now; None once its folder is gone (deleted or moved while the page is open)."""
    return next((r for r in data.runs(root, generation) if r.name == run), None)


def context() -> tuple[tuple[int, int] | None, list[str], tuple[int, int]]:
    """This tick's data version of the run, its scalar names and the step window; no version once the run left the
    store (the reader still holds what it read of it, which no other surface shows any more)."""
    gen = data.poll(root)
    version = data.versions(root, gen).get(run)
    if version is None or listed(gen) is None:
        return None, [], (0, 0)
    return version, data.scalar_names(root, run, version), settings.window.bounds(version[1])


def changes(window: tuple[int, int]) -> charts.ChangeMarks:
    """The run's known change points in the step window, marked on every step chart."""
    return P.change_marks(data.change_points(root, run, data.poll(root)), window)


@st.fragment(run_every=every)
@guard.panel(root, run)
def head_panel() -> None:
    version, names_logged, _ = context()
    info = listed(data.poll(root))
    st.title(md(run))
    if info is None:
        guard.gone(run, root)
        return
    P.unreadable_files(data.unreadable(root, run), root)
    if version is None:
        st.info(
            "This run has no scalar metrics yet. It appears as soon as the trainer's first segment is published "
            f"(status: {info.state if info else 'unknown'})."
        )
        return
    meta = data.run_meta(root, run, version)
    state, pending = data.state(root, run, version)
    P.header(info, meta, version, state, pending, names_logged)


@st.fragment(run_every=every)
@guard.panel(root, run)
def entropy_panel() -> None:
    version, names_logged, window = context()
    if version is None:
        return
    src = P.entropy_name(names_logged)
    tr = data.traces(root, run, version, (src,), window, 2000) if src else {}
    state, _ = data.state(root, run, version, wait_s=0.0)
    fc = state.verdict.forecast if state is not None and state.verdict is not None else None
    x_range = settings.window.x_range(version[1], forecast_chart.curve_end(fc), forecast_chart.shown_eta(fc))
    P.entropy_section(tr, state, window, settings.smoothing, src is not None, x_range, changes(window))


@st.fragment
@guard.panel(root, run)
def tabs_panel() -> None:
    """The tabs themselves, sent again only when one is opened or the page reruns; a live tick redraws the open tab's
    content alone (:func:`tab_content`). Why: Streamlit disables every tab (greyed, clicks ignored) while the tabs
    were sent again but their content not yet, and a live refresh with new data held that state while the browser
    redrew the charts it had just received: a tab clicked then stayed closed (a lost click, seen on a loaded box)."""
    if not tabs_ready():  # no scalars yet, or the store failed: a live stand-in polls (this fragment has no tick)
        tabs_await_data()
        return
    for i, tab in enumerate(st.tabs(list(T.TABS), key="run_tab", on_change="rerun")):
        if tab.open:  # only the open tab reads its series and draws
            with tab:
                tab_content(i)


@guard.panel(root, run)
def tabs_ready() -> bool:
    """Whether the run has scalars to draw tabs of; None (and the one-line warning) when the store failed."""
    return context()[0] is not None


@st.fragment(run_every=settings.run_every)
@guard.panel(root, run)
def tabs_await_data() -> None:
    """Stands in for the tabs while the run has no scalars yet, or its store failed (the tabs themselves do not
    refresh): the page reruns once the trainer's first segment is in, or the store reads again, and the tabs appear."""
    if context()[0] is not None:
        st.rerun()


@st.fragment(run_every=settings.run_every)
@guard.panel(root, run)
def tab_content(tab: int) -> None:
    """The open tab (number ``tab`` of :data:`run_tabs.TABS`), refreshed on its own on every live tick."""
    version, names_logged, window = context()
    if version is None:
        return
    meta = data.run_meta(root, run, version)
    info = next((r for r in data.runs(root, data.poll(root)) if r.name == run), None)
    tr = data.traces(root, run, version, T.tab_names(tab, names_logged), window, T.TAB_POINTS)
    view = T.RunView(
        root,
        run,
        version,
        names_logged,
        tr,
        window,
        settings.smoothing,
        meta,
        P.imported(info, meta),
        data.monitor(root).state(run),
        settings.window.x_range(version[1]),
        changes(window),
    )
    (T.distribution_tab, T.drivers_tab, T.reward_tab)[tab](view)


@st.fragment(run_every=every)
@guard.panel(root, run)
def alerts_panel() -> None:
    version, names_logged, window = context()
    if version is None:
        return
    state, pending = data.state(root, run, version, wait_s=0.0)
    gen = data.poll(root)
    stored, actions = data.stored_alerts(root, run, gen), data.actions_taken(root, run, gen)
    has_entropy = P.entropy_name(names_logged) is not None
    P.alerts_section(state, pending, stored, window, has_entropy, (0, version[1]), actions, changes(window))


@guard.panel(root, run)
def tokens_panel() -> None:
    info0 = listed(gen)
    if version0 is not None and info0 is not None:
        token_explorer.tokens_section(root, run, version0[1], P.imported(info0, data.run_meta(root, run, version0)))


head_panel()
st.subheader("Entropy")
entropy_panel()
first_paint.hold()
tabs_panel()
st.subheader("Alerts, most important first")
alerts_panel()
linked.link_step_axes()
st.subheader("Highest-entropy tokens in context")
tokens_panel()
