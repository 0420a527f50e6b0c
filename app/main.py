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
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import streamlit as st
from starlette.middleware import Middleware

from entropy_watch.app.early import PlotlyEarly

HOME = Path(__file__).resolve().with_name("home.py")


EMPTY_ADDRESS = (
    "entropy_watch app: server.address is empty, and Streamlit then listens on every network interface; pass "
    "--server.address 127.0.0.1 (this machine only) or --server.address 0.0.0.0 (the network, on purpose)"
)


def refused_address() -> str | None:
    """Why the server must not serve, or None. An empty ``server.address`` (``--server.address ""``, a launcher's
    ``--server.address "$HOST"`` with HOST unset, ``address = ""`` in a config file) replaces this app's 127.0.0.1
    and Streamlit binds it as 0.0.0.0: the store and its runs would be open to the network without anyone asking."""
    address = st.get_option("server.address")
    return EMPTY_ADDRESS if address is None or not str(address).strip() else None


@contextlib.asynccontextmanager
async def warm_on_start(_app: Any) -> AsyncIterator[None]:
    """Load the store and start its monitor on a worker thread (the server answers meanwhile); stop them at the end.
    A server bound to every interface by an empty address stops here, before it answers anyone."""
    why = refused_address()
    if why is not None:  # one line, no traceback (an exception here is printed whole by uvicorn), exit status 2
        print(why, file=sys.stderr, flush=True)
        os._exit(2)
    # Imported here, once Streamlit's runtime exists: its cache decorators bind to the runtime's storage.
    from entropy_watch.app import data

    threading.Thread(target=data.warm, name="entropy-watch-warm", daemon=True).start()
    yield
    data.shutdown()


app = st.App(HOME, lifespan=warm_on_start, middleware=[Middleware(PlotlyEarly)])
