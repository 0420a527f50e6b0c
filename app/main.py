"""entropy_watch's Streamlit app: runs overview, one run in depth, runs compared.

    streamlit run app/main.py                      # store from $ENTROPY_WATCH_DIR or ./ew_runs
    streamlit run app/main.py -- --store DIR
    entropy-watch app --store DIR                  # the same, bound to 127.0.0.1

This file is the server: an ``st.App`` whose start-up loads the store into memory and starts the background
analysis (``data.warm``), so the first visitor — even one arriving through a deep link such as ``/run?run=NAME`` on a
freshly started server — finds the data read and analysed, and whose page documents start loading Plotly's code
at once (``app/early.py``). ``streamlit run`` detects the ``app`` object and serves
``app/home.py``, the script every visit runs (page config, sidebar, navigation).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import streamlit as st
from starlette.middleware import Middleware

from entropy_watch.app.early import PlotlyEarly

HOME = Path(__file__).resolve().with_name("home.py")


@contextlib.asynccontextmanager
async def warm_on_start(_app: Any) -> AsyncIterator[None]:
    """Load the store and start its monitor on a worker thread (the server answers meanwhile); stop them at the end."""
    # Imported here, once Streamlit's runtime exists: its cache decorators bind to the runtime's storage.
    from entropy_watch.app import data

    threading.Thread(target=data.warm, name="entropy-watch-warm", daemon=True).start()
    yield
    data.shutdown()


app = st.App(HOME, lifespan=warm_on_start, middleware=[Middleware(PlotlyEarly)])
