"""A page's first chart is drawn on its own: the rest of the page is sent once the browser can show that chart.

Why (measured in Chromium on a 2-core box: page timelines of WebSocket messages, skeletons and draws): Streamlit
renders each element in its own React ``Suspense`` boundary and loads most element types lazily (Plotly's chart,
every widget, the data frame…), so on a freshly loaded page the first element of each type suspends and shows a
skeleton. React 18 throttles the reveal of suspended boundaries to 500 ms after the last fallback it committed
(``FALLBACK_THROTTLE_MS``) and reveals them together with whatever arrived meanwhile. The run page's entropy chart,
sent first, is the page's first Plotly chart: it stayed a skeleton until the heatmap, the fan and the alert timeline
had arrived and was drawn with them in one ~1 s task. Holding the rest of the page back until that reveal has
happened lets the first chart be drawn alone: at 100k steps, interleaved warm visits drew the first chart 1.1 s sooner
(10 of 10) and the whole page 0.8 s sooner; ``bench_app``'s warm first chart went from 3.8 s to 2.5 s. The Compare
page's entropy overlay (three runs of 20k steps): 0.3–0.5 s sooner (13 of 18 visits), its whole page unchanged.

:func:`hold` is called right after a page's first chart (Run: the entropy chart; Compare: the entropy overlay). It waits
:data:`HOLD_S` only the first time a chart goes out in a browser session — the one time Plotly's component is still to
load and the chart suspends. Every later call returns at once: reruns, live refreshes, and the other pages of the same
session (switching pages keeps the browser tab's loaded code; a reload is a new session).
"""

from __future__ import annotations

import time

import streamlit as st

HOLD_S = 0.6
"""Seconds the rest of a page waits after the session's first chart: React's 500 ms reveal throttle plus the time the
browser takes to receive and commit the chart (tens of ms on one machine)."""

_CHARTED = "_ew_chart_sent"


def hold() -> None:
    """After the first chart of this browser session, wait :data:`HOLD_S`; after any later chart, return at once."""
    if st.session_state.get(_CHARTED):
        return
    st.session_state[_CHARTED] = True
    time.sleep(HOLD_S)
