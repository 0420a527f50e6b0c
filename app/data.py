"""The app's data access: one cached tail reader per store, cached downsampled queries, background analysis.

* :func:`tail_reader` — ``@st.cache_resource``: one in-memory :class:`~entropy_watch.store.TailReader` per store root
  and server process, shared by every browser tab. It reads Parquet segments only; nothing here ever opens a
  ``.duckdb`` file, so no lock is held on the store (a cached read-only handle would make the next trainer fail to
  open its file, STORE_AND_APP §1.3).
* query functions — ``@st.cache_data`` keyed by ``(root, run, version, window)``, where ``version`` is the run's
  ``(scalar rows, newest step)`` after the latest poll: results recompute exactly when that run's data changes.
* :func:`analysis` — the per-run background detector (``app/insight.py``), waited on for a short budget.

The store root comes from :func:`default_store_root`, resolved when the script runs (never at import).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import streamlit as st

from entropy_watch.app import insight
from entropy_watch.app import queries as Q
from entropy_watch.store import Store, TailReader
from entropy_watch.store.layout import ENV_STORE, default_root

ANALYSIS_WAIT_S = 1.5
"""How long a page waits for a run's analysis before drawing without it (the next refresh picks it up)."""
PAGES_DIR = Path(__file__).resolve().parent / "pages"


def default_store_root(argv: list[str] | None = None) -> str:
    """``--store DIR`` among the script's arguments (``streamlit run app/main.py -- --store DIR``), else
    ``$ENTROPY_WATCH_DIR``, else ``./ew_runs``; as an absolute path."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(args):
        if a == "--store" and i + 1 < len(args):
            return str(Path(args[i + 1]).expanduser().resolve())
        if a.startswith("--store="):
            return str(Path(a.split("=", 1)[1]).expanduser().resolve())
    return str(default_root(os.environ.get(ENV_STORE) or None).resolve())


@st.cache_resource(show_spinner=False, validate=lambda r: Path(r.root).is_dir())
def tail_reader(root: str) -> TailReader:
    """The shared incremental reader of ``root`` (scalars, hist, alerts, events; tokens are read on demand)."""
    return TailReader(root)


@st.cache_resource(show_spinner=False)
def store(root: str) -> Store:
    """One-shot reader for run metadata, heartbeats and the on-demand ``tokens`` table."""
    return Store(root)


@st.cache_resource(show_spinner=False)
def analysis_jobs(root: str) -> insight.AnalysisJobs:
    return insight.AnalysisJobs()


def poll(root: str) -> int:
    """Ingest what was published since the last poll; returns the reader's generation (the cache key)."""
    reader = tail_reader(root)
    reader.poll()
    return reader.generation


@st.cache_data(show_spinner=False, ttl=60, max_entries=64)
def versions(root: str, generation: int) -> dict[str, tuple[int, int]]:
    return Q.run_versions(tail_reader(root))


@st.cache_data(show_spinner=False, ttl=60, max_entries=64)
def runs(root: str, generation: int, tick: int) -> list[dict[str, Any]]:
    """``Store.runs()`` as plain dicts; ``tick`` (a 5-second clock) lets "stalled" appear without new data."""
    return [
        {"name": r.name, "meta": r.meta, "state": r.state, "last_step": r.last_step, "updated_at": r.updated_at}
        for r in store(root).runs()
    ]


def runs_now(root: str, generation: int) -> list[dict[str, Any]]:
    return runs(root, generation, int(time.time() // 5))


@st.cache_data(show_spinner=False, ttl=60, max_entries=64)
def sparklines(root: str, generation: int) -> dict[str, list[float]]:
    return Q.sparklines(tail_reader(root))


@st.cache_data(show_spinner=False, ttl=60, max_entries=64)
def entropy_levels(root: str, generation: int, ref_versions: int) -> dict[str, tuple[float | None, float | None]]:
    return Q.entropy_levels(tail_reader(root), ref_versions)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def run_meta(root: str, run: str, version: Any) -> dict[str, Any]:
    return store(root).run_meta(run)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def scalar_names(root: str, run: str, version: Any) -> list[str]:
    return Q.scalar_names(tail_reader(root), run)


@st.cache_data(show_spinner=False, ttl=300, max_entries=512)
def traces(root: str, run: str, version: Any, names: tuple[str, ...], window: tuple[int, int]) -> dict[str, Q.Trace]:
    return Q.traces(tail_reader(root), run, list(names), window)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def delta(root: str, run: str, version: Any, name: str, window: tuple[int, int]) -> Q.Trace | None:
    return Q.delta_trace(tail_reader(root), run, name, window)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def paired(root: str, run: str, version: Any, x: str, y: str, window: tuple[int, int]) -> tuple[Any, Any, Any]:
    return Q.paired(tail_reader(root), run, x, y, window)


@st.cache_data(show_spinner=False, ttl=300, max_entries=128)
def heatmap(
    root: str, run: str, version: Any, n_bins: int, window: tuple[int, int], max_cols: int = Q.MAX_COLS
) -> Q.Heatmap:
    return Q.heatmap(tail_reader(root), run, n_bins, window, max_cols)


@st.cache_data(show_spinner=False, ttl=300, max_entries=256)
def stored_alerts(root: str, run: str, generation: int) -> list[dict[str, Any]]:
    return Q.stored_alerts(tail_reader(root), run)


@st.cache_data(show_spinner=False, ttl=10, max_entries=32)
def tokens(root: str, run: str, lo: int, hi: int, min_entropy: float, text: str, limit: int) -> pa.Table:
    """Sampled token rows of ``run`` (read on demand, never tailed): the ``limit`` highest-entropy rows with
    ``lo <= step <= hi``, entropy ≥ ``min_entropy`` and ``text`` in the token, plus the other sampled rows of the
    same sequences (their context)."""
    return Q.top_tokens(store(root), run, lo, hi, min_entropy, text, limit)


def analysis(root: str, run: str, version: Any, wait_s: float | None = None) -> insight.JobState:
    """The run's detector results at ``version`` (background; see ``app/insight.py``)."""
    reader = tail_reader(root)

    def build() -> Any:
        return insight.series_from_reader(reader, run, run_meta(root, run, version))

    return analysis_jobs(root).get(run, version, build, ANALYSIS_WAIT_S if wait_s is None else wait_s)


def clear_caches() -> None:
    """Drop every cached reader and result (tests; a changed store root)."""
    st.cache_data.clear()
    st.cache_resource.clear()
