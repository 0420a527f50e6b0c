"""Delivery: POST JSON bodies to webhooks from background threads, never blocking or failing the caller.

* :meth:`Delivery.submit` only puts (target, body) on that target's bounded queue; when the queue is full the
  message is dropped and counted as a failure (the caller is a training loop: it must never wait on a network);
* each target has its own queue and thread, so a webhook that hangs delays only its own messages, never another
  target's (a hanging secondary webhook held Slack's messages back until the run's close abandoned them);
* an attempt lasts at most ``timeout_s`` in all (connect, send, answer): a webhook that trickles its answer one byte
  per socket timeout is cut off at that deadline (:class:`_Watchdog`); the answer's status is all that is read;
* a failure before the request was sent whole (refused, unknown host, TLS, a timeout while connecting or sending),
  HTTP 5xx or 429 is retried up to ``retries`` times with exponential backoff (``backoff_s``, doubled each time; a
  429's ``Retry-After`` is honoured up to ``max_backoff_s``); other 4xx answers are final (a wrong or revoked
  webhook), and so is a redirect, which is never followed (urllib turned the POST into a GET to wherever
  ``Location`` pointed, an internal address or ``ftp://`` included, and counted the message delivered though its
  body was dropped);
* a request sent whole that gets no answer (a timeout, or the connection closed before the status line) is *not*
  sent again (:class:`NoAnswer`): the webhook may well have posted it, and Slack, Discord and plain webhooks take no
  idempotency key, so a retry posted the alert once more (a webhook slower than ``timeout_s`` posted every alert
  ``retries + 1`` times). At most once, then, as urllib3 does not retry a POST after a read error: the message is
  counted as not confirmed (``errors``, ``on_failure``), the reason says it may have been posted;
* a message that is finally not delivered adds one to :attr:`Delivery.errors`, calls ``on_error(errors)`` (the
  hooks record it as ``hooks/notify_errors``) and ``on_failure`` with an :class:`Undelivered`, which names the target
  by kind and host only, never its URL, and quotes no exception text (urllib's errors can carry the URL). Who builds
  the delivery says what a failure means where it is shown: the default, :class:`WarnOnce`, is the training
  process' (one warning: training continues, the rest are counted); ``entropy-watch watch --notify`` passes its own
  (:class:`entropy_watch.notify.relay.SayOnce`).

Standard library only (``urllib.request``), so the core tier stays light.
"""

from __future__ import annotations

import http.client
import logging
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from entropy_watch import __version__
from entropy_watch.notify.targets import Target

log = logging.getLogger("entropy_watch")

Opener = Callable[[urllib.request.Request, float], int]
"""(request, timeout_s) -> HTTP status; raises ``urllib.error.HTTPError`` for an error answer, :class:`NoAnswer` when
the request was sent and no answer came (not retried), another ``OSError`` when it was not sent (retried)."""


class NoAnswer(OSError):
    """The request was sent whole and no answer came: the attempt's deadline passed (``timed_out``) or the connection
    closed before the status line. The webhook may have posted the message; it is not sent again."""

    def __init__(self, timed_out: bool) -> None:
        super().__init__("no answer to a request sent whole")
        self.timed_out = timed_out


@dataclass(frozen=True)
class Undelivered:
    """One message that was finally not delivered, or was dropped.

    ``label``: the target's :attr:`~entropy_watch.notify.targets.Target.label` (kind and host, never the URL; ""
    when unknown); ``reason``: what happened (``HTTP 500 after 4 attempts``; no URL, no exception text); ``advice``:
    what to check ("" when there is nothing to check on this side); ``errors``: the delivery's failures so far.
    """

    label: str
    reason: str
    advice: str = ""
    errors: int = 0

    def __str__(self) -> str:
        return f"{self.reason}: {self.advice}" if self.advice else self.reason


OnFailure = Callable[[Undelivered], Any]
"""Called from the delivery thread for each undelivered message."""


class WarnOnce:
    """The default ``on_failure``, for a delivery inside a training process: the first failure logs one warning
    (training continues; later failures are counted as ``hooks/notify_errors``, which the hooks record through
    ``on_error``); later ones only count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warned = False

    def __call__(self, failure: Undelivered) -> None:
        with self._lock:
            first, self._warned = not self._warned, True
        if first:
            where = f" to {failure.label}" if failure.label else ""
            log.warning(
                "entropy_watch: a notification%s was not delivered: %s; training continues, later failures are "
                "counted as hooks/notify_errors",
                where,
                failure,
            )


def _urlopen(req: urllib.request.Request, timeout: float) -> int:
    """POST ``req``; its HTTP status (a 2xx), else raises as ``urllib.request.urlopen`` does. No redirect is followed
    (a 3xx raises ``HTTPError``) and the whole attempt ends by ``timeout`` (``TimeoutError``, or :class:`NoAnswer`
    once the request was sent whole, as for a connection closed before the answer); the body of the answer is not
    read (a 200 with a huge or endless body is delivered all the same)."""
    with _Watchdog(timeout) as dog:
        try:
            with _opener().open(req, timeout=timeout) as resp:
                return int(resp.status)
        except urllib.error.HTTPError:  # an answer, if an error one
            raise
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            if dog.sent:
                raise NoAnswer(dog.expired or isinstance(getattr(e, "reason", e), TimeoutError)) from None
            if dog.expired:
                raise TimeoutError("the attempt's deadline passed") from None
            raise


def _opener() -> urllib.request.OpenerDirector:
    """urllib's opener (the environment's proxies included) without redirects, its connections watched."""
    return urllib.request.build_opener(_NoRedirect, _HTTPHandler, _HTTPSHandler)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured (or hostile): the 3xx stays an error (``HTTPError``)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        return None

    http_error_301 = http_error_302 = http_error_303 = http_error_307 = http_error_308 = _refuse


_current = threading.local()  # the running attempt's _Watchdog, per delivery thread


class _Watchdog:
    """Ends one attempt at its deadline: shuts down the sockets the attempt opened, so that a webhook answering one
    byte within every socket timeout cannot hold the delivery thread past ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self.sent = False  # the request went out whole: from here on a failure is ambiguous (NoAnswer)
        self._done = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        _current.dog = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _current.dog = None
        with self._lock:
            self._done = True
            self._socks.clear()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._socks:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # the blocked recv returns at once; urllib closes the socket
    except OSError:  # closed already, or the plain socket a TLS one was made from
        pass


def _watch(sock: socket.socket) -> socket.socket:
    dog = getattr(_current, "dog", None)
    if dog is not None:
        dog.add(sock)
    return sock


def _mark_sent() -> None:
    """Called as the answer is awaited (``getresponse``, after ``request`` wrote the body): the request is sent."""
    dog = getattr(_current, "dog", None)
    if dog is not None:
        dog.sent = True


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        create = self._create_connection
        self._create_connection = lambda *a, **kw: _watch(create(*a, **kw))  # a proxy's CONNECT is watched too

    def getresponse(self) -> http.client.HTTPResponse:
        _mark_sent()
        return super().getresponse()


class _HTTPSConnection(http.client.HTTPSConnection):
    def getresponse(self) -> http.client.HTTPResponse:
        _mark_sent()
        return super().getresponse()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        create = self._create_connection
        self._create_connection = lambda *a, **kw: _watch(create(*a, **kw))

    def connect(self) -> None:
        """``HTTPSConnection.connect`` with the TLS socket watched before its handshake."""
        http.client.HTTPConnection.connect(self)
        host = self._tunnel_host or self.host
        ctx = self._context
        self.sock = _watch(ctx.wrap_socket(self.sock, server_hostname=host, do_handshake_on_connect=False))
        self.sock.do_handshake()


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class: Any, req: urllib.request.Request, **kwargs: Any) -> http.client.HTTPResponse:
        return super().do_open(_HTTPSConnection, req, **kwargs)


class Delivery:
    """The queues and threads that send notification bodies: one of each per target.

    Args:
        timeout_s: the longest one attempt may take (connect, send, answer).
        retries: further attempts after the first for retryable failures.
        backoff_s: wait before the first retry; doubled for each later one.
        max_backoff_s: cap of any single wait (also of a 429's ``Retry-After``).
        max_queue: messages that may wait for each target; more are dropped and counted.
        on_error: called with the running failure count after each undelivered message (from a thread).
        on_failure: called with each :class:`Undelivered` (from a thread): what a failure means to whoever reads
            it; default :class:`WarnOnce` (the training process' wording).
        opener: the POST function (tests); default a urllib POST that follows no redirect (:func:`_urlopen`).
    """

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_queue: int = 64,
        on_error: Callable[[int], Any] | None = None,
        on_failure: OnFailure | None = None,
        opener: Opener | None = None,
    ) -> None:
        self.timeout_s = float(timeout_s)
        self.retries = max(0, int(retries))
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.on_error = on_error
        self.on_failure: OnFailure = on_failure if on_failure is not None else WarnOnce()
        self.errors = 0
        self.sent = 0
        self.abandoned = 0  # messages still queued or in flight when close() stopped waiting
        self._open = opener or _urlopen
        self._max_queue = max(1, int(max_queue))
        self._queues: dict[Target, queue.Queue[bytes | None]] = {}  # one per target, each with its thread
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False

    def submit(self, target: Target, body: bytes) -> bool:
        """Queue one POST; False (and counted as a failure) when the target's queue is full or delivery is closed."""
        if self._closed:
            return False
        try:
            self._queue(target).put_nowait(body)
            return True
        except queue.Full:
            self._failed(target, "dropped: the notification queue is full (the webhook is slower than the alerts)")
            return False

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued message is handled (delivered or failed, retries included), at most ``timeout_s``
        (None: however long that takes, each attempt being bounded by the delivery's own ``timeout_s`` and each wait
        by ``max_backoff_s``); True when nothing is left. Delivery goes on either way."""
        deadline = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)
        while self.pending and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.01)
        return not self.pending

    def close(self, timeout_s: float | None = 10.0) -> bool:
        """Send what is queued, waiting at most ``timeout_s`` (None: until it is handled, see :meth:`drain`); True
        when everything queued was handled. What is left then is abandoned: :attr:`abandoned` says how many (the
        threads count them as failures as they meet them, unless the process ends first)."""
        self._closed = True
        with self._lock:
            queues = list(self._queues.values())
        if not queues:
            return True
        done = self.drain(timeout_s)
        self.abandoned = self.pending
        self._stop.set()
        for q in queues:
            try:
                q.put_nowait(None)  # wake the thread
            except queue.Full:
                pass
        return done

    @property
    def pending(self) -> int:
        """Messages queued or in flight."""
        with self._lock:
            queues = list(self._queues.values())
        return sum(int(q.unfinished_tasks) for q in queues)

    # ---- the threads ---------------------------------------------------------------------------------------------
    def _queue(self, target: Target) -> queue.Queue[bytes | None]:
        with self._lock:
            q = self._queues.get(target)
            if q is None:
                q = self._queues[target] = queue.Queue(maxsize=self._max_queue)
                name = f"entropy_watch-notify-{len(self._queues)}"
                threading.Thread(target=self._run, args=(target, q), name=name, daemon=True).start()
            return q

    def _run(self, target: Target, q: queue.Queue[bytes | None]) -> None:
        while True:
            body = q.get()
            try:
                if body is None:
                    if self._stop.is_set():
                        return
                    continue
                why = self._post(target, body)
                if why is None:
                    with self._lock:
                        self.sent += 1
                else:
                    self._failed(target, *why)
            except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                self._failed(target, f"unexpected {type(exc).__name__}")
            finally:
                q.task_done()
            if self._stop.is_set() and q.empty():
                return

    def _post(self, target: Target, body: bytes) -> tuple[str, str] | None:
        """None when delivered, else why not and what to check (no URL, no exception text)."""
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": f"entropy-watch/{__version__}"}
        wait = self.backoff_s
        why, advice = "", ""
        for attempt in range(self.retries + 1):
            if attempt:
                if self._stop.wait(min(wait, self.max_backoff_s)):  # close() gave up waiting
                    return f"{why} after {_attempts(attempt)}, abandoned at close", advice
                wait *= 2
            req = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
            try:
                status = self._open(req, self.timeout_s)
            except urllib.error.HTTPError as e:
                status = int(e.code)
                e.close()
                if 300 <= status < 400:
                    return f"HTTP {status}, a redirect (not followed)", CHECK_REDIRECT
                if status == 429:
                    wait = max(wait, _retry_after(e.headers.get("Retry-After") if e.headers else None))
                elif status < 500:
                    return f"HTTP {status}, not retried", CHECK_URL
                why, advice = f"HTTP {status}", ""
                continue
            except NoAnswer as e:  # the webhook may have posted it: a second POST would post it twice
                what = f"no answer within {self.timeout_s:g} s" if e.timed_out else "the connection closed unanswered"
                tried = f" (attempt {attempt + 1})" if attempt else ""
                return f"sent, but {what}{tried}: it may have been posted", NOT_RESENT
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", e)
                timed_out = isinstance(reason, TimeoutError)
                why = f"no answer within {self.timeout_s:g} s" if timed_out else f"{type(reason).__name__}"
                advice = "" if timed_out else CHECK_HOST
                continue
            if 200 <= status < 300:
                return None
            if 300 <= status < 400:
                return f"HTTP {status}, a redirect (not followed)", CHECK_REDIRECT
            if status < 500 and status != 429:
                return f"HTTP {status}, not retried", CHECK_URL
            why, advice = f"HTTP {status}", ""
        return f"{why} after {_attempts(self.retries + 1)}", advice

    def _failed(self, target: Target | None, reason: str, advice: str = "") -> None:
        with self._lock:
            self.errors += 1
            n = self.errors
        _quietly(self.on_failure, Undelivered(target.label if target is not None else "", reason, advice, n))
        if self.on_error is not None:
            with self._report_lock:  # targets fail on their own threads: the counts reported never go down
                _quietly(self.on_error, self.errors)


def _quietly(call: Callable[[Any], Any], arg: Any) -> None:
    """``call(arg)``, whatever it raises: a failing report or counter must not stop delivery."""
    try:
        call(arg)
    except Exception:  # noqa: BLE001 - see the docstring
        pass


CHECK_URL = "check the webhook URL"
"""Advice for an answer that retrying cannot change (a 4xx other than 429: a wrong or revoked webhook)."""
CHECK_REDIRECT = "give the webhook's own URL (a webhook that redirects is not posted to)"
"""Advice for a 3xx: the POST is not repeated elsewhere (a redirect could point anywhere: another host, an internal
address)."""
NOT_RESENT = (
    "not sent again, as webhooks do not de-duplicate (a retry could post it twice): look for it where the webhook "
    "posts (a webhook this slow needs a longer timeout_s)"
)
"""Advice for :class:`NoAnswer`: the message may be there already."""
CHECK_HOST = "check the URL's host and port, and the network"
"""Advice when no connection was made (refused, unknown host, TLS)."""


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
