"""A webhook slower than the delivery's timeout posts the alert it was sent; a retry posted it again (Slack, Discord
and plain webhooks take no idempotency key), so every alert reached a slow channel ``retries + 1`` times. A request
sent whole that gets no answer is now not sent again, and reported as possibly posted; a request that never went out
(refused, a timeout while connecting) is still retried."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from typing import Any

from entropy_watch.notify.delivery import NOT_RESENT, Delivery, Undelivered
from entropy_watch.notify.notifier import Notifier
from entropy_watch.notify.targets import parse_targets

from .webhook import Webhook


def test_a_slow_webhook_gets_each_alert_once(webhook: Webhook) -> None:
    webhook.mode = "hang"  # takes the POST, answers only after the delivery gave up waiting
    said: list[Undelivered] = []
    d = Delivery(timeout_s=0.3, retries=3, backoff_s=0.01, on_failure=said.append)
    (t,) = parse_targets(webhook.url())
    t0 = time.monotonic()
    d.submit(t, b'{"text": "collapse"}')
    assert d.close(10)
    assert webhook.wait_for(1)  # the server thread recorded it (a loaded machine can hold it past the 0.3 s)
    assert len(webhook.requests) == 1, "posted again after a timeout: the channel shows the alert twice"
    assert d.sent == 0 and d.errors == 1 and time.monotonic() - t0 < 5
    (failure,) = said
    assert failure.reason == "sent, but no answer within 0.3 s: it may have been posted"
    assert failure.advice == NOT_RESENT and "SECRET" not in str(failure)


def test_a_notifier_posts_a_slow_webhook_one_alert_once(webhook: Webhook) -> None:
    webhook.mode = "hang"
    n = Notifier.build(webhook.url(), timeout_s=0.3, retries=2, backoff_s=0.01, on_failure=lambda f: None)
    assert n is not None
    (t,) = n.targets
    n.delivery.submit(t, b'{"text": "collapse"}')
    assert n.close(10)
    assert webhook.wait_for(1) and len(webhook.requests) == 1


@contextlib.contextmanager
def _hang_up() -> Iterator[tuple[int, list[bytes]]]:
    """A server that reads each request whole and closes the connection without an answer."""
    srv = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                data = b""
                conn.settimeout(2)
                while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 2:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                seen.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(5)
        srv.close()


def test_a_connection_closed_unanswered_is_not_posted_again() -> None:
    with _hang_up() as (port, seen):
        said: list[Undelivered] = []
        d = Delivery(timeout_s=5, retries=2, backoff_s=0.01, on_failure=said.append)
        (t,) = parse_targets(f"http://127.0.0.1:{port}/hook/SECRET")
        d.submit(t, b"{}")
        assert d.close(10)
    assert len(seen) == 1 and d.errors == 1
    assert [f.reason for f in said] == ["sent, but the connection closed unanswered: it may have been posted"]


def test_a_request_that_never_went_out_is_still_retried() -> None:
    calls: list[Any] = []

    def refused(req: Any, timeout: float) -> int:
        calls.append(req)
        raise urllib.error.URLError(ConnectionRefusedError(111, "refused"))

    d = Delivery(retries=2, backoff_s=0.01, opener=refused, on_failure=lambda f: None)
    (t,) = parse_targets("http://127.0.0.1:9/hook")
    d.submit(t, b"{}")
    assert d.close(10)
    assert len(calls) == 3 and d.errors == 1
