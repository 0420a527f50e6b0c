"""Live analysis inside the training process: the run's own scalars -> the detector -> notifications and actions.

``Watch(..., notify=..., on_alert=...)`` (and ``attach(trainer, ...)``, which builds a ``Watch``) creates a
:class:`Live`. It taps the recorder, so every scalar, histogram and event the run records is also appended to small
in-memory arrays (numpy, amortised O(1) per value on the recording thread; only the series the detector reads are
kept, never re-read from the store). One daemon thread feeds those arrays to
:class:`entropy_watch.analysis.Analyzer` — incremental: forecasts already evaluated are cached — after every
``every`` new entropy points (or ``interval_s`` seconds after any new point), and hands what changed
(:class:`entropy_watch.notify.Follower`: new alerts, recoveries) to the notifier and the alert actions. New alerts
are also written to the run's ``alerts`` table. A run the store already holds (a training resumed under the same
name) starts from its stored history (:meth:`Live.bind`): its H_ref is the run's, and what that history shows is
already known, so only what changes from there is new.

The training step never waits for it: the tap only appends under a lock, and the analysis thread keeps its share of
wall time under ``max_duty`` (after an analysis that took d seconds it waits at least d·(1/max_duty − 1)), so a long
run's growing analysis cost cannot crowd out the training thread (``benchmarks/bench_hooks.py`` measures the step
time ratio). Failures on the thread are counted in ``hooks/errors`` (``strict=True``: re-raised at the next call
on the training thread); undelivered notifications in ``hooks/notify_errors``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.analysis import AnalysisResult, Analyzer, DetectorConfig, RunSeries
from entropy_watch.analysis.series import ENTROPY_SOURCES, analysis_meta, entropy_source
from entropy_watch.analysis.verdict import standing
from entropy_watch.errors import NoEntropySeries
from entropy_watch.hooks.actions import ACTION_EVENT, CALLBACK_TIMEOUT_S, ActionBook, parse_on_alert
from entropy_watch.notify import Changes, Follower, Notifier, NotifyPolicy, Undelivered, scrub
from entropy_watch.store.schema import check_step

ANALYSIS_INPUTS: tuple[str, ...] = (
    *ENTROPY_SOURCES,
    M.REWARD_MEAN,
    M.pass_at_k(1),
    M.COV_PG_DRIVE,
    M.ADV_FRAC_ZERO_GROUPS,
    M.CLIP_ONPOLICY,
    M.CLIP_HIGH_FRAC,
    M.CLIP_LOW_FRAC,
    M.RATIO_LOG_MEAN,
)
"""The scalars the detector reads (entropy, reward and the corroborating signals of analysis/corroborate.py)."""


_HIST = "<hist>"  # the histogram buffer's key among the seeded counts (no scalar is named so: ANALYSIS_INPUTS)

LIVE_ARGS: tuple[str, ...] = ("notify", "on_alert", "detector", "app_url", "live")
"""``Watch`` arguments that configure the live analysis (:meth:`Live.build`)."""


@dataclass(frozen=True)
class LiveOptions:
    """How often the in-process analysis runs and how notifications are sent."""

    every: int = 1
    """Analyse after this many new entropy points (the duty cap may make it wait longer)."""
    interval_s: float = 30.0
    """... or this long after the last analysis when other new points (reward, ...) arrived."""
    max_duty: float = 0.05
    """Share of wall time the analysis thread may use at most."""
    write_alerts: bool = True
    """Write new alerts to the run's ``alerts`` table (what fired, for the post-mortem)."""
    notify_policy: NotifyPolicy = field(default_factory=NotifyPolicy)
    """Minimum severity, cooldown, hourly cap, recovery (see :class:`entropy_watch.notify.NotifyPolicy`)."""
    notify_timeout_s: float = 5.0
    """The longest one webhook POST attempt may take, in seconds (connect, send, answer)."""
    notify_retries: int = 3
    """Retries of a failed POST, with exponential backoff."""
    notify_backoff_s: float = 1.0
    """Wait before the first retry; doubled for each later one."""
    close_timeout_s: float = 10.0
    """At close: wait at most this long for the last analysis, ``on_alert`` callbacks and queued notifications."""
    callback_timeout_s: float = CALLBACK_TIMEOUT_S
    """An ``on_alert`` callback still running after this long is reported (``hooks/errors``, one warning)."""

    def __post_init__(self) -> None:
        if self.every < 1 or self.interval_s <= 0 or not 0 < self.max_duty <= 1:
            raise ValueError("LiveOptions: every >= 1, interval_s > 0 and 0 < max_duty <= 1 are required")
        if isinstance(self.notify_policy, Mapping):  # live={"notify_policy": {...}}: checked now, not at the alert
            object.__setattr__(self, "notify_policy", NotifyPolicy(**self.notify_policy))
        if not isinstance(self.notify_policy, NotifyPolicy):
            raise TypeError(
                f"LiveOptions: notify_policy must be a NotifyPolicy (or a dict of its fields), got "
                f"{type(self.notify_policy).__name__}"
            )
        if not (self.notify_timeout_s > 0 and self.notify_retries >= 0 and self.notify_backoff_s >= 0):
            raise ValueError(
                "LiveOptions: notify_timeout_s > 0, notify_retries >= 0 and notify_backoff_s >= 0 are required"
            )
        if not (self.close_timeout_s >= 0 and self.callback_timeout_s > 0):
            raise ValueError("LiveOptions: close_timeout_s >= 0 and callback_timeout_s > 0 are required")


class _Buffer:
    """Append-only (step, value) arrays, or (step, row) for a histogram; prefixes are never modified afterwards, so
    a reader may slice ``[:n]`` while the writer appends."""

    def __init__(self, width: int | None = None) -> None:
        self.width = width
        self.steps = np.empty(64, dtype=np.int64)
        self.values = np.empty((64, width) if width else 64, dtype=np.float64)
        self.n = 0

    def append(self, step: int, value: Any) -> None:
        if self.n == self.steps.size:  # grow into new arrays; a reader keeps the old ones
            cap = max(64, 2 * self.n)
            steps = np.empty(cap, dtype=np.int64)
            values = np.empty((cap, self.width) if self.width else cap, dtype=np.float64)
            steps[: self.n], values[: self.n] = self.steps, self.values
            self.steps, self.values = steps, values
        self.steps[self.n] = step
        self.values[self.n] = value
        self.n += 1

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.steps[: self.n], self.values[: self.n]

    def drop(self, upto: int, step: int) -> int:
        """Leave out the entries among the first ``upto`` whose step is ``step`` or later, into new arrays (a reader
        keeps the old ones: the prefixes it holds are never modified); returns how many of those ``upto`` stay."""
        keep = np.ones(self.n, dtype=bool)
        keep[:upto] = self.steps[:upto] < step
        gone = int((~keep).sum())
        if gone:
            self.steps, self.values = self.steps[: self.n][keep], self.values[: self.n][keep]
            self.n -= gone
        return upto - gone


class LiveAnalyzer:
    """The arrays and the analysis thread of one run.

    Args:
        run: run name.
        config: detector thresholds.
        options: cadence (:class:`LiveOptions`).
        on_changes: ``on_changes(result, changes, newest_step)`` after each analysis (analysis thread).
        on_failure: ``on_failure(where, exc)``, from the analysis thread.
        on_known: ``on_known(result, again)`` with the analysis of a resumed run's stored history (what the
            earlier session raised, and sent; None when none of it stands), before the first analysis of this
            session's points, and again (``again=True``) when a ``resume`` replaced part of it after it was known.
    """

    def __init__(
        self,
        run: str,
        config: DetectorConfig | None,
        options: LiveOptions,
        on_changes: Callable[[AnalysisResult, Changes, int], Any],
        on_failure: Callable[[str, BaseException], Any],
        on_known: Callable[[AnalysisResult | None, bool], Any] | None = None,
    ) -> None:
        self.run = run
        self.options = options
        self.analyzer = Analyzer(config)
        self.follower = Follower(run)
        self._on_changes = on_changes
        self._on_failure = on_failure
        self._on_known = on_known
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._scalars: dict[str, _Buffer] = {}
        self._hist: _Buffer | None = None
        self._edges: np.ndarray | None = None
        self._events: list[tuple[int, str]] = []
        self.meta: dict[str, Any] = {}
        self._new_entropy = 0
        self._new_other = 0
        self._requested = 0  # analyses asked for by flush()
        self._done = 0
        self._newest = -1
        self._closed = False
        self._known: RunSeries | None = None  # a resumed run's stored history, not yet taken as known (seed)
        self._reknow = False  # a resume replaced part of the stored history: take what still stands as known afresh
        self._taken = False  # the stored history was taken as known (the follower holds its alerts)
        self._seeded: dict[str, int] = {}  # per buffer (scalar name, or _HIST): how many first entries the store gave
        self._stored_events: list[tuple[int, str]] = []  # the stored history's events (seed), ahead of _events
        self._said: list[str] = []  # keys of the alerts this session raised (a follower made afresh must not again)
        self._said_cleared: list[str] = []  # ... and of the problems whose recovery it sent
        self.analyses = 0
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._run, name="entropy_watch-live", daemon=True)
        self._thread.start()

    # ---- the recording thread's side: appends only ---------------------------------------------------------------
    def observe(self, step: int, values: Mapping[str, Any]) -> None:
        keep = [(k, v) for k, v in values.items() if k in ANALYSIS_INPUTS]
        if not keep:
            return
        with self._lock:
            for name, v in keep:
                try:
                    x = float(v.item() if hasattr(v, "item") else v)
                except (TypeError, ValueError, OverflowError, RuntimeError):
                    continue
                self._scalars.setdefault(name, _Buffer()).append(step, x)
                if name in ENTROPY_SOURCES:
                    self._new_entropy += 1
                else:
                    self._new_other += 1
            self._newest = max(self._newest, step)
            if self._new_entropy >= self.options.every:
                self._wake.notify()

    def observe_hist(self, step: int, counts: Iterable[int]) -> None:
        row = np.asarray(list(counts), dtype=np.float64)
        with self._lock:
            if self._hist is None:
                self._hist = _Buffer(row.size)
            if row.size == self._hist.width:
                self._hist.append(step, row)

    def observe_event(self, step: int, kind: str) -> None:
        if kind == ACTION_EVENT:
            return
        with self._lock:
            self._events.append((step, str(kind)))
            if kind == "resume":
                self._replace_seeded(int(step))

    def _replace_seeded(self, step: int) -> None:
        """A resume at ``step`` replaced what the stored history (:meth:`seed`) holds at ``step`` or later: a
        trajectory the run no longer has, as the store's readers leave it out
        (:func:`~entropy_watch.store.reads.replaced_sql`). Kept, a run resumed at step 60 from a session that reached
        step 100 was analysed with steps 81-100 of that session after this one's newest point, until it passed them.
        What is known (raised and sent by the earlier session) is then what the history left stands for: taken as
        known in full, a resume from before a collapse that collapsed again the same way found the same alert keys
        already raised and never alerted nor acted (trained on at 0.002 nats). The lock is held."""
        if not self._seeded:  # nothing stored: nothing replaced
            return
        for name, buf in self._scalars.items():
            self._seeded[name] = buf.drop(self._seeded.get(name, 0), step)
        if self._hist is not None:
            self._seeded[_HIST] = self._hist.drop(self._seeded.get(_HIST, 0), step)
        self._stored_events = [(s, k) for s, k in self._stored_events if s < step]
        tops = [int(b.view()[0].max()) for b in self._scalars.values() if b.n]
        self._newest = max(tops, default=-1)
        self._known = self._series(self._seeded)
        self._reknow = self._reknow or self._taken

    def observe_meta(self, run_json: Mapping[str, Any]) -> None:
        meta = analysis_meta(dict(run_json))
        edges = run_json.get("hist_edges")
        with self._lock:
            self.meta = meta
            if edges is not None:
                self._edges = np.asarray(edges, dtype=np.float64)

    def seed(self, stored: RunSeries) -> None:
        """Start from a resumed run's stored history (its entropy under ``stored.entropy_name``): its points go ahead
        of what this session observes (a step logged again keeps the newest value, as in the store), and the next
        analysis first takes what they show as known, neither sent nor acted on again."""
        with self._lock:
            stored_scalars = {stored.entropy_name: (stored.steps, stored.entropy), **stored.scalars}
            for name, (steps, values) in stored_scalars.items():
                if name in ANALYSIS_INPUTS:
                    buf = self._scalars.setdefault(name, _Buffer())
                    for step, value in zip(steps.tolist(), values.tolist(), strict=True):
                        buf.append(step, value)
            if stored.hist is not None and stored.hist_edges is not None:
                self._edges = stored.hist_edges
                for step, row in zip(*stored.hist, strict=True):
                    if self._hist is None:
                        self._hist = _Buffer(row.size)
                    if row.size == self._hist.width:
                        self._hist.append(int(step), row)
            self._seeded = {name: buf.n for name, buf in self._scalars.items()}
            if self._hist is not None:
                self._seeded[_HIST] = self._hist.n
            self._stored_events = [(s, k) for s, k in stored.events if k != ACTION_EVENT]
            self.meta = {**stored.meta, **self.meta}
            self._known = self._series(self._seeded)
            self._newest = max(self._newest, int(stored.steps[-1]) if len(stored) else -1)

    # ---- analysis ------------------------------------------------------------------------------------------------
    def series(self) -> RunSeries | None:
        """What has been observed so far, as the detector's input (None before the first entropy point)."""
        with self._lock:
            return self._series()

    def _series(self, upto: Mapping[str, int] | None = None) -> RunSeries | None:
        """:meth:`series`, the lock held; ``upto``: only the first entries of each buffer (the stored history:
        :attr:`_seeded`) and the stored events."""
        views = {k: b.view() for k, b in self._scalars.items()}
        hist = self._hist.view() if self._hist is not None and self._edges is not None else None
        events = list(self._stored_events)
        if upto is None:
            events += self._events
        else:
            views = {k: (s[: upto.get(k, 0)], v[: upto.get(k, 0)]) for k, (s, v) in views.items()}
            views = {k: sv for k, sv in views.items() if sv[0].size}
            hist = (hist[0][: upto.get(_HIST, 0)], hist[1][: upto.get(_HIST, 0)]) if hist is not None else None
            hist = hist if hist is not None and hist[0].size else None
        src = entropy_source(views)
        if src is None:
            return None
        edges, meta = self._edges, dict(self.meta)
        steps, h = views.pop(src)
        others = {k: v for k, v in views.items() if k not in ENTROPY_SOURCES}
        return RunSeries(
            name=self.run,
            steps=steps,
            entropy=h,
            scalars=others,
            hist=hist,
            hist_edges=edges if hist is not None else None,
            events=sorted(events),
            meta=meta,
            entropy_name=src,
        )

    def analyse_now(self) -> None:
        """One analysis of everything observed, on the calling thread (the live thread, or ``flush``)."""
        with self._lock:
            series = self._series()
            if series is None:
                return
            known, self._known = self._known, None
            again, self._reknow = self._reknow, False
            self._taken = self._taken or known is not None or again
        t0 = time.perf_counter()
        if known is not None or again:  # a resumed run: what its standing history shows was raised by the earlier one
            earlier = self.analyzer.analyze(known) if known is not None else None
            self.follower = Follower(self.run)  # afresh after a resume: the replaced trajectory's alerts are not known
            if earlier is not None:
                self.follower.update(earlier)
            self.follower.mark_said(self._said, self._said_cleared)
            if self._on_known is not None:
                self._on_known(earlier, again)
        result = self.analyzer.analyze(series)
        changes = self.follower.update(result)
        self._said.extend(a.key for a in changes.alerts)
        self._said_cleared.extend(r.key for r in changes.recoveries)
        self.busy_s += time.perf_counter() - t0
        self.analyses += 1
        if changes.alerts or changes.recoveries:
            self._on_changes(result, changes, int(series.steps[-1]))

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Analyse everything observed so far and wait for it (at close; tests). True when done in time."""
        with self._lock:
            if self._closed and not self._thread.is_alive():
                return True
            self._requested += 1
            target = self._requested
            self._wake.notify()
            deadline = time.monotonic() + timeout_s
            while self._done < target and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(left)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """A last analysis of what is left, then stop the thread."""
        self.flush(timeout_s)
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=1.0)

    def _due(self, last_end: float, rest_s: float) -> bool:
        now = time.monotonic()
        if self._requested > self._done:
            return True
        if now - last_end < rest_s:
            return False
        return self._new_entropy >= self.options.every or (
            self._new_entropy + self._new_other > 0 and now - last_end >= self.options.interval_s
        )

    def _run(self) -> None:
        last_end, rest = 0.0, 0.0
        while True:
            with self._lock:
                while not self._closed and not self._due(last_end, rest):
                    wait = max(rest - (time.monotonic() - last_end), 0.0)
                    self._wake.wait(wait if wait > 0 else self.options.interval_s)
                if self._closed and self._requested <= self._done:
                    return
                target = self._requested
                self._new_entropy = self._new_other = 0
            t0 = time.perf_counter()
            try:
                self.analyse_now()
            except Exception as exc:  # noqa: BLE001 - the thread must survive; counted in hooks/errors
                try:
                    self._on_failure("live analysis", exc)
                except Exception:  # noqa: BLE001 - strict: the Live re-raises it on the training thread
                    pass
            took = time.perf_counter() - t0
            last_end = time.monotonic()
            rest = took * (1.0 / self.options.max_duty - 1.0)
            with self._lock:
                self._done = max(self._done, target)
                self._wake.notify_all()


class Live:
    """What ``Watch`` holds when live analysis is on: the analyser, the notifier and the alert actions.

    Built by :meth:`Live.build` from ``Watch``'s arguments (validated there, before anything is written), bound to
    the recorder by :meth:`bind`. ``watch.live`` exposes it; ``watch.should_stop`` reads :attr:`actions`.
    """

    def __init__(
        self,
        notifier: Notifier | None,
        rules: list[Any],
        config: DetectorConfig | None,
        options: LiveOptions,
    ) -> None:
        self.notifier = notifier
        self.rules = rules
        self.config = config
        self.options = options
        self.actions: ActionBook | None = None
        self.analyzer: LiveAnalyzer | None = None
        self.alerts: list[Any] = []  # every alert found live, in the order found
        self._watch_ref: weakref.ref[Any] | None = None  # the Watch, held weakly (it is collected when unreferenced)
        self._held: Any = None  # ... and strongly while it closes (:meth:`hold`)
        self._strict_exc: BaseException | None = None
        self._closing = False  # close() began: an alert found now is recorded and notified, not acted on
        self._closed = False

    @classmethod
    def build(
        cls,
        *,
        notify: Any = None,
        on_alert: Any = None,
        detector: DetectorConfig | None = None,
        app_url: str | None = None,
        live: LiveOptions | Mapping[str, Any] | bool | None = None,
        quiet: bool = False,
    ) -> Live | None:
        """A :class:`Live` for ``Watch``'s arguments, or None when nothing asks for live analysis. Bad specs raise
        one-line errors (:class:`~entropy_watch.notify.NotifyConfigError`,
        :class:`~entropy_watch.hooks.actions.ActionSpecError`) here, before training starts. ``quiet``: only check
        them (``EntropyWatchCallback``, whose ``Watch`` builds the one that runs, and warns)."""
        if not (live is None or isinstance(live, bool | LiveOptions | Mapping)):
            raise TypeError(f"live must be a LiveOptions, a dict of its fields, True, False or None, got {live!r}")
        if live is False:
            given = [name for name, v in (("notify", notify), ("on_alert", on_alert)) if v is not None]
            if given and not quiet:  # an explicit off switch wins; say so now rather than never act
                logging.getLogger("entropy_watch").warning(
                    "entropy_watch: live=False turns the live analysis off: %s will not be used (no alert is sent "
                    "or acted on in this process)",
                    " and ".join(f"{g}=" for g in given),
                )
            return None
        if live is None and notify is None and on_alert is None:
            return None
        if detector is not None and not isinstance(detector, DetectorConfig):
            raise TypeError(f"detector must be a DetectorConfig, got {type(detector).__name__}")
        if isinstance(live, LiveOptions):
            options = live
        elif isinstance(live, Mapping):
            options = LiveOptions(**live)
        else:
            options = LiveOptions()
        rules = parse_on_alert(on_alert)
        notifier = Notifier.build(
            notify,
            policy=options.notify_policy,
            app_url=app_url,
            timeout_s=options.notify_timeout_s,
            retries=options.notify_retries,
            backoff_s=options.notify_backoff_s,
        )
        return cls(notifier, rules, detector, options)

    @property
    def _watch(self) -> Any:
        """The ``Watch`` this runs for. Held weakly: the analysis and notification threads hold this object, and a
        strong reference back kept every unclosed ``Watch`` of a sweep alive, with its threads, until the process
        ended."""
        if self._held is not None:
            return self._held
        return self._watch_ref() if self._watch_ref is not None else None

    def hold(self, watch: Any) -> None:
        """Hold ``watch`` strongly while it closes (None: let go): the last analysis and notifications then reach it
        even when the close runs from its finaliser."""
        self._held = watch

    @property
    def secrets(self) -> list[str]:
        return self.notifier.secrets if self.notifier is not None else []

    def scrub(self, obj: Any) -> Any:
        """``obj`` without webhook URLs (for ``run.json``: argv, config)."""
        return scrub(obj, self.secrets)

    def bind(self, watch: Any) -> None:
        """Start on ``watch``: action book on every rank; on the writing rank, tap its recorder and writer and start
        the analysis thread."""
        self._watch_ref = weakref.ref(watch)
        self.actions = ActionBook(
            self.rules, self._record_action, self._failure, callback_timeout_s=self.options.callback_timeout_s
        )
        rec = getattr(watch, "_recorder", None)
        if rec is None:  # a rank that does not write: it only follows the others' checkpoint/stop decisions
            return
        if self.notifier is not None:
            self.notifier.delivery.on_error = self._notify_error
        self.analyzer = LiveAnalyzer(
            watch.run, self.config, self.options, self._handle, self._failure, on_known=self._known
        )
        self._tap(rec, watch._writer)
        if getattr(watch, "earlier_last_step", None) is not None:
            self._seed(watch)
        prev = rec.before_close

        def before_close() -> None:  # also at exit and on SIGTERM, through the recorder
            if prev is not None:
                prev()
            self.close()

        rec.before_close = before_close

    def _seed(self, watch: Any) -> None:
        """A run the store already holds (resumed): the analysis starts from its stored history. Without it the
        resumed process took H_ref at the level the run had fallen to and raised, sent and acted on the earlier
        session's problems again with those numbers. Read here, on the training thread, before this session publishes
        a row (read later, this session's own points would be taken as known and never raised): once per resumed
        process, 0.2 s for a run of 1,000 points, 0.9 s for 10,000 (loaded 2-core machine). A store that cannot be
        read leaves the analysis to this session's points (counted in ``hooks/errors``)."""
        from entropy_watch.store import Store

        try:
            self.analyzer.seed(RunSeries.from_reader(Store(watch.root), watch.run))  # type: ignore[union-attr]
        except NoEntropySeries:  # stored without entropy yet: nothing to start from
            return
        except Exception as exc:  # noqa: BLE001 - never into training
            self._failure("live.seed", exc)

    def _tap(self, rec: Any, writer: Any) -> None:
        """Instance-level wraps: every row recorded is also observed (after the recorder accepted it)."""
        an = self.analyzer
        scalars, hist, event, update_meta = rec.scalars, rec.hist, rec.event, writer.update_run_meta

        def tapped_scalars(step: Any, values: Mapping[str, Any], *a: Any, **k: Any) -> Any:
            try:
                return scalars(step, values, *a, **k)
            finally:  # the recorder keeps the good values of a call that raises for a bad one
                self._observe(step, lambda s: an.observe(s, values))

        def tapped_hist(step: Any, counts: Any, *a: Any, **k: Any) -> Any:
            out = hist(step, counts, *a, **k)
            self._observe(step, lambda s: an.observe_hist(s, counts))
            return out

        def tapped_event(step: Any, kind: str, *a: Any, **k: Any) -> Any:
            out = event(step, kind, *a, **k)
            self._observe(step, lambda s: an.observe_event(s, kind))
            return out

        def tapped_meta(**fields: Any) -> Any:
            out = update_meta(**self.scrub(fields))
            self._observe(0, lambda s: an.observe_meta(out))
            return out

        rec.scalars, rec.hist, rec.event = tapped_scalars, tapped_hist, tapped_event
        writer.update_run_meta = tapped_meta
        meta = getattr(writer, "_meta", None)
        if isinstance(meta, Mapping):
            an.observe_meta(meta)

    def _observe(self, step: Any, fn: Callable[[int], Any]) -> None:
        """Run ``fn(step)`` on the recording thread; a step the recorder refused is skipped (it reported it)."""
        self.raise_pending()
        if self.actions is not None:  # an on_alert callback that hangs: say so
            self.actions.check()
        try:
            s = check_step(step)  # the recorder's own rule: what it refused is never analysed
        except ValueError:
            return
        try:
            fn(s)
        except Exception as exc:  # noqa: BLE001 - never into training
            self._watch.failure("live.observe", exc)

    def raise_pending(self) -> None:
        """Re-raise, on the calling (training) thread, a failure the analysis thread met under ``strict=True``."""
        if self._strict_exc is not None:
            exc, self._strict_exc = self._strict_exc, None
            raise exc

    # ---- the analysis thread's side -----------------------------------------------------------------------------
    def _handle(self, result: AnalysisResult, changes: Changes, newest: int) -> None:
        """New alerts: stored, notified, acted on (each part guarded: a failing one leaves the others be). Only the
        alerts that still stand are acted on (:func:`~entropy_watch.analysis.verdict.standing`): an analysis that runs
        every several steps (the duty cap) can find a collapse and its clearing at once, and a run whose entropy is back
        must not be stopped for it. Nothing is acted on once the run is closing: training is over."""
        run = self._watch.run
        if changes.alerts:
            self.alerts.extend(changes.alerts)
            if self.options.write_alerts:
                self._guarded("live.alerts", lambda: self._watch._recorder.alerts([a.to_row() for a in changes.alerts]))
            if self.notifier is not None:
                verdict = getattr(result, "verdict", None)  # the run's verdict (entropy_watch.analysis), once
                for a in changes.alerts:
                    self._guarded("live.notify", lambda a=a: self.notifier.alert(run, a, verdict))
            if self.actions is not None and not self._closing:
                now = standing(tuple(changes.alerts), tuple(getattr(result, "problems", ())))
                if now:
                    self._guarded("live.actions", lambda: self.actions.on_alerts(list(now), newest))
        if self.notifier is not None:
            notifier = self.notifier
            for r in changes.recoveries:
                self._guarded("live.notify", lambda r=r: notifier.recovery(run, r.kind, r.step, r.summary, key=r.key))

    def _guarded(self, where: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one part failing must not cost the others (a stop, a message)
            self._failure(where, exc)

    def _known(self, earlier: AnalysisResult | None, again: bool) -> None:
        """A resumed run's stored history, analysed: what it still shows was sent by the earlier session, so its
        escalation is one and its recovery is sent (without this the gate held back the recovery of every problem
        the earlier session had alerted on). ``again``: a resume replaced part of the history the gate was primed
        with; while this session has sent nothing, the gate starts afresh from what stands (primed with a collapse the
        resume replaced, it held back the new trajectory's critical alert as within the cooldown of its warning)."""
        if self.notifier is None:
            return
        if again and not self.notifier.sent:
            self.notifier.gate.forget(self._watch.run)
        if earlier is not None:
            self.notifier.prime(self._watch.run, getattr(earlier, "verdict", None))

    def _record_action(self, step: int, payload: dict[str, Any]) -> None:
        self._watch.event(step, ACTION_EVENT, **payload)

    def _notify_error(self, n: int) -> None:
        if self._closed:  # counted at close (abandoned ones included); the recorder is closing or closed
            return
        rec = getattr(self._watch, "_recorder", None)
        step = max(self.analyzer._newest, 0) if self.analyzer is not None else 0
        if rec is not None:
            rec.scalars(step, {M.HOOKS_NOTIFY_ERRORS: float(n)})

    def _failure(self, where: str, exc: BaseException) -> None:
        """Count a failure met on the analysis thread (``Watch.failure``); under ``strict=True`` keep it for
        :meth:`raise_pending` on the training thread."""
        try:
            self._watch.failure(where, exc)
        except BaseException as raised:  # noqa: BLE001 - strict re-raises: hand it over, keep this thread alive
            self._strict_exc = raised

    @property
    def notify_errors(self) -> int:
        return self.notifier.errors if self.notifier is not None else 0

    def flush(self, timeout_s: float = 30.0) -> None:
        """Analyse everything recorded so far and act on it now (tests, end of training)."""
        deadline = time.monotonic() + timeout_s
        if self.analyzer is not None:
            self.analyzer.flush(timeout_s)
        if self.actions is not None:
            self.actions.drain(max(0.0, deadline - time.monotonic()))  # not behind a callback that hangs
        self.raise_pending()

    def close(self) -> None:
        """Last analysis (recorded and notified, not acted on), then the ``on_alert`` callbacks and queued
        notifications, all bounded by ``close_timeout_s``. Messages still unsent then are counted in
        ``hooks/notify_errors`` and warned about (once), as undelivered ones are. Idempotent."""
        if self._closing:
            return
        self._closing = True
        deadline = time.monotonic() + self.options.close_timeout_s
        if self.analyzer is not None:
            self.analyzer.close(self.options.close_timeout_s)
        if self.actions is not None:
            self.actions.close(max(0.0, deadline - time.monotonic()))
        if self.notifier is not None:
            self.notifier.close(max(0.0, deadline - time.monotonic()))
            delivery = self.notifier.delivery
            left = delivery.abandoned
            if left:  # still queued or in flight: lost when the process ends, and never said so before
                n = delivery.errors + left
                what = "notification was" if left == 1 else "notifications were"
                wait = f"close_timeout_s={self.options.close_timeout_s:g}"
                reason = f"{left} {what} still being sent when the run closed ({wait})"
                try:
                    delivery.on_failure(Undelivered("", reason, "", n))
                except Exception:  # noqa: BLE001 - a report must not fail the close
                    pass
                self._notify_error(n)
        self._closed = True

    def __repr__(self) -> str:
        return f"Live(notifier={self.notifier!r}, rules={[r.selector for r in self.rules]})"
