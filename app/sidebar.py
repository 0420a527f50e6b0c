"""The sidebar shared by every page: store path, live toggle and refresh interval, step range, smoothing.

Widgets live here, outside the live fragments (a widget inside a ``run_every`` fragment would be rebuilt on every
tick). The values are returned as one :class:`Settings`; pages pass ``settings.run_every`` to ``st.fragment``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from entropy_watch.app import data
from entropy_watch.app.display import Window, md
from entropy_watch.store.fs import is_uri
from entropy_watch.store.layout import default_root

INTERVALS_S: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
DEFAULT_INTERVAL_S = 2.0
_HANDOFF = "_ew_settings"
WINDOW_MODES: tuple[str, ...] = ("all steps", "last N steps", "step range")


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose. ``root`` is an absolute store path; ``run_every`` is None when paused."""

    root: str
    live: bool
    interval_s: float
    window: Window
    smoothing: float = 0.0

    @property
    def run_every(self) -> float | None:
        return self.interval_s if self.live else None


def current() -> Settings:
    """The settings ``app/home.py`` drew in this script run, or (a page run on its own, as ``streamlit run
    app/views/run.py`` or AppTest does) the sidebar drawn now."""
    settings = st.session_state.pop(_HANDOFF, None)
    return settings if isinstance(settings, Settings) else render()


def hand_over(settings: Settings) -> None:
    """Called by ``app/home.py`` before the page runs: the page's :func:`current` picks these up."""
    st.session_state[_HANDOFF] = settings


def render() -> Settings:
    """Draw the sidebar and return the settings."""
    with st.sidebar:
        st.markdown("### entropy_watch")
        raw = st.text_input(
            "Store",
            value=data.default_store_root(),
            key="store_root",
            help="Store root folder (ENTROPY_WATCH_DIR, or `--store` after `--`).",
        )
        root = str(default_root(raw.strip() or ".").resolve())  # a folder made absolute; an s3:// URI as given
        if not is_uri(root) and not Path(root).is_dir():
            st.caption(f"{md(root)} does not exist yet; runs appear here once a trainer writes to it.")
        live = st.toggle("Live updates", value=True, key="live", help="Poll the store for new data.")
        interval = st.select_slider(
            "Refresh every (s)",
            options=list(INTERVALS_S),
            value=DEFAULT_INTERVAL_S,
            key="interval_s",
            disabled=not live,
        )
        mode = st.radio("Steps shown", WINDOW_MODES, key="window_mode", horizontal=False)
        window = Window()
        if mode == "last N steps":
            n = st.number_input("N", min_value=10, value=1000, step=100, key="window_last")
            window = Window(last=int(n))
        elif mode == "step range":
            lo = st.number_input("from step", min_value=0, value=0, step=100, key="window_lo")
            hi = st.number_input("to step", min_value=0, value=100_000, step=100, key="window_hi")
            window = Window(lo=int(min(lo, hi)), hi=int(max(lo, hi)))
        smoothing = st.slider(
            "Smoothing",
            min_value=0.0,
            max_value=0.99,
            value=0.0,
            step=0.01,
            key="smoothing",
            help="Exponential moving average of the drawn lines, as in TensorBoard (0 = off); the raw line stays "
            "faint underneath. The detector always reads the raw data.",
        )
        if st.button("Refresh now", key="refresh_now", width="stretch"):
            st.rerun()
        st.caption("Entropy in nats per token at the sampling temperature; x axes in optimizer steps.")
    return Settings(root=root, live=bool(live), interval_s=float(interval), window=window, smoothing=float(smoothing))
