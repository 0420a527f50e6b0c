"""One background worker that runs ``Watch``'s per-step statistics off the training thread.

``Watch.log_tokens`` computes token entropy from logits on the training thread (logits are too big to copy), then
hands the small per-token tensors of the step to :class:`StatsWorker`, which runs ``step_stats`` (about 100 small
eager torch ops and, on a GPU, the step's one device-to-host copy, which would otherwise make the training thread
wait for the device every step) and passes the results to the ``Recorder`` exactly as the synchronous path does.

* FIFO, one thread: steps reach the recorder in the order they were logged.
* Bounded: at most ``max_pending`` steps wait; beyond that the caller waits for a free slot (back-pressure), so
  memory stays bounded, order is kept and no statistic is ever dropped.
* Never raises: a job's exception goes to ``on_error`` (``Recorder.failure`` semantics: counted, warned once).
* :meth:`StatsWorker.drain` waits for every pending job; ``Watch.flush``/``close`` and the recorder's atexit and
  SIGTERM paths call it before the final publish.

:func:`snapshot` decides what a queued step holds on to: see its docstring.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger("entropy_watch")

Job = Callable[[], None]


class StatsWorker:
    """A lazily started daemon thread running jobs in submission order.

    Args:
        on_error: called (on the worker thread) with each exception a job raises; must not raise itself.
        max_pending: jobs allowed to wait; :meth:`submit` blocks while this many are pending.
        name: the thread's name.
    """

    def __init__(self, on_error: Callable[[BaseException], None], *, max_pending: int = 8, name: str = "") -> None:
        if max_pending < 1:
            raise ValueError(f"StatsWorker: max_pending must be >= 1, got {max_pending!r}")
        self.max_pending = int(max_pending)
        self._on_error = on_error
        self._name = name or "entropy_watch-stats"
        # A reentrant lock: a SIGTERM handler that drains may interrupt the main thread while it holds the lock.
        self._cond = threading.Condition(threading.RLock())
        self._jobs: deque[Job] = deque()
        self._running = False  # a job has been taken off the queue and is not finished yet
        self._stopped = False
        self._thread: threading.Thread | None = None
        _WORKERS.add(self)

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished yet (queued plus the one running)."""
        with self._cond:
            return len(self._jobs) + int(self._running)

    def submit(self, job: Job) -> None:
        """Queue ``job``; waits while ``max_pending`` jobs are pending. After :meth:`close`, runs it here."""
        with self._cond:
            if self._stopped or (self._thread is not None and not self._thread.is_alive()):
                run_now = True  # closed, or the thread is gone (e.g. after fork): keep the order by running here
            else:
                run_now = False
                self._start()
                self._cond.wait_for(lambda: len(self._jobs) + int(self._running) < self.max_pending)
                self._jobs.append(job)
                self._cond.notify_all()
        if run_now:
            self.drain()
            self._run_one(job)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job has finished; False if ``timeout`` seconds passed first."""
        if threading.current_thread() is self._thread:
            return False  # a job cannot wait for itself
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                return not self._jobs
            return self._cond.wait_for(lambda: not self._jobs and not self._running, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Drain, then stop the thread. Later submissions run on the caller's thread. Idempotent."""
        self.drain(timeout)
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ---- internals -------------------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._stopped)
                if not self._jobs:
                    return  # stopped and drained
                job = self._jobs.popleft()
                self._running = True
            try:
                self._run_one(job)
            finally:
                # the job (its step's tensor snapshots) is not kept while the loop waits for the next one
                del job
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def _run_one(self, job: Job) -> None:
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - a monitor never raises into training
            try:
                self._on_error(exc)
            except Exception:  # noqa: BLE001 - on_error itself failed: last resort
                log.exception("entropy_watch: reporting a statistics failure failed")


_WORKERS: weakref.WeakSet[StatsWorker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A fresh lock in a forked child: the worker thread may have held it at the fork and does not exist there, so
    a ``submit``/``drain`` (a log in the child, the recorder's close) would wait forever on it."""
    for worker in list(_WORKERS):
        worker._cond = threading.Condition(threading.RLock())
        worker._running = False


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def snapshot(t: torch.Tensor | None) -> torch.Tensor | None:
    """A detached copy of a caller's per-token tensor that a queued step can read later.

    The caller owns its tensors and may change them in place after ``log_tokens`` returns (a reused buffer, a
    mask edited for the next micro-batch, ``advantages`` normalised in place), so every tensor the caller gave is
    cloned; they are ``(B, T)`` or ``(B,)`` — kilobytes, microseconds. On a GPU the clone is queued on the current
    stream like any kernel, so the training thread does not wait; :class:`DeviceFence` orders the worker after it.
    Tensors computed by ``Watch`` itself (entropy from logits) are not shared with anyone and are only detached.
    """
    return None if t is None else t.detach().clone()


class DeviceFence:
    """Orders the worker's GPU work after the training stream's work on the snapshot (CUDA only; no-op on CPU).

    Made on the training thread right after the snapshots: records an event on the current stream. On the worker,
    :meth:`enter` makes a side stream wait for that event (the host does not wait) and marks the snapshots as used
    by that stream, so the caching allocator does not hand their memory back to the training stream while the
    worker's kernels may still read it.
    """

    def __init__(self, tensors: list[torch.Tensor | None]) -> None:
        self._tensors = [t for t in tensors if t is not None]
        self._event: Any = None
        dev = self._tensors[0].device if self._tensors else None
        if dev is not None and dev.type == "cuda":
            self._device = dev
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(dev))

    def enter(self, side_streams: dict[Any, Any]) -> Any:
        """A context manager for the worker's work: the side stream of the device, or a no-op on CPU."""
        import contextlib

        if self._event is None:
            return contextlib.nullcontext()
        stream = side_streams.get(self._device)
        if stream is None:
            stream = side_streams[self._device] = torch.cuda.Stream(self._device)
        stream.wait_event(self._event)
        for t in self._tensors:
            if t.device.type == "cuda":
                t.record_stream(stream)
        return torch.cuda.stream(stream)
