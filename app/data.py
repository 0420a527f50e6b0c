"""The app's data access: one warm reader and one background monitor per store, and cached display queries.

* :func:`reader` / :func:`monitor` — one in-memory :class:`~entropy_watch.store.TailReader` per store root and
  server process, shared by every browser tab (it holds the rows of the runs the pages draw, :func:`follow`, and
  an index of every run's segments), and one :class:`~entropy_watch.monitor.Monitor` on it that analyses
  each run in the background whenever its data changes (the same loop as ``entropy-watch watch``), in one worker
  process (:func:`analysis_pool`) so the analysis never competes with the pages for the GIL. ``app/main.py``
  starts both when the server starts (:func:`warm`), so the first visitor finds the store loaded and analysed.
  Nothing here ever opens a ``.duckdb`` file, so no lock is held on the store (STORE_AND_APP §1.3).
* query functions — ``@st.cache_data`` keyed by ``(root, run, version, …)``, where ``version`` is the run's change
  token ``(scalar rows, newest step)``: results recompute exactly when that run's data changes, and a live refresh
  with nothing new costs dictionary lookups only.
* :func:`state` — the run's newest verdict from the monitor; a page waits at most a short budget for it.

The store root comes from :func:`default_store_root`, resolved when called (never at import).
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import streamlit as st

from entropy_watch import metrics as M
from entropy_watch.analysis import changes
from entropy_watch.monitor import Monitor, RunState, exit_with_parent
from entropy_watch.store import RunInfo, TailReader, quarantine
from entropy_watch.store.fs import is_uri
from entropy_watch.store.layout import ENV_STORE, default_root
from entropy_watch.store.reads import Heatmap, Trace

ANALYSIS_WAIT_S = 0.4
"""How long a page waits for a run's verdict before drawing without it (it shows on the next refresh)."""
MONITOR_INTERVAL_S = 2.0
"""Seconds between the background monitor's passes over the store."""
KEEP_RUNS = 8
"""Runs whose rows the shared reader holds: the ones the Run and Compare pages drew most recently (every other run is
read from its files: the reader's memory is bounded by the runs looked at, not by the store, store/tail.py)."""
SPARK_NAMES = (M.ENTROPY_MEAN,)
"""Scalars whose points the shared reader keeps for every run (the Runs page's sparklines: drawn from memory, not
from every run's files)."""
POLL_MIN_S = 0.25
"""A page's poll of the reader is skipped when another one happened this recently (several fragments tick at once)."""
VIEWS_DIR = Path(__file__).resolve().parent / "views"

_lock = threading.Lock()
_readers: dict[str, TailReader] = {}
_monitors: dict[str, Monitor] = {}
_polled: dict[str, float] = {}
_pool: ProcessPoolExecutor | None = None


def default_store_root(argv: list[str] | None = None) -> str:
    """``--store DIR`` among the script's arguments (``streamlit run app/main.py -- --store DIR``), else
    ``$ENTROPY_WATCH_DIR``, else ``./ew_runs``; as an absolute path."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(args):
        if a == "--store" and i + 1 < len(args):
            return str(default_root(args[i + 1]).resolve())  # an s3:// URI stays a URI
        if a.startswith("--store="):
            return str(default_root(a.split("=", 1)[1]).resolve())
    return str(default_root(os.environ.get(ENV_STORE) or None).resolve())


# -- the shared reader and monitor (process-wide, like st.cache_resource, but reachable from the server start) -------
def reader(root: str) -> TailReader:
    """The shared incremental reader of ``root`` (scalars, hist, alerts, events; tokens are read on demand)."""
    with _lock:
        r = _readers.get(root)
        if r is None:
            r = _readers[root] = TailReader(root, keep=KEEP_RUNS, sparks=SPARK_NAMES)
        return r


def follow(root: str, *runs: str) -> None:
    """Hold the rows of ``runs`` (the runs a page draws) in the shared reader from its next poll on, and their whole
    analysis (series, prepared arrays) in the monitor."""
    reader(root).follow(*runs[-KEEP_RUNS:])
    monitor(root).hold(*runs[-KEEP_RUNS:])


def analysis_pool() -> ProcessPoolExecutor:
    """The one worker process the monitors analyse in (a 100k-step analysis takes seconds of CPU: in the server's
    own process it would hold the GIL the pages render with). Made on first use, remade if it died."""
    global _pool
    with _lock:
        if _pool is None or getattr(_pool, "_broken", False):
            _pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent
            )
        return _pool


def monitor(root: str) -> Monitor:
    """The background analysis of ``root``'s runs, started on first use."""
    with _lock:
        m = _monitors.get(root)
    if m is None:
        m = Monitor(reader(root), pool=analysis_pool(), keep=KEEP_RUNS)
        with _lock:
            m = _monitors.setdefault(root, m)
    if getattr(m.pool, "_broken", False):
        m.pool = analysis_pool()
    return m.start(MONITOR_INTERVAL_S)


def warm(root: str | None = None) -> None:
    """Load the store into memory and start analysing it (``app/main.py`` calls this when the server starts)."""
    r = reader(root or default_store_root())
    r.poll()
    monitor(str(r.root))


def _stop_monitors() -> None:
    with _lock:
        monitors = list(_monitors.values())
        _monitors.clear()
    for m in monitors:
        m.stop()


def shutdown() -> None:
    """Stop the monitors and the analysis worker (the server is stopping)."""
    global _pool
    _stop_monitors()
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def poll(root: str) -> int:
    """Ingest what was published since the last poll; returns the reader's generation."""
    r = reader(root)
    now = time.monotonic()
    if now - _polled.get(root, -1e9) >= POLL_MIN_S:
        _polled[root] = now
        r.poll()
    return r.generation


def clear_caches() -> None:
    """Stop the monitors, close the readers, drop every cached result (tests; a changed store root)."""
    _stop_monitors()
    with _lock:
        readers = list(_readers.values())
        _readers.clear()
        _polled.clear()
    for r in readers:
        r.close()
    st.cache_data.clear()
    st.cache_resource.clear()


# -- cached queries -------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, ttl=60, max_entries=64)
def versions(root: str, generation: int) -> dict[str, tuple[int, int]]:
    """``run -> (scalar rows, newest step)``: the per-run cache key."""
    return reader(root).versions()


@st.cache_data(show_spinner=False, ttl=60, max_entries=64)
def _runs(root: str, generation: int, tick: int) -> list[RunInfo]:
    return reader(root).runs()


def runs(root: str, generation: int) -> list[RunInfo]:
    """Every run of the store; a 5-second clock lets "stalled" appear without new data."""
    return _runs(root, generation, int(time.time() // 5))


def run_names(root: str) -> list[str]:
    """Names of the store's runs, sorted."""
    return [r.name for r in runs(root, poll(root))]


@st.cache_data(show_spinner=False, ttl=60, max_entries=64)
def sparklines(root: str, generation: int, name: str) -> dict[str, list[float]]:
    return reader(root).sparklines(name)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def run_meta(root: str, run: str, version: Any) -> dict[str, Any]:
    return reader(root).run_meta(run)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def scalar_names(root: str, run: str, version: Any) -> list[str]:
    return reader(root).scalar_names(run)


@st.cache_data(show_spinner=False, ttl=300, max_entries=512)
def traces(
    root: str, run: str, version: Any, names: tuple[str, ...], window: tuple[int, int], max_points: int
) -> dict[str, Trace]:
    return reader(root).downsampled(run, list(names), window, max_points)


CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell a spreadsheet would run as a formula when it starts so (a run named ``+cmd``): written after a "'"."""


def series_csv(root: str, windows: dict[str, tuple[int, int]], names: tuple[str, ...]) -> str:
    """The Compare page's download: every logged point (full resolution, not the charts' downsampled buckets) of
    each metric among ``names`` of each run in ``windows`` (run -> the step window shown), as CSV rows ``run,
    metric, step, value`` in the runs' order. Made when the button is clicked (a callable's result): never per tick."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["run", "metric", "step", "value"])

    def cell(text: str) -> str:
        return "'" + text if text.startswith(CSV_FORMULA_STARTS) else text

    for run, (lo, hi) in windows.items():
        got = reader(root).series_many(run, list(names))
        for name in names:
            if name not in got:
                continue
            steps, values = got[name]
            inside = (steps >= lo) & (steps <= hi)
            rows = zip(steps[inside].tolist(), values[inside].tolist(), strict=True)
            w.writerows((cell(run), cell(name), int(s), repr(float(v))) for s, v in rows)
    return out.getvalue()


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def delta(root: str, run: str, version: Any, name: str, window: tuple[int, int], max_points: int) -> Trace | None:
    return reader(root).delta(run, name, window, max_points)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def paired(
    root: str, run: str, version: Any, x: str, y: str, window: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return reader(root).paired(run, x, y, window)


@st.cache_data(show_spinner=False, ttl=300, max_entries=128)
def heatmap(root: str, run: str, version: Any, n_bins: int, window: tuple[int, int], max_cols: int) -> Heatmap:
    return reader(root).heatmap(run, n_bins, window, max_cols)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def stored_alerts(root: str, run: str, generation: int) -> list[dict[str, Any]]:
    return reader(root).alerts(run)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def actions_taken(root: str, run: str, generation: int) -> list[dict[str, Any]]:
    """The run's ``action`` events (what an ``on_alert`` rule did: checkpoint, stop, a callable), by step; each row
    ``step`` plus its JSON payload's fields (``rule``, ``alert``, ``actions``, ``did``). A payload that is not a JSON
    object is kept as ``{"did": [text]}`` (shown as data, never dropped). The payload is data a store's writer chose:
    ``step`` is the row's own (a payload's "step" never replaces it), ``alert`` a dict ({} otherwise), ``did`` and
    ``actions`` lists (a single value becomes a one-item list), so the page never fails on what a log says."""
    out = []
    for row in reader(root).events(run):
        if row["kind"] == M.EVENT_ACTION:
            payload = changes.event_payload(row["payload"])
            if payload is None:
                payload = {"did": [str(row["payload"])]}
            for key in ("did", "actions"):
                if key in payload and not isinstance(payload[key], list):
                    payload[key] = [payload[key]]
            if not isinstance(payload.get("alert", {}), dict):
                payload["alert"] = {}
            out.append({**payload, "step": int(row["step"])})
    return out


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def change_points(root: str, run: str, generation: int) -> list[dict[str, Any]]:
    """The run's known change points, by step: its events of a kind in
    :data:`~entropy_watch.analysis.changes.KNOWN_CHANGE_KINDS` (a resume, an LR or config change, a reset), where the
    analysis explains a jump of entropy instead of alerting (and, but for a resume, restarts its baselines):
    :func:`~entropy_watch.analysis.changes.change_points`."""
    return changes.change_points(reader(root).events(run))


@st.cache_data(show_spinner=False, ttl=10, max_entries=32)
def tokens(
    root: str, run: str, window: tuple[int, int], min_entropy: float, text: str, limit: int, spread: bool
) -> pa.Table:
    """Sampled token rows of ``run`` (read from disk on demand, never tailed); see ``RunReader.top_tokens``."""
    return reader(root).top_tokens(run, window, min_entropy=min_entropy, text=text, limit=limit, spread=spread)


def unreadable(root: str, run: str | None = None) -> dict[str, str]:
    """The data files under ``root`` (of ``run`` when given) that this server found unreadable (truncated, not
    Parquet, refused) and leaves out of every read and verdict (:mod:`~entropy_watch.store.quarantine`): path -> why,
    as ``entropy-watch alerts`` reports them. A local file deleted or replaced since is no longer listed."""
    base = root.rstrip("/") + "/"
    inside = f"/run={run}/" if run is not None else "/"
    return {
        path: why
        for path, why in quarantine.found().items()
        if path.startswith(base)
        and inside in path[len(base) - 1 :]
        and (is_uri(path) or quarantine.is_quarantined(Path(path)))
    }


# -- the verdict ----------------------------------------------------------------------------------------------------
def state(root: str, run: str, version: Any, wait_s: float | None = None) -> tuple[RunState | None, bool]:
    """The run's newest analysis from the background monitor, asking it to analyse ``run`` first; the first time,
    waits at most ``wait_s`` (default :data:`ANALYSIS_WAIT_S`) for it. Returns ``(state, pending)`` where
    ``pending`` says the newest data is not analysed yet."""
    m = monitor(root)
    wait = ANALYSIS_WAIT_S if wait_s is None else wait_s
    old, held = m.state(run), run in m.held
    if not held and (old is not None or wait <= 0):
        # A run no page draws in detail (the Runs page asks for every run): the background loop analyses it, first
        # in its next pass; no analysis per run started here (60 runs on a cold server: 60 threads reading every
        # run's files beside the page).
        m.want(run)
        return old, m.pending(run, version)
    # Only the first verdict is waited for (or a held run's whole analysis, trimmed while no page drew it): later, a
    # live tick shows the last verdict at once (a panel that waits longer than ~0.5 s fades while it reruns) and the
    # next tick brings the new one.
    first = old is None or (old.trimmed and held)
    st_ = m.refresh(run, wait if first else 0.0, version)
    return st_, m.pending(run, version)
