"""The background recorder: buffers rows in memory and publishes them as store segments from its own thread.

The training loop only appends to in-memory buffers (microseconds); a daemon thread publishes them as soon as the
first rows arrive, then on a fixed schedule (a publish starts at most ``flush_secs`` after the previous one
*started*, so a slow publish under load does not stretch the interval), early once ``flush_rows`` rows wait, and on
:meth:`Recorder.close`, at interpreter exit and on SIGTERM. So a ``kill -9`` loses at most the rows of the last
``flush_secs`` plus the duration of one publish (README, "The store"). It never raises into the training loop
(DESIGN §5, STYLE "Boundaries"):

* input is checked at the call (:func:`~entropy_watch.store.schema.check_step`,
  :func:`~entropy_watch.store.schema.check_value`): a bad step or value raises ``ValueError`` there, which the
  caller's guard (``Watch``) counts in ``hooks/errors`` and warns about once; nothing invalid enters a buffer that
  other rows share, and the valid values of the same call are kept;
* each table's rows are taken as one *batch* with a segment number reserved for it; a failed publish (full disk,
  permissions, a deleted store) keeps the batch and retries it under the same number, so a segment that did land is
  replaced, never duplicated; the failure is counted in ``errors`` (once per table and round) and warned once per
  outage (the first ``OUTAGES_WARNED`` of each table), naming what failed; the table's later batches wait untried,
  merged, so a long outage costs each round a write per table; once the table publishes again that is said too,
  and rows still unwritten when the recorder closes are reported lost (a warning naming the tables, the steps and
  the cause), never dropped silently;
* a row that still cannot be encoded (defence in depth) is dropped alone and counted; its batch is published;
* a step's histogram and token sample are one write each, the latest (the readers' rule, ``reads.LATEST_WRITE``):
  ``hist``/``tokens`` rows of a step still buffered, not yet published, are replaced by a later write of that step,
  so one segment never holds two writes of a step, which readers could not tell apart (a ``Watch.log_tokens``
  called twice for one step read a histogram of both calls);
* under back-pressure token sample rows are dropped first, oldest first, and counted (``hooks/dropped_token_rows``);
  scalars, histograms, events and alerts are never dropped;
* a process forked from the training (``multiprocessing`` workers with the fork start method: a reward pool, a
  ``with Pool()`` whose exit sends them SIGTERM) inherits the recorder's memory and its SIGTERM handler, but the run
  stays the parent's: the child never publishes, writes a heartbeat or closes the run, neither at exit nor on
  SIGTERM (which it passes on as if no recorder were there), and rows it records are dropped (warned once).

With ``strict=True`` a failure is re-raised at the next call from the training thread. Torch-free: ``Watch``
(torch) and importers or plain-Python loops can all record through it.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from entropy_watch import metrics as M
from entropy_watch.errors import StoreUnwritable
from entropy_watch.store.schema import check_step, check_value, encode_rows
from entropy_watch.store.writer import exit_state

log = logging.getLogger("entropy_watch")

_ROW_TABLES = ("scalars", "hist", "events", "alerts")
OUTAGES_WARNED = 3  # per table: outages (a failure, then a publish that works again) said; later ones only counted


@dataclass
class _Batch:
    """One table's rows taken for one segment. ``seq`` is reserved at the first attempt and kept for retries."""

    table: str
    rows: list[dict[str, Any]] | pa.Table
    seq: int | None = None

    @property
    def n_rows(self) -> int:
        return self.rows.num_rows if isinstance(self.rows, pa.Table) else len(self.rows)


class Recorder:
    """Buffers scalars/hist/tokens/events rows for one run and rank and publishes them in the background.

    Args:
        writer: a :class:`entropy_watch.store.RunWriter` (only this recorder's thread calls it after start).
        flush_secs: a publish starts at most this long after the previous one started (seconds).
        flush_rows: publish early once this many rows are buffered.
        max_token_rows: cap of the token-sample buffer; beyond it the oldest token rows are dropped and counted.
        heartbeat_secs: the longest the rank's status file goes unrefreshed (liveness); a round that published
            refreshes it at once (its summary, read by ``entropy-watch ls``).
        strict: re-raise the first recording failure into the caller (tests).
        handle_sigterm: flush and close on SIGTERM (only possible from the main thread), then chain to the
            previous handler.
    """

    def __init__(
        self,
        writer: Any,
        *,
        flush_secs: float = 2.0,
        flush_rows: int = 50_000,
        max_token_rows: int = 100_000,
        heartbeat_secs: float = 5.0,
        strict: bool = False,
        handle_sigterm: bool = True,
    ) -> None:
        self.writer = writer
        self.flush_secs = float(flush_secs)
        self.flush_rows = int(flush_rows)
        self.max_token_rows = int(max_token_rows)
        self.heartbeat_secs = float(heartbeat_secs)
        self.strict = strict
        self.errors = 0  # guarded failures (publishing here; hook computations are added by the caller)
        self.dropped_tokens = 0
        self.dropped_rows = 0  # rows that could not be encoded (counted in errors too)
        self.last_step: int | None = None
        self._lock = threading.RLock()
        self._io_lock = threading.RLock()  # one publisher at a time; reentrant for the SIGTERM handler
        self._rows: dict[str, list[dict[str, Any]]] = {t: [] for t in _ROW_TABLES}
        self._tokens: deque[dict[str, Any]] = deque()
        # steps with rows in the hist buffer / the token buffer: a later write of one replaces them (one set lookup
        # per call; the buffers are scanned only for a step written again)
        self._hist_steps: set[int] = set()
        self._token_steps: set[int] = set()
        self._scalar_keys: set[tuple[str, int]] = set()  # (name, step) of the buffered scalars
        self._sealed: list[_Batch] = []  # scalars buffered before a (name, step) came again: a segment of their own
        self._retry: list[_Batch] = []  # batches whose publish failed, oldest first, retried under their seq
        self._failing: dict[str, str] = {}  # table -> why its last publish failed, until one succeeds
        self._outages: dict[str, int] = {}  # table -> how many times its publishing started failing
        self._pending = 0
        self._first_woken = False  # the first rows of the session are published at once
        self._reported = (0, 0)  # (errors, dropped) last written as scalars
        self._warned: set[str] = set()
        self._strict_exc: BaseException | None = None
        self._closed = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_heartbeat = 0.0
        self._pid = os.getpid()  # the process that owns the run; a forked child never writes (see _forked)
        # called once at the start of close() (also at exit and on SIGTERM), before the final publish: Watch drains
        # its statistics worker here so that pending steps are written
        self.before_close: Callable[[], Any] | None = None
        _warm_up()  # here, not in the thread: the first rows may arrive at once and must not wait for it
        self_ref = weakref.ref(self)
        # the thread holds the recorder weakly: one nobody references any more (a sweep's trial whose trainer and
        # Watch were dropped unclosed) is collected, and closed then (__del__), instead of beating forever
        self._thread = threading.Thread(
            target=_publisher, args=(self_ref, self._wake, self._stop), name="entropy_watch-recorder", daemon=True
        )
        self._thread.start()
        self._born = next(_BORN)  # creation order: at exit the newest closes first
        _RECORDERS.add(self)
        _register_at_exit()
        self._prev_sigterm: Any = None
        self._sigterm_handler: Any = None  # ours, as installed: close() restores prev only while it is still on top
        if handle_sigterm and threading.current_thread() is threading.main_thread():
            try:
                # past the handlers of recorders closed since (closed off the main thread, they could not take
                # theirs off): otherwise each unclosed run of a sweep deepened the chain a SIGTERM walks
                prev = _live_handler(signal.getsignal(signal.SIGTERM))
                handler = _make_sigterm_handler(self_ref, prev)
                signal.signal(signal.SIGTERM, handler)
                self._prev_sigterm, self._sigterm_handler = prev, handler
            except (ValueError, OSError):  # not the main interpreter thread, or an embedded interpreter
                self._prev_sigterm = None

    # ---- recording (training thread; cheap; bad input raises ValueError here, before anything is buffered) ------
    def scalars(self, step: Any, values: Mapping[str, Any], wall_time: float | None = None) -> None:
        """Buffer one row per (name, value). NaN/inf are kept (the store round-trips them).

        Raises ``ValueError`` for a bad step (nothing is buffered) or for bad values (the good ones of the call are
        buffered first; the message names every bad one).
        """
        s = check_step(step)
        t = time.time() if wall_time is None else check_value(wall_time)
        rows, bad = [], []
        for k, v in values.items():
            try:
                rows.append({"step": s, "name": str(k), "value": check_value(v), "wall_time": t})
            except ValueError as exc:
                bad.append(f"{str(k)[:60]!r} {exc}")
        self._add("scalars", rows, s)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise ValueError(f"value of {bad[0]} at step {s}{more}; the other values were recorded")

    def hist(self, step: Any, counts: Iterable[int]) -> None:
        """Buffer a step's entropy histogram (bin index, count); empty bins are not stored. It replaces the step's
        histogram still buffered (a step's histogram is its latest write)."""
        s = check_step(step)
        rows = [{"step": s, "bin": int(b), "count": int(c)} for b, c in enumerate(counts) if c]
        self._add("hist", rows, s)

    def event(self, step: Any, kind: str, payload_json: str) -> None:
        s = check_step(step)
        row = {"step": s, "kind": str(kind), "payload": str(payload_json), "wall_time": time.time()}
        self._add("events", [row], s)

    def alerts(self, rows: list[dict[str, Any]]) -> None:
        checked = [{**r, "step": check_step(r.get("step"))} for r in rows]
        self._add("alerts", checked, None)

    def tokens(self, rows: list[dict[str, Any]]) -> None:
        """Buffer sampled token rows; beyond ``max_token_rows`` the oldest are dropped and counted. The rows of a step
        replace that step's rows still buffered (a step's token sample is its latest write); one call is one write."""
        self._raise_strict()
        checked = [{**r, "step": check_step(r.get("step"))} for r in rows]
        if not checked or self._forked():
            return
        steps = {r["step"] for r in checked}
        with self._lock:
            again = steps & self._token_steps
            if again:
                kept = deque(r for r in self._tokens if r["step"] not in again)
                self._pending -= len(self._tokens) - len(kept)
                self._tokens = kept
            self._token_steps |= steps
            self._tokens.extend(checked)
            over = len(self._tokens) - self.max_token_rows
            for _ in range(max(0, over)):
                self._tokens.popleft()
            if over > 0:
                self.dropped_tokens += over
                self._warn_once("drop", f"entropy_watch: token sample buffer full; dropped {over} oldest rows")
            self._pending += len(checked)
            self._wake_if_due()

    def count_error(self) -> None:
        """One more guarded failure in ``errors`` (written as ``hooks/errors``)."""
        with self._lock:
            self.errors += 1

    def failure(self, where: str, exc: BaseException) -> None:
        """Count a guarded failure of a hook; warn once per hook name; re-raise if strict."""
        self.count_error()
        then = (
            "strict=True, so it is raised"
            if self.strict
            else ("training continues, later failures are counted as hooks/errors")
        )
        self._warn_once(where, f"entropy_watch: {where} failed ({type(exc).__name__}: {exc}); {then}")
        if self.strict:
            raise exc

    # ---- publishing ------------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Publish everything buffered now (blocking). Raises only when strict."""
        if self._forked():
            return
        self._publish()
        self._raise_strict()

    def close(self, state: str = "finished") -> None:
        """Stop the thread, publish what is left and mark the rank's status ``state``. Idempotent.

        In a forked child it only marks this copy closed: the run is the parent's (nothing published, no status)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._pid != os.getpid():  # a forked child's copy: the run is the parent's
            return
        if self.before_close is not None:
            try:
                self.before_close()
            except Exception as exc:  # noqa: BLE001 - still publish what is buffered
                self._record_failure("before_close", exc)
        self._stop.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        self._publish()
        self._heartbeat(state)
        self._report_lost()
        if self._sigterm_handler is not None and threading.current_thread() is threading.main_thread():
            # Only while our handler is the installed one: a recorder started after this one (a second Watch still
            # recording) installed its own on top, chained to ours, which passes the signal on once closed.
            # Putting back the handler ours replaced would drop that one: a SIGTERM then killed it unflushed.
            try:
                if signal.getsignal(signal.SIGTERM) is self._sigterm_handler:
                    signal.signal(signal.SIGTERM, _live_handler(self._prev_sigterm))
            except (ValueError, OSError, TypeError):
                pass
        self._raise_strict()

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- internals -----------------------------------------------------------------------------------------------
    def _add(self, table: str, rows: list[dict[str, Any]], step: int | None) -> None:
        self._raise_strict()
        if not rows or self._forked():
            return
        with self._lock:
            if table == "hist":
                if step in self._hist_steps:  # the step's histogram written again: this write replaces the buffered one
                    kept = [r for r in self._rows["hist"] if r["step"] != step]
                    self._pending -= len(self._rows["hist"]) - len(kept)
                    self._rows["hist"] = kept
                else:
                    self._hist_steps.add(step)  # type: ignore[arg-type]  # hist always passes its step
            elif table == "scalars":
                keys = {(r["name"], r["step"]) for r in rows}
                if not keys.isdisjoint(self._scalar_keys):  # a name logged again at its step: its own segment, so
                    self._sealed.append(_Batch("scalars", self._rows["scalars"]))  # readers see two writes and keep
                    self._rows["scalars"], self._scalar_keys = [], set()  # the latest (in one segment, a gapped run's
                self._scalar_keys |= keys  # repeat was not detected: series_many read the step twice); nothing lost
            self._rows[table].extend(rows)
            self._pending += len(rows)
            if step is not None:
                self.last_step = step if self.last_step is None else max(self.last_step, step)
            self._wake_if_due()

    def _wake_if_due(self) -> None:
        """Wake the publisher for the session's first rows (a crash in the first seconds loses nothing published
        since) and once ``flush_rows`` rows wait. Called with ``_lock`` held."""
        if self._pending >= self.flush_rows or not self._first_woken:
            self._first_woken = True
            self._wake.set()

    def _round(self) -> float:
        """One round of the publisher thread (:func:`_publisher`); returns when the next one is due (monotonic s)."""
        started = time.monotonic()
        published = self._publish()
        # a round that published refreshes the summary at once (``ls`` then lags the rows by one round at most, and a
        # kill -9 leaves at most that round for listing to fold in; store/summary.py); an idle rank still beats every
        # heartbeat_secs (liveness)
        if published or started - self._last_heartbeat >= self.heartbeat_secs:
            self._last_heartbeat = started
            self._heartbeat("running")
        return started + self.flush_secs  # a deadline, not a sleep after the work: honest under load

    def __del__(self) -> None:
        """A recorder nobody references any more is closed (``finished``, as at exit): its rows are published, on a
        thread of its own (not a daemon: the interpreter waits for it at exit), so that the collection (a
        ``gc.collect()`` on the training thread) never waits for ``before_close`` (a busy statistics worker's drain,
        up to 30 s; the live analysis' last pass) and the final publish. While the interpreter finalises (no thread
        can start) it closes here."""
        try:
            if self._closed or self._pid != os.getpid():
                return
            # after threading's exit joined the non-daemon threads (atexit hooks run then: a gc pass in one) a thread
            # started now is never waited for and dies mid-close: close here, as while finalising
            if not sys.is_finalizing() and threading.main_thread().is_alive():
                try:
                    threading.Thread(target=_close_quietly, args=(self,), name="entropy_watch-close").start()
                    return
                except RuntimeError:  # interpreter shutdown
                    pass
            self.close()
        except Exception:  # noqa: BLE001 - a finaliser never raises
            pass

    def _heartbeat(self, state: str) -> None:
        # no step=: the summary's last step is what the writer published, never rows still in a buffer
        try:
            self.writer.heartbeat(state=state, errors=self.errors, dropped_token_rows=self.dropped_tokens)
        except Exception as exc:  # noqa: BLE001 - reported, never raised into training
            self._record_failure("writing the heartbeat (status file)", exc)

    def _take(self) -> list[_Batch]:
        with self._lock:
            batches = [*self._sealed, *(_Batch(t, rows) for t, rows in self._rows.items() if rows)]
            self._rows = {t: [] for t in _ROW_TABLES}
            self._sealed = []
            self._hist_steps, self._token_steps, self._scalar_keys = set(), set(), set()
            if self._tokens:
                batches.append(_Batch("tokens", list(self._tokens)))
                self._tokens.clear()
            counters = (self.errors, self.dropped_tokens)
            if counters != self._reported and self.last_step is not None:
                self._reported = counters
                t = time.time()
                counter_rows = [
                    {"step": self.last_step, "name": n, "value": float(v), "wall_time": t}
                    for n, v in ((M.HOOKS_ERRORS, counters[0]), (M.HOOKS_DROPPED_TOKENS, counters[1]))
                ]
                batches.append(_Batch("scalars", counter_rows))  # its own segment: never blocked by other rows
            self._pending = 0
            return batches

    def _keep(self, batch: _Batch) -> None:
        """Keep a failed (or untried) batch for the next try; token batches beyond the cap are dropped, oldest first.
        An untried batch joins the table's last kept one when that is untried too (no segment number reserved by
        either), so an outage holds one untried batch per table however long it lasts, and each round tries as many
        writes as there are tables, not one per round the outage has lasted. Merged ``hist``/``tokens`` rows keep one
        write per step, the later batch's (they become one segment, in which readers could not tell writes apart)."""
        with self._lock:
            last = next((b for b in reversed(self._retry) if b.table == batch.table), None)
            if last is not None and _untried(last) and _untried(batch) and not _repeats_scalars(last, batch):
                if batch.table in ("hist", "tokens"):
                    again = {r["step"] for r in batch.rows}  # type: ignore[union-attr]  # lists (_untried)
                    last.rows = [r for r in last.rows if r["step"] not in again]  # type: ignore[union-attr]
                last.rows.extend(batch.rows)  # type: ignore[union-attr]  # lists (_untried)
            else:
                self._retry.append(batch)
            if batch.table != "tokens":
                return
            held = sum(b.n_rows for b in self._retry if b.table == "tokens") + len(self._tokens)
            while held > self.max_token_rows:
                oldest = next(b for b in self._retry if b.table == "tokens")
                cut = held - self.max_token_rows
                if oldest.n_rows > cut:  # the batch loses its oldest rows (tried again under its number)
                    oldest.rows = oldest.rows[cut:] if isinstance(oldest.rows, list) else oldest.rows.slice(cut)
                else:
                    self._retry.remove(oldest)
                    cut = oldest.n_rows
                held -= cut
                self.dropped_tokens += cut

    def _publish(self) -> int:
        """Publish the retried batches, then everything buffered; returns how many segments were published."""
        published = 0
        failed: set[str] = set()  # tables whose write failed this round: their later batches wait, untried
        with self._io_lock:
            with self._lock:
                batches, self._retry = self._retry, []
            batches += self._take()
            for batch in batches:
                if batch.table in failed:  # one failure per table and round is counted; the rows are kept in order
                    self._keep(batch)
                    continue
                if not isinstance(batch.rows, pa.Table):
                    tbl, bad = encode_rows(batch.table, batch.rows)
                    if bad:
                        self._drop_unencodable(batch.table, bad)
                    if tbl is None:
                        continue
                    batch.rows = tbl
                try:
                    if batch.seq is None:
                        batch.seq = self.writer.next_seq(batch.table)
                    self.writer.write(batch.table, batch.rows, seq=batch.seq)
                    published += 1
                except Exception as exc:  # noqa: BLE001 - keep the batch, count, warn once
                    failed.add(batch.table)
                    self._keep(batch)
                    if batch.table not in self._failing:  # an outage starts
                        self._outages[batch.table] = self._outages.get(batch.table, 0) + 1
                    self._failing[batch.table] = f"{type(exc).__name__}: {exc}"
                    self._record_failure(
                        f"publishing {batch.table}", exc, kept=batch.n_rows, key=self._outage_key(batch.table)
                    )
                    continue
                if self._failing.pop(batch.table, None) is not None:
                    then = "counted in hooks/errors only" if self._outages[batch.table] >= OUTAGES_WARNED else "warned"
                    self._warn_once(
                        f"recovered {self._outage_key(batch.table)}",
                        f"entropy_watch: publishing {batch.table} works again; the rows kept while it failed are "
                        f"being stored (a later failure is {then})",
                    )
        return published

    def _outage_key(self, table: str) -> str:
        """The warn-once key of ``table``'s current outage: one warning as it starts and one as it ends, for each of
        the first :data:`OUTAGES_WARNED` outages (a disk that fills up again hours later is said again; one that
        flaps every round is not said every round)."""
        return f"publishing {table} #{min(self._outages.get(table, 1), OUTAGES_WARNED)}"

    def _report_lost(self) -> None:
        """At close: warn about the rows the final publish could not write (the store stayed full, read-only or
        missing to the end): they are lost with the process, and the user is told which, how many and why."""
        with self._lock:
            lost, self._retry = self._retry, []
        if not lost:
            return
        per_table: dict[str, int] = {}
        steps: list[int] = []
        for b in lost:
            per_table[b.table] = per_table.get(b.table, 0) + b.n_rows
            col = b.rows.column("step").to_pylist() if isinstance(b.rows, pa.Table) else [r["step"] for r in b.rows]
            steps.extend(s for s in col if s is not None)
        span = f"; steps {min(steps)}-{max(steps)}" if steps else ""
        tables = ", ".join(f"{t} {n}" for t, n in per_table.items())
        why = next(iter(self._failing.values()), "the store could not be written")
        log.warning(
            "entropy_watch: run %r closed with %d rows not written to the store %s (%s%s): %s; they are lost. "
            "The rows published before are readable; free space or make the store writable before the next run",
            getattr(self.writer, "run", "?"),
            sum(per_table.values()),
            getattr(self.writer, "root", ""),
            tables,
            span,
            why,
        )

    def _drop_unencodable(self, table: str, bad: list[tuple[dict[str, Any], str]]) -> None:
        with self._lock:
            self.errors += len(bad)
            self.dropped_rows += len(bad)
            if self.strict and self._strict_exc is None:
                self._strict_exc = ValueError(f"{table} row {bad[0][0]!r} cannot be stored ({bad[0][1]})")
        row, why = bad[0]
        self._warn_once(
            f"encode {table}",
            f"entropy_watch: dropped {len(bad)} {table} row(s) that cannot be stored (first: {str(row)[:200]}: "
            f"{why}); the other rows were published; later ones are counted as hooks/errors",
        )

    def _record_failure(self, where: str, exc: BaseException, kept: int | None = None, key: str | None = None) -> None:
        with self._lock:
            self.errors += 1
            if self.strict and self._strict_exc is None:
                self._strict_exc = exc
        if self.strict:
            advice = "strict=True, so it is raised at the next flush"
        elif kept is not None:
            advice = f"its {kept} rows are kept and retried"
        else:
            advice = "it is retried"
        if isinstance(exc, StoreUnwritable | OSError):
            advice += f"; check that the store {getattr(self.writer, 'root', '')} exists, is writable and has space"
        self._warn_once(key or where, f"entropy_watch: {where} failed ({type(exc).__name__}: {exc}); {advice}")

    def _raise_strict(self) -> None:
        if self._strict_exc is not None:
            exc, self._strict_exc = self._strict_exc, None
            raise exc

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def _forked(self) -> bool:
        """True in a process forked after this recorder started (its copy of the buffers is the parent's, its
        publisher thread is gone): it must not write. Warns once there."""
        if self._pid == os.getpid():
            return False
        self._warn_once(
            "forked",
            f"entropy_watch: process {os.getpid()} was forked from the training (pid {self._pid}); the run is "
            "recorded by the training process only, so what this process logs is dropped",
        )
        return True


_RECORDERS: weakref.WeakSet[Recorder] = weakref.WeakSet()


def _close_quietly(rec: Recorder) -> None:
    """Close a recorder nobody references (:meth:`Recorder.__del__`); a strict failure has no caller to reach."""
    try:
        rec.close()
    except Exception:  # noqa: BLE001
        pass


def _publisher(ref: weakref.ref[Recorder], wake: threading.Event, stop: threading.Event) -> None:
    """The publisher thread: a round (:meth:`Recorder._round`) when woken or due, until the recorder stops or is
    collected. It holds the recorder only during a round."""
    rec = ref()
    next_due = time.monotonic() + (rec.flush_secs if rec is not None else 0.0)
    del rec
    while not stop.is_set():
        wake.wait(max(0.0, next_due - time.monotonic()))
        wake.clear()
        if stop.is_set():
            break
        rec = ref()
        if rec is None:
            break
        next_due = rec._round()
        del rec


def _after_fork_in_child() -> None:
    """Fresh locks in a forked child: the parent's publisher thread may have held them at the fork, and it does not
    exist in the child, so any use of them (a log, the SIGTERM handler) would wait forever. Then the child's SIGTERM
    disposition as it was before any recorder (:func:`_sigterm_in_child`)."""
    for rec in list(_RECORDERS):
        rec._lock = threading.RLock()
        rec._io_lock = threading.RLock()
    _sigterm_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _repeats_scalars(kept: _Batch, batch: _Batch) -> bool:
    """Whether ``batch`` logs a (name, step) of the untried scalars batch ``kept`` again: kept apart, in segments of
    their own (see :meth:`Recorder._add`)."""
    if batch.table != "scalars":
        return False
    keys = {(r["name"], r["step"]) for r in kept.rows}  # type: ignore[union-attr]  # lists (_untried)
    return any((r["name"], r["step"]) in keys for r in batch.rows)  # type: ignore[union-attr]


def _untried(batch: _Batch) -> bool:
    """Whether ``batch`` was never tried: no segment number reserved, rows not yet encoded."""
    return batch.seq is None and isinstance(batch.rows, list)


def _warm_up() -> None:
    """Pay pyarrow's one-time costs (its first array conversion imports pandas: ~0.6 s) when the recorder starts,
    so the session's first publish is as quick as the others (a kill in the first second loses only what one
    publish takes). A no-op after the first recorder of the process."""
    try:
        tbl, _ = encode_rows("scalars", [{"step": 0, "name": "", "value": 0.0, "wall_time": 0.0}])
        if tbl is not None:
            pq.write_table(tbl, pa.BufferOutputStream())
    except Exception:  # noqa: BLE001 - only an optimisation
        pass


_BORN = itertools.count()
_AT_EXIT: list[bool] = []  # [True] once :func:`_close_all_at_exit` is registered


def _register_at_exit() -> None:
    """Register :func:`_close_all_at_exit` once per process. One registration per recorder made a sweep of 200 runs
    in one process leave 200 atexit entries behind, one more with each run even when it was closed."""
    if not _AT_EXIT:
        _AT_EXIT.append(True)
        atexit.register(_close_all_at_exit)


def _close_all_at_exit() -> None:
    """At interpreter exit: close every recorder still open, the newest first (:func:`_close_at_exit`)."""
    for rec in sorted(_RECORDERS, key=lambda r: r._born, reverse=True):
        _close_at_exit(weakref.ref(rec))


def _close_at_exit(ref: weakref.ref[Recorder]) -> None:
    """A recorder nobody closed (the HF/TRL callbacks have no ``with`` block) closes when the interpreter exits: as
    ``interrupted`` or ``failed`` when the process ends on an unhandled Ctrl-C or exception (Python keeps its type in
    ``sys.last_type`` once it printed the traceback), else ``finished``."""
    rec = ref()
    if rec is not None and not rec.closed and rec._pid == os.getpid():  # a forked child leaves the run alone
        try:
            rec.close(state=exit_state(getattr(sys, "last_type", None)))
        except Exception:  # noqa: BLE001 - interpreter is exiting
            pass


def _make_sigterm_handler(ref: weakref.ref[Recorder], prev: Any) -> Callable[[int, Any], None]:
    """The SIGTERM handler of the recorder ``ref``: closes it, then passes the signal to ``prev`` (the handler it
    replaced, held here, and as ``handler.ew_prev``, so the chain holds even once that recorder is gone)."""

    def handler(signum: int, frame: Any) -> None:
        _on_sigterm(ref, prev, signum, frame)

    handler.ew_prev = prev  # type: ignore[attr-defined]
    handler.ew_ref = ref  # type: ignore[attr-defined]
    return handler


def _live_handler(handler: Any) -> Any:
    """``handler``, or, past the handlers of recorders already closed (a second Watch closed after the first), the
    first handler below them that still acts: what SIGTERM should run once the recorder above them closes."""
    while hasattr(handler, "ew_prev"):
        rec = handler.ew_ref()
        if rec is not None and not rec.closed:
            break
        handler = handler.ew_prev
    return handler


def _sigterm_in_child() -> None:
    """In a forked child, put back the SIGTERM disposition our handlers replaced (SIG_DFL for a ``Pool`` worker):
    a Python-level handler runs only between bytecodes, so a worker blocked on its task queue when
    ``Pool.terminate`` signals it could miss it and never exit (``Pool.__exit__`` then waited forever). A handler
    installed above ours (the user's own) is kept."""
    try:
        current: Any = signal.getsignal(signal.SIGTERM)
        handler = current
        while hasattr(handler, "ew_prev"):
            handler = handler.ew_prev
        if handler is not current:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if handler is None else handler)
    except (ValueError, OSError, TypeError):  # not the main thread, or a disposition Python cannot set
        pass


def _on_sigterm(ref: weakref.ref[Recorder], prev: Any, signum: int, frame: Any) -> None:
    rec = ref()
    if rec is not None and not rec.closed and rec._pid == os.getpid():  # a forked child only passes the signal on
        try:
            rec.close(state="terminated")
        except Exception:  # noqa: BLE001
            pass
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_DFL or prev is None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
