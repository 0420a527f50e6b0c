"""The background recorder: buffers rows in memory and publishes them as store segments from its own thread.

The training loop only appends to in-memory buffers (microseconds); a daemon thread publishes them every
``flush_secs`` seconds or ``flush_rows`` rows, and on :meth:`Recorder.close`, at interpreter exit and on SIGTERM.
It never raises into the training loop (DESIGN §5, STYLE "Boundaries"):

* a failed publish (full disk, permissions) keeps the rows for the next try, counts the failure in ``errors`` and
  warns once; with ``strict=True`` the failure is re-raised at the next call from the training thread;
* under back-pressure token sample rows are dropped first, oldest first, and counted (``hooks/dropped_token_rows``);
  scalars, histograms, events and alerts are never dropped.

Torch-free: ``Watch`` (torch) and importers or plain-Python loops can all record through it.
"""

from __future__ import annotations

import atexit
import logging
import math
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from entropy_watch import metrics as M

log = logging.getLogger("entropy_watch")

_ROW_TABLES = ("scalars", "hist", "events", "alerts")


class Recorder:
    """Buffers scalars/hist/tokens/events rows for one run and rank and publishes them in the background.

    Args:
        writer: a :class:`entropy_watch.store.RunWriter` (only this recorder's thread calls it after start).
        flush_secs: publish at least this often (seconds).
        flush_rows: publish early once this many rows are buffered.
        max_token_rows: cap of the token-sample buffer; beyond it the oldest token rows are dropped and counted.
        heartbeat_secs: how often the rank's status file is refreshed.
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
        self.last_step: int | None = None
        self._lock = threading.RLock()
        self._io_lock = threading.RLock()  # one publisher at a time; reentrant for the SIGTERM handler
        self._rows: dict[str, list[dict[str, Any]]] = {t: [] for t in _ROW_TABLES}
        self._tokens: deque[dict[str, Any]] = deque()
        self._pending = 0
        self._reported = (0, 0)  # (errors, dropped) last written as scalars
        self._warned: set[str] = set()
        self._strict_exc: BaseException | None = None
        self._closed = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_heartbeat = 0.0
        # called once at the start of close() (also at exit and on SIGTERM), before the final publish: Watch drains
        # its statistics worker here so that pending steps are written
        self.before_close: Callable[[], Any] | None = None
        self._thread = threading.Thread(target=self._run, name="entropy_watch-recorder", daemon=True)
        self._thread.start()
        self_ref = weakref.ref(self)
        atexit.register(_close_at_exit, self_ref)
        self._prev_sigterm: Any = None
        if handle_sigterm and threading.current_thread() is threading.main_thread():
            try:
                self._prev_sigterm = signal.getsignal(signal.SIGTERM)
                signal.signal(signal.SIGTERM, lambda signum, frame: _on_sigterm(self_ref, signum, frame))
            except (ValueError, OSError):  # not the main interpreter thread, or an embedded interpreter
                self._prev_sigterm = None

    # ---- recording (training thread; cheap, never raises unless strict) ------------------------------------------
    def scalars(self, step: int, values: Mapping[str, float], wall_time: float | None = None) -> None:
        """Buffer one row per (name, value); non-finite values are kept (the store round-trips NaN/inf)."""
        t = time.time() if wall_time is None else wall_time
        rows = [{"step": int(step), "name": str(k), "value": _to_float(v), "wall_time": t} for k, v in values.items()]
        self._add("scalars", rows, step)

    def hist(self, step: int, counts: Iterable[int]) -> None:
        """Buffer a step's entropy histogram (bin index, count); empty bins are not stored."""
        rows = [{"step": int(step), "bin": int(b), "count": int(c)} for b, c in enumerate(counts) if c]
        self._add("hist", rows, step)

    def event(self, step: int, kind: str, payload_json: str) -> None:
        row = {"step": int(step), "kind": str(kind), "payload": payload_json, "wall_time": time.time()}
        self._add("events", [row], step)

    def alerts(self, rows: list[dict[str, Any]]) -> None:
        self._add("alerts", rows, None)

    def tokens(self, rows: list[dict[str, Any]]) -> None:
        """Buffer sampled token rows; beyond ``max_token_rows`` the oldest are dropped and counted."""
        self._raise_strict()
        with self._lock:
            self._tokens.extend(rows)
            over = len(self._tokens) - self.max_token_rows
            for _ in range(max(0, over)):
                self._tokens.popleft()
            if over > 0:
                self.dropped_tokens += over
                self._warn_once("drop", f"entropy_watch: token sample buffer full; dropped {over} oldest rows")
            self._pending += len(rows)
            if self._pending >= self.flush_rows:
                self._wake.set()

    def failure(self, where: str, exc: BaseException) -> None:
        """Count a guarded failure of a hook; warn once per hook name; re-raise if strict."""
        with self._lock:
            self.errors += 1
        self._warn_once(
            where,
            f"entropy_watch: {where} failed ({type(exc).__name__}: {exc}); training continues, "
            "later failures are counted as hooks/errors",
        )
        if self.strict:
            raise exc

    # ---- publishing ------------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Publish everything buffered now (blocking). Raises only when strict."""
        self._publish()
        self._raise_strict()

    def close(self, state: str = "finished") -> None:
        """Stop the thread, publish what is left and mark the rank's status ``state``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.before_close is not None:
            try:
                self.before_close()
            except Exception as exc:  # noqa: BLE001 - still publish what is buffered
                self._record_io_failure("before_close", exc)
        self._stop.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        self._publish()
        try:
            self.writer.heartbeat(
                step=self.last_step, state=state, errors=self.errors, dropped_token_rows=self.dropped_tokens
            )
        except Exception as exc:  # noqa: BLE001 - reported, never raised into training
            self._record_io_failure("heartbeat", exc)
        if self._prev_sigterm is not None and threading.current_thread() is threading.main_thread():
            try:
                signal.signal(signal.SIGTERM, self._prev_sigterm)
            except (ValueError, OSError, TypeError):
                pass
        self._raise_strict()

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- internals -----------------------------------------------------------------------------------------------
    def _add(self, table: str, rows: list[dict[str, Any]], step: int | None) -> None:
        self._raise_strict()
        with self._lock:
            self._rows[table].extend(rows)
            self._pending += len(rows)
            if step is not None:
                self.last_step = step if self.last_step is None else max(self.last_step, int(step))
            if self._pending >= self.flush_rows:
                self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_secs)
            self._wake.clear()
            if self._stop.is_set():
                break
            self._publish()
            now = time.monotonic()
            if now - self._last_heartbeat >= self.heartbeat_secs:
                self._last_heartbeat = now
                try:
                    self.writer.heartbeat(
                        step=self.last_step, state="running", errors=self.errors, dropped_token_rows=self.dropped_tokens
                    )
                except Exception as exc:  # noqa: BLE001
                    self._record_io_failure("heartbeat", exc)

    def _take(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            batch = {t: rows for t, rows in self._rows.items() if rows}
            self._rows = {t: [] for t in _ROW_TABLES}
            if self._tokens:
                batch["tokens"] = list(self._tokens)
                self._tokens.clear()
            counters = (self.errors, self.dropped_tokens)
            if counters != self._reported and self.last_step is not None:
                self._reported = counters
                t = time.time()
                batch.setdefault("scalars", []).extend(
                    {"step": self.last_step, "name": n, "value": float(v), "wall_time": t}
                    for n, v in ((M.HOOKS_ERRORS, counters[0]), (M.HOOKS_DROPPED_TOKENS, counters[1]))
                )
            self._pending = 0
            return batch

    def _give_back(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Return rows whose publish failed to the front of the buffers (token rows stay capped)."""
        with self._lock:
            if table == "tokens":
                keep = rows[-max(0, self.max_token_rows - len(self._tokens)) :] if self.max_token_rows else []
                self.dropped_tokens += len(rows) - len(keep)
                self._tokens.extendleft(reversed(keep))
            else:
                self._rows[table][:0] = rows
            self._pending += len(rows)

    def _publish(self) -> None:
        with self._io_lock:
            batch = self._take()
            for table, rows in batch.items():
                try:
                    self.writer.write(table, _columns(rows))
                except Exception as exc:  # noqa: BLE001 - keep the rows, count, warn once
                    self._give_back(table, rows)
                    self._record_io_failure(f"publishing {table}", exc)

    def _record_io_failure(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            if self.strict and self._strict_exc is None:
                self._strict_exc = exc
        self._warn_once(
            where,
            f"entropy_watch: {where} failed ({type(exc).__name__}: {exc}); rows are kept and "
            "retried; check the store path and free disk space",
        )

    def _raise_strict(self) -> None:
        if self._strict_exc is not None:
            exc, self._strict_exc = self._strict_exc, None
            raise exc

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row dicts -> column lists (union of keys, missing cells None)."""
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return {k: [r.get(k) for r in rows] for k in keys}


def _to_float(v: Any) -> float:
    try:
        return float(v.item() if hasattr(v, "item") else v)
    except (TypeError, ValueError):
        return math.nan


def _close_at_exit(ref: weakref.ref[Recorder]) -> None:
    rec = ref()
    if rec is not None and not rec.closed:
        try:
            rec.close(state="finished")
        except Exception:  # noqa: BLE001 - interpreter is exiting
            pass


def _on_sigterm(ref: weakref.ref[Recorder], signum: int, frame: Any) -> None:
    rec = ref()
    prev = rec._prev_sigterm if rec is not None else signal.SIG_DFL
    if rec is not None and not rec.closed:
        try:
            rec.close(state="terminated")
        except Exception:  # noqa: BLE001
            pass
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_DFL or prev is None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
