"""entropy_watch's Streamlit app: runs overview, one run in depth, runs compared.

    streamlit run app/main.py                      # store from $ENTROPY_WATCH_DIR or ./ew_runs
    streamlit run app/main.py -- --store DIR
    entropy-watch app --store DIR                  # the same, bound to 127.0.0.1

This entry script draws the shared sidebar and hands over to the page chosen in the navigation. Pages are plain
scripts in ``app/pages/`` loaded by path (so they work from a checkout and from the installed package alike); they
read the store through ``entropy_watch.app.data`` and draw figures from ``entropy_watch.app.charts``.
"""

from __future__ import annotations

import streamlit as st

from entropy_watch.app import data, sidebar

st.set_page_config(page_title="entropy_watch", page_icon="📉", layout="wide")

pages = [
    st.Page(data.PAGES_DIR / "runs.py", title="Runs", icon="🗂️", url_path="runs", default=True),
    st.Page(data.PAGES_DIR / "run.py", title="Run", icon="🔬", url_path="run"),
    st.Page(data.PAGES_DIR / "compare.py", title="Compare", icon="⚖️", url_path="compare"),
]
page = st.navigation(pages)
sidebar.hand_over(sidebar.render())
page.run()
