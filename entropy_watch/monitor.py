"""Monitor: follow a store's runs and analyse each one when its data changes — the one loop under ``entropy-watch
watch`` and the app's background analysis.

    monitor = Monitor(TailReader(root), on_new_alerts=print_alerts)
    monitor.follow(interval_s=10.0)          # the CLI: poll, analyse what changed, call back, sleep (Ctrl-C stops)
    monitor.start(interval_s=2.0)            # the app: the same loop on a daemon thread
    monitor.state(run)                       # the newest finished analysis of a run (:class:`RunState`), no waiting
    monitor.refresh(run, wait_s=0.5)         # analyse one run now if its data changed, waiting at most wait_s

Each pass polls the reader (a :class:`~entropy_watch.store.TailReader` ingests only new files), reads each run's
change token ``(scalar rows, newest step)`` and analyses only the runs whose token moved, with one incremental
:class:`~entropy_watch.analysis.Analyzer` per run (forecast evaluations are cached, so following a live run costs
the new steps only). Runs a page asked for recently are analysed first. An analysis that fails keeps the last good
result and reports the error as one line; a run without an entropy series yet is "waiting", not an error.

Callbacks (all optional, called on the thread that analysed; keep them quick and never let them raise — an
exception is caught and reported through ``on_error``):

* ``on_new_alerts(run, alerts, verdict)`` — alerts not reported before for this run (by ``Alert.key``), in step
  order, with the run's verdict at that moment. ``entropy-watch watch`` prints them; notifications plug in here.
* ``on_analysis(state)`` — after every finished analysis, with the run's new :class:`RunState` (result and verdict),
  whether or not it raised new alerts; ``watch --notify`` follows recoveries through it.
* ``on_waiting(run, reason)`` — once per run while it has no entropy series yet.
* ``on_error(run, message)`` — an analysis or a callback failed (one line).
"""

from __future__ import annotations

import numbers
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

from entropy_watch.analysis import Alert, AnalysisResult, Analyzer, DetectorConfig, RunSeries
from entropy_watch.analysis.verdict import Verdict
from entropy_watch.errors import NoEntropySeries, RunNotFound, first_line
from entropy_watch.store.query import READ_ERRORS, interrupted
from entropy_watch.store.reads import RunReader

Version = tuple[int, int]
OnNewAlerts = Callable[[str, list[Alert], Verdict | None], None]
OnWaiting = Callable[[str, str], None]
OnError = Callable[[str, str], None]
OnAnalysis = Callable[[Any], None]  # called with the run's new RunState


@dataclass(frozen=True)
class RunState:
    """The newest finished analysis of one run.

    ``version`` the data it saw (scalar rows, newest step); ``series`` what was analysed (None while waiting);
    ``result`` the detector output; ``verdict`` the run's :class:`~entropy_watch.analysis.verdict.Verdict` (health,
    H_ref, the forecast, the ordered alerts: what every surface renders), ``waiting`` why
    there is no analysis yet (no entropy logged), ``error`` one line when the last analysis failed (``result`` is
    then the last good one); ``seconds`` how long the analysis took; ``finished_at`` Unix time. ``trimmed``: a
    monitor with ``keep`` did not keep what was analysed (``series`` None, ``result`` without its prepared arrays
    and with its latest forecast only): the verdict, alerts and notes are whole.
    """

    run: str
    version: Version | None = None
    series: RunSeries | None = None
    result: AnalysisResult | None = None
    verdict: Verdict | None = None
    waiting: str | None = None
    error: str | None = None
    seconds: float = 0.0
    finished_at: float = 0.0
    trimmed: bool = False


def trimmed(st: RunState) -> RunState:
    """``st`` without what grows with the run (module docstring of :class:`Monitor`, ``keep``)."""
    res = st.result
    if res is not None:
        latest = max(res.forecasts) if res.forecasts else None
        res = replace(res, prep=None, forecasts={} if latest is None else {latest: res.forecasts[latest]})
    return replace(st, series=None, result=res, trimmed=True)


_WORKER_ANALYZERS: OrderedDict[str, Analyzer] = OrderedDict()
WORKER_ANALYZERS_KEEP = 16
"""Incremental analyzers a worker process keeps (those of the runs it analysed most recently; each holds the run's
series it saw): a run analysed again after that is analysed whole, to the same result."""


def exit_with_parent() -> None:
    """Initializer of a worker process: end it when the process that started it ends, however that ended.

    A ``ProcessPoolExecutor`` worker outlives a parent that was killed (or stopped without shutting the pool down)
    and waits forever, holding its memory; this watches the parent's sentinel on a daemon thread and exits."""
    import multiprocessing
    import os

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(0)

    threading.Thread(target=watch, name="entropy-watch-parent-watch", daemon=True).start()


def analyse_in_worker(key: str, series: RunSeries, config: DetectorConfig) -> AnalysisResult:
    """One analysis in a worker process, with that process's incremental :class:`Analyzer` for ``key`` (the
    monitor's run): its cached forecast evaluations make a live run's next analysis cost the new steps only."""
    analyzer = _WORKER_ANALYZERS.get(key)
    if analyzer is None or analyzer.config != config:
        analyzer = _WORKER_ANALYZERS[key] = Analyzer(config)
    _WORKER_ANALYZERS.move_to_end(key)
    while len(_WORKER_ANALYZERS) > WORKER_ANALYZERS_KEEP:
        _WORKER_ANALYZERS.popitem(last=False)
    return analyzer.analyze(series)


def _said(exc: BaseException) -> str:
    """An exception in one line: its type and its message's first line (DuckDB's run to several)."""
    return f"{type(exc).__name__}: {first_line(exc)}"


def _check_interval(interval_s: float) -> None:
    """Refuse a polling interval (seconds) that is not a number ≥ 0: a negative or NaN one polls without pause."""
    if isinstance(interval_s, bool) or not isinstance(interval_s, numbers.Real) or not interval_s >= 0:
        raise ValueError(f"interval_s must be a number of seconds >= 0, got {interval_s!r}")


@dataclass
class _Job:
    analyzer: Analyzer
    lock: threading.Lock = field(default_factory=threading.Lock)
    emitted: set[str] = field(default_factory=set)
    worker: threading.Thread | None = None


class Monitor:
    """Follows the runs of ``reader`` (all of them, or ``runs``) and analyses each when its data changes.

    Args:
        reader: a :class:`~entropy_watch.store.reads.RunReader`; a ``TailReader`` (has ``poll``) makes each pass
            cost only the new files.
        runs: follow only these run names, or this one name (None: every run, new ones too).
        config: detector settings.
        on_new_alerts, on_analysis, on_waiting, on_error: see the module docstring.
        pool: run the detector in this executor (a one-process ``ProcessPoolExecutor``: the app uses one so that
            analysing a 100k-step run never holds the GIL its pages render with); None: on the calling thread.
        keep: bound the memory to the runs looked at, not the store (None: keep every run's analysis whole). The
            analysed series and prepared arrays are kept for the ``keep`` runs named by :meth:`hold` most recently
            (the runs a page draws in detail); every other run's state is :func:`trimmed` once analysed (its
            verdict, alerts and notes whole), and a run held whose state was trimmed is analysed again (read again)
            when :meth:`refresh` asks for it. The incremental analyzers are kept for the ``keep`` runs analysed
            most recently (and the runs held): another run's next analysis is a whole one, with the same result.
    """

    def __init__(
        self,
        reader: RunReader,
        runs: Iterable[str] | None = None,
        config: DetectorConfig | None = None,
        *,
        on_new_alerts: OnNewAlerts | None = None,
        on_waiting: OnWaiting | None = None,
        on_error: OnError | None = None,
        on_analysis: OnAnalysis | None = None,
        pool: Executor | None = None,
        keep: int | None = None,
    ) -> None:
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ValueError(f"keep must be a number of runs (1 or more) or None, got {keep!r}")
        self.keep = keep
        self._held: OrderedDict[str, None] = OrderedDict()  # runs whose analysis is kept whole (least recent first)
        self._warm: OrderedDict[str, None] = OrderedDict()  # runs whose incremental analyzer is kept
        self.reader = reader
        self.pool = pool
        self.only = None if runs is None else (runs,) if isinstance(runs, str) else tuple(runs)  # one name: one run
        self.config = config or DetectorConfig()
        self.on_new_alerts = on_new_alerts
        self.on_waiting = on_waiting
        self.on_error = on_error
        self.on_analysis = on_analysis
        self.passes = 0
        self._jobs: dict[str, _Job] = {}
        self._states: dict[str, RunState] = {}
        self._wanted: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading the state --------------------------------------------------------------------------------------
    def state(self, run: str) -> RunState | None:
        """The newest finished analysis of ``run`` (None before the first one finishes)."""
        return self._states.get(run)

    def states(self) -> dict[str, RunState]:
        """Every run's newest finished analysis."""
        return dict(self._states)

    def versions(self) -> dict[str, Version]:
        """The reader's current change token per followed run."""
        v = self.reader.versions()
        return v if self.only is None else {r: x for r, x in v.items() if r in self.only}

    def hold(self, *runs: str) -> None:
        """Keep the whole analysis (series, prepared arrays) of ``runs`` from now on (``keep`` mode; a no-op
        otherwise): the runs a page draws in detail. The runs held least recently beyond ``keep`` are trimmed."""
        if self.keep is None:
            return
        with self._lock:
            for run in runs:
                self._held[run] = None
                self._held.move_to_end(run)
            while len(self._held) > self.keep:
                gone = self._held.popitem(last=False)[0]
                if (st := self._states.get(gone)) is not None and not st.trimmed:
                    self._states[gone] = trimmed(st)

    @property
    def held(self) -> list[str]:
        """The runs whose analysis is kept whole (every run when ``keep`` is None: ``[]`` then means all)."""
        return list(self._held)

    def want(self, run: str) -> None:
        """Move ``run`` to the front of the loop's next pass, starting nothing (the Runs page asks for every run: the
        loop analyses them, first)."""
        self._wanted[run] = time.monotonic()

    # -- one pass and the loop ----------------------------------------------------------------------------------
    def poll(self) -> list[RunState]:
        """Poll the reader and analyse every run whose data changed (runs asked for recently first); returns the
        states produced by this pass."""
        poll = getattr(self.reader, "poll", None)
        if callable(poll):
            poll()
        versions = self.versions()
        for run in self.only or ():
            if run not in versions and run not in self._states:  # named but not there yet: say so once
                self._states[run] = RunState(run, waiting="no data in the store yet", finished_at=time.time())
                self._call(self.on_waiting, run, run, "no data in the store yet")
        order = sorted(versions, key=lambda r: (-self._wanted.get(r, 0.0), r))
        out = []
        for run in order:
            if self._stop.is_set() and self._thread is not None:
                break
            st = self._analyse(run, versions[run])
            if st is not None:
                out.append(st)
        self.passes += 1
        return out

    def follow(self, interval_s: float, iterations: int | None = None) -> int:
        """Run :meth:`poll` every ``interval_s`` seconds, ``iterations`` times (None: until :meth:`stop` or Ctrl-C,
        which propagates as ``KeyboardInterrupt``); returns the number of passes made."""
        _check_interval(interval_s)
        n = 0
        while (iterations is None or n < iterations) and not self._stop.is_set():
            self.poll()
            n += 1
            if iterations is None or n < iterations:
                self._stop.wait(interval_s)
        return n

    def start(self, interval_s: float) -> Monitor:
        """Run :meth:`follow` on a daemon thread (idempotent); returns self."""
        _check_interval(interval_s)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._loop, args=(interval_s,), name="entropy-watch-monitor", daemon=True
                )
                self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop started by :meth:`start` and wait, at most ``timeout_s`` in all, for the analyses in flight
        — the loop's and the workers :meth:`refresh` started — so the reader can be closed after it: closing a
        DuckDB connection while a worker's query runs on it raises (seen as a flaky app-test teardown)."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            workers = [job.worker for job in self._jobs.values() if job.worker is not None]
        for thread in [self._thread, *workers]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # a listing error must not end the app's background analysis
                self._report("*", f"monitor pass failed: {_said(exc)}")
            self._stop.wait(interval_s)

    # -- one run ------------------------------------------------------------------------------------------------
    def refresh(self, run: str, wait_s: float = 0.0, version: Version | None = None) -> RunState | None:
        """Analyse ``run`` now if its data moved past what was analysed (on a worker thread, so a page never waits
        longer than ``wait_s``); returns the newest finished state. Also moves ``run`` to the front of the loop."""
        self._wanted[run] = time.monotonic()
        if version is None:
            version = self.versions().get(run)
        st = self._states.get(run)
        if version is None or (st is not None and st.version == version and not self._restore(st)):
            return st
        job = self._job(run)
        with self._lock:
            if job.worker is None or not job.worker.is_alive():
                job.worker = threading.Thread(target=self._analyse, args=(run, version), daemon=True)
                job.worker.start()
            worker = job.worker
        if wait_s > 0:
            worker.join(wait_s)
        return self._states.get(run)

    def pending(self, run: str, version: Version | None) -> bool:
        """True while the newest data of ``run`` (``version``) has not been analysed yet."""
        st = self._states.get(run)
        return version is not None and (st is None or st.version != version)

    def _restore(self, st: RunState) -> bool:
        """Whether ``st`` was trimmed but its run is held now: its analysis is made again, whole."""
        return st.trimmed and st.run in self._held

    def _keep(self, run: str, st: RunState, job: _Job) -> RunState:
        """``keep`` mode: ``st`` trimmed unless ``run`` is held; the analyzers of the runs analysed least recently
        beyond ``keep`` (not held) are dropped (the caller holds the run's job lock)."""
        if self.keep is None:
            return st
        with self._lock:
            self._warm[run] = None
            self._warm.move_to_end(run)
            cold = [r for r in self._warm if r not in self._held][: max(0, len(self._warm) - self.keep)]
            for r in cold:
                del self._warm[r]
                if r != run and (other := self._jobs.get(r)) is not None:
                    other.analyzer = Analyzer(self.config)  # its next analysis is whole: the same result
            held = run in self._held
        if run in cold:
            job.analyzer = Analyzer(self.config)
        return st if held else trimmed(st)

    def _job(self, run: str) -> _Job:
        with self._lock:
            job = self._jobs.get(run)
            if job is None:
                job = self._jobs[run] = _Job(Analyzer(self.config))
            return job

    def _failed(self, run: str, version: Version, old: RunState | None, msg: str) -> RunState:
        """Record that ``run`` at ``version`` could not be analysed: one line on the page / terminal, never a
        traceback (nor a thread that dies, leaving the page waiting); the last result is kept."""
        base = old if old is not None else RunState(run)
        st = replace(base, version=version, error=msg, finished_at=time.time())
        self._states[run] = st
        self._report(run, msg)
        return st

    def _analyse(self, run: str, version: Version) -> RunState | None:
        """Analyse ``run`` at ``version`` unless that was done; one analysis per run at a time."""
        job = self._job(run)
        with job.lock:
            old = self._states.get(run)
            restore = old is not None and old.version == version and self._restore(old)
            if old is not None and old.version == version and not restore:
                return None
            t0 = time.perf_counter()
            try:
                series = RunSeries.from_reader(self.reader, run)
            except RunNotFound:
                return None
            except NoEntropySeries as e:
                st = RunState(run, version, waiting=str(e), finished_at=time.time())
                self._states[run] = st
                if old is None or old.waiting is None:
                    self._call(self.on_waiting, run, run, str(e))
                return st
            except READ_ERRORS as exc:  # what the store holds could not be read: the same one line as below
                if interrupted(exc):  # Ctrl-C during a query: it stops `watch`
                    raise
                return self._failed(run, version, old, f"reading the run failed: {_said(exc)}")
            try:
                if self.pool is not None:
                    key = f"{getattr(self.reader, 'root', '')}\0{run}"
                    result = self.pool.submit(analyse_in_worker, key, series, self.config).result()
                else:
                    result = job.analyzer.analyze(series)
                verdict = result.verdict
            except Exception as exc:
                return self._failed(run, version, old, f"analysis failed: {_said(exc)}")
            st = RunState(run, version, series, result, verdict, None, None, time.perf_counter() - t0, time.time())
            st = self._states[run] = self._keep(run, st, job)
            if restore:  # the same data analysed again to hold it whole: nothing new to tell
                return st
            new = [a for a in result.alerts if a.key not in job.emitted]
            job.emitted.update(a.key for a in new)
            if new:
                self._call(self.on_new_alerts, run, run, new, verdict)
            self._call(self.on_analysis, run, st)
            return st

    def _call(self, fn: Callable[..., None] | None, run: str, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception as exc:
            self._report(run, f"callback {getattr(fn, '__name__', fn)!s} failed: {_said(exc)}")

    def _report(self, run: str, message: str) -> None:
        if self.on_error is not None:
            try:
                self.on_error(run, message)
            except Exception:  # the error reporter itself failed: nothing left to tell
                pass
