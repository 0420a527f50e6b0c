"""The script every visit runs: page config, the shared sidebar, then the page chosen in the navigation.

Pages are plain scripts in ``app/views/`` loaded by path (so they work from a checkout and from the installed
package alike). The folder is deliberately not called ``pages/``: Streamlit would list a ``pages/`` folder as its own
navigation and serve ``/run`` from ``pages/run.py`` directly on a fresh server, skipping this script's page config
(narrow layout, a raw "main / compare / run / runs" menu). ``AppTest.from_file("app/home.py")`` runs it in tests.
"""

from __future__ import annotations

import streamlit as st

from entropy_watch.app import data, sidebar

st.set_page_config(page_title="entropy_watch", page_icon="📉", layout="wide")

# The default page is served at "/" whatever its url_path (which it still reserves), so "/runs" is a hidden page that
# forwards there: an old or typed link to /runs opens the runs overview instead of "Page not found".
runs = st.Page(data.VIEWS_DIR / "runs.py", title="Runs", icon="🗂️", url_path="home", default=True)
pages = [
    runs,
    st.Page(data.VIEWS_DIR / "run.py", title="Run", icon="🔬", url_path="run"),
    st.Page(data.VIEWS_DIR / "compare.py", title="Compare", icon="⚖️", url_path="compare"),
    st.Page(lambda: st.switch_page(runs), title="Runs", url_path="runs", visibility="hidden"),
]
page = st.navigation(pages)
settings = sidebar.render()
if settings.run_every:
    # Streamlit fades every element a run has not redrawn yet ~0.5 s into the run: with live updates, where fragments
    # redraw every couple of seconds, a loaded machine (often the one training) showed the header, alerts and charts
    # fading in and out at each tick, though they still showed the newest data. Kept whole while live; Streamlit's
    # running indicator still says a run is under way, and with live updates off a slow rerun the user started fades.
    st.html("<style>[data-stale='true'] {opacity: 1 !important; transition: none !important}</style>")
sidebar.hand_over(settings)
page.run()
