"""What the app shows from ``entropy_watch.analysis``: alerts, the current forecast band, the entropy–reward law.

Pure Python (no Streamlit). The detector costs about 0.3 ms per logged step on a fresh run (a 20k-step run takes
~6 s, a 100k-step one ~30 s), so the app never runs it inline: :class:`AnalysisJobs` keeps one incremental
:class:`~entropy_watch.analysis.Analyzer` per run and analyses in a background thread; the page waits a short budget,
then shows the last finished result and says the analysis is catching up. A live refresh then only pays for the new
forecast evaluations (the Analyzer caches them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert, AnalysisResult, Analyzer, DetectorConfig, RunSeries
from entropy_watch.analysis.series import ENTROPY_SOURCES, analysis_meta
from entropy_watch.app import queries as Q

Z80 = 1.2816  # two-sided 80% normal quantile, for the forecast's residual band


def series_from_reader(reader: Q.Queryable, run: str, meta: dict[str, Any]) -> RunSeries | None:
    """The run as :class:`RunSeries` read from the tail reader's memory (what ``RunSeries.from_store`` reads from
    disk); None while the run has no entropy series."""
    names = Q.scalar_names(reader, run)
    src = next((n for n in ENTROPY_SOURCES if n in names), None)
    if src is None:
        return None
    wanted = [n for n in names if n in M.CANONICAL or n == src]
    data = Q.full_series(reader, run, wanted)
    steps, values = data.pop(src)
    edges = meta.get("hist_edges")
    hist = Q.hist_matrix(reader, run, len(edges)) if edges else None
    events = sorted((int(e["step"]), str(e["kind"])) for e in Q.events(reader, run))
    return RunSeries(
        name=run,
        steps=steps,
        entropy=values,
        scalars=data,
        hist=hist,
        hist_edges=np.asarray(edges, dtype=np.float64) if edges else None,
        events=events,
        meta=analysis_meta(meta),
    )


@dataclass
class JobState:
    """The newest finished analysis of a run: ``result`` (None before the first finishes or without entropy),
    ``series`` it was computed on, ``pending`` (a newer analysis is running), ``error`` (one line)."""

    result: AnalysisResult | None = None
    series: RunSeries | None = None
    pending: bool = False
    error: str | None = None
    version: Any = None


@dataclass
class _Job:
    analyzer: Analyzer
    lock: threading.Lock = field(default_factory=threading.Lock)
    state: JobState = field(default_factory=JobState)
    thread: threading.Thread | None = None


class AnalysisJobs:
    """Background, incremental analysis per run; share one instance per store (thread-safe)."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}

    def get(self, run: str, version: Any, build: Callable[[], RunSeries | None], wait_s: float) -> JobState:
        """Analysis of ``run`` at data ``version``; starts it if needed and waits at most ``wait_s`` seconds."""
        with self._lock:
            job = self._jobs.setdefault(run, _Job(Analyzer(self.config)))
        with job.lock:
            if job.state.version == version and job.state.error is None:
                return _copy(job.state, pending=False)
            if job.thread is None or not job.thread.is_alive():
                job.thread = threading.Thread(target=self._work, args=(job, version, build), daemon=True)
                job.thread.start()
            thread = job.thread
        thread.join(wait_s)
        with job.lock:
            return _copy(job.state, pending=job.state.version != version)

    @staticmethod
    def _work(job: _Job, version: Any, build: Callable[[], RunSeries | None]) -> None:
        try:
            series = build()
            result = job.analyzer.analyze(series) if series is not None and len(series) else None
            new = JobState(result=result, series=series, version=version)
        except Exception as exc:  # shown on the page as one line, never a traceback
            new = JobState(error=f"analysis failed: {type(exc).__name__}: {exc}", version=version)
        with job.lock:
            if new.error is not None and job.state.result is not None:  # keep the last good result visible
                new.result, new.series = job.state.result, job.state.series
            job.state = new


def _copy(state: JobState, *, pending: bool) -> JobState:
    return JobState(state.result, state.series, pending, state.error, state.version)


def open_alerts(alerts: list[Alert]) -> list[Alert]:
    """The latest alert of each (detector, kind): what the run's health badge reflects (a detector latches until
    it re-arms, so its newest alert is its current verdict)."""
    latest: dict[tuple[str, str], Alert] = {}
    for a in alerts:
        latest[(a.detector, a.kind)] = a
    return sorted(latest.values(), key=lambda a: a.step)


def health(alerts: list[Alert]) -> str:
    """``ok``, ``info``, ``warning`` or ``critical``: the worst open alert."""
    opened = open_alerts(alerts)
    return max(opened, key=lambda a: a.rank).severity if opened else "ok"


def forecast_band(
    result: AnalysisResult, config: DetectorConfig | None = None, n_points: int = 120
) -> dict[str, Any] | None:
    """The forecast at the newest step as a drawable band: the detector's decay fit (evaluated with ``always_fit``,
    so a healthy run shows its fit too) over its window, extended ahead to the horizon (or the ETA), with an 80%
    band from the window's residual spread (log-space for the log-linear model). ETAs are absolute steps. None
    while the run is too short for a forecast."""
    from entropy_watch.analysis.forecast import evaluate

    prep = result.prep
    if prep is None or len(prep) == 0:
        return None
    f = evaluate(prep, len(prep) - 1, config or DetectorConfig(), always_fit=True) or result.latest_forecast
    if f is None or f.model not in ("exp_asymptote", "log_linear"):
        return None
    in_win = (prep.steps >= f.window_start_step) & (prep.steps <= f.step) & prep.finite
    s_win, h_win = prep.steps[in_win].astype(np.float64), np.maximum(prep.h[in_win], 0.0)
    span = max(float(f.step - f.window_start_step), 1.0)
    ahead = f.horizon_steps if np.isfinite(f.horizon_steps) else span
    if np.isfinite(f.eta_median):
        ahead = max(ahead, 1.1 * f.eta_median)
    ahead = min(ahead, 3.0 * span)
    x = np.linspace(f.window_start_step, f.step + ahead, n_points)
    curve = f.curve(x)
    if f.model == "log_linear":
        resid = np.log(h_win + 1e-6) - np.log(np.maximum(f.curve(s_win), 0.0) + 1e-6)
        resid = resid[np.isfinite(resid)]
        sd = float(np.std(resid)) if resid.size > 2 else 0.0
        lo, hi = curve * np.exp(-Z80 * sd), curve * np.exp(Z80 * sd)
    else:
        resid = h_win - f.curve(s_win)
        resid = resid[np.isfinite(resid)]
        sd = float(np.std(resid)) if resid.size > 2 else 0.0
        lo, hi = np.maximum(curve - Z80 * sd, 0.0), curve + Z80 * sd

    def at(eta: float) -> float | None:
        return float(f.step + eta) if np.isfinite(eta) else None

    return {
        "steps": x,
        "curve": curve,
        "lo": lo,
        "hi": hi,
        "model": f.model,
        "floor": f.floor,
        "p_cross": f.p_cross,
        "eta_step": at(f.eta_median),
        "eta_lo_step": at(f.eta_lo),
        "eta_hi_step": at(f.eta_hi),
        "evaluated_at": f.step,
    }


def reward_law(result: AnalysisResult, series: RunSeries, config: DetectorConfig) -> dict[str, Any] | None:
    """The entropy–reward law R = −a·exp(H) + b (Cui et al. 2025) fitted by the detector's corroboration layer at
    the newest step, with its ceiling (R at H = 0) and headroom; None when it cannot be fitted yet."""
    from entropy_watch.analysis import corroborate

    prep = result.prep
    if prep is None or len(prep) == 0:
        return None
    i = len(prep) - 1
    lo = max(int(prep.seg_start[i]), i - config.window_max + 1)
    flags = corroborate.reward_flags(series, prep, i, lo, config)
    law = flags.get("law")
    return dict(law, reward_series=flags.get("reward_series")) if law else None


def reward_name(names: list[str]) -> str | None:
    """The reward series to plot against entropy: evaluation pass@1 when logged, else the training reward mean."""
    return next((n for n in (M.pass_at_k(1), M.REWARD_MEAN) if n in names), None)
