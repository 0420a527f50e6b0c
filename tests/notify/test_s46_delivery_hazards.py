"""Delivery against webhooks that misbehave on the wire: a hanging target holds back no other target's messages, a
redirect is never followed (nor counted delivered), and an answer trickled byte by byte ends at the attempt's
deadline."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from entropy_watch.analysis import Alert
from entropy_watch.notify import Delivery, Notifier, NotifyPolicy, Undelivered, parse_targets

from .webhook import serve

ALERT = Alert(120, "guard.floor", "collapse", "critical", "entropy at the floor for 5 steps")


@contextlib.contextmanager
def _server(answer: Any) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """A local server whose POST answer is ``answer(handler)``; yields its port and the (method, path) it got."""
    seen: list[tuple[str, str]] = []
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, self.path))

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._record()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            self._record()
            with contextlib.suppress(OSError):
                answer(self, stop)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_a_hanging_webhook_holds_back_no_other_target() -> None:
    """One delivery thread served every target in turn: behind a hanging secondary webhook, Slack's messages waited
    until the run's close abandoned them."""
    with serve() as stuck, serve() as slack:
        stuck.mode = "hang"
        specs = [stuck.url("/json/SECRET"), f"slack+{slack.url('/slack/SECRET')}"]
        n = Notifier.build(specs, policy=NotifyPolicy(cooldown_s=0), timeout_s=30, retries=0)
        n.alert("r", ALERT)
        n.alert("r", Alert(130, "guard.explosion", "explosion", "critical", "entropy rising"))
        # a loaded machine; under the POST timeout (30 s), after which one delivery thread for all targets sends too
        deadline = time.monotonic() + 20.0
        while (n.delivery.sent < 2 or stuck.hanging < 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert n.delivery.sent == 2, "the Slack messages waited behind the hanging webhook"
        assert len(slack.requests) == 2 and stuck.hanging == 1
        stuck.release.set()
        assert n.close(10) and n.delivery.sent == 4 and n.errors == 0


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_nor_counted_delivered(code: int) -> None:
    """urllib turned the POST into a GET to wherever Location pointed (another host, an internal address, ftp://)
    and, the GET answered 200, counted the message delivered though its body was dropped."""
    with _server(lambda h, stop: None) as (inner_port, inner):

        def redirect(h: BaseHTTPRequestHandler, stop: threading.Event) -> None:
            h.send_response(code)
            h.send_header("Location", f"http://127.0.0.1:{inner_port}/internal/admin")
            h.send_header("Content-Length", "0")
            h.end_headers()

        with _server(redirect) as (port, outer):
            said: list[Undelivered] = []
            d = Delivery(retries=2, backoff_s=0.01, on_failure=said.append)
            (t,) = parse_targets(f"http://127.0.0.1:{port}/hook/SECRET")
            d.submit(t, b"{}")
            assert d.close(10)
    assert inner == [] and outer == [("POST", "/hook/SECRET")]  # one POST, nothing sent to where it pointed
    assert d.sent == 0 and d.errors == 1
    (failure,) = said
    assert f"HTTP {code}" in failure.reason and "redirect" in failure.reason and "SECRET" not in str(failure)


def _trickle_status(h: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    h.wfile.write(b"HTTP/1.1 ")  # then one byte at a time, each well within the socket timeout
    while not stop.wait(0.1):
        h.wfile.write(b"2")
        h.wfile.flush()


def _trickle_body(h: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "1000000")
    h.end_headers()
    while not stop.wait(0.1):
        h.wfile.write(b"x")
        h.wfile.flush()


@pytest.mark.parametrize(("answer", "delivered"), [(_trickle_status, False), (_trickle_body, True)])
def test_a_trickled_answer_ends_at_the_attempt_deadline(answer: Any, delivered: bool) -> None:
    """The socket timeout bounds each read, not the attempt: a webhook sending one byte every 0.1 s held the delivery
    thread (and ``close``) for as long as it liked. A 200 whose body never ends is delivered: its status is enough."""
    with _server(answer) as (port, seen):
        said: list[Undelivered] = []
        d = Delivery(timeout_s=1.0, retries=1, backoff_s=0.01, on_failure=said.append)
        (t,) = parse_targets(f"http://127.0.0.1:{port}/hook/SECRET")
        t0 = time.monotonic()
        d.submit(t, b"{}")
        assert d.close(10), "close gave up: the attempt never ended"
        took = time.monotonic() - t0
    if delivered:
        assert d.sent == 1 and said == [] and len(seen) == 1
    else:
        assert d.sent == 0 and len(seen) == 1  # sent in full, cut off at 1 s: not sent again (it may have been posted)
        assert [f.reason for f in said] == ["sent, but no answer within 1 s: it may have been posted"]
    assert took < 8


def test_failure_counts_reported_from_several_targets_never_go_down() -> None:
    """Each target fails on its own thread; the count handed to ``on_error`` (the hooks record it as the scalar
    ``hooks/notify_errors``, whose last value is the total) must not be overtaken by an older, smaller one."""
    seen: list[int] = []

    def on_error(n: int) -> None:
        if n == 1:
            time.sleep(0.3)  # the first report is slow: the second target's failure comes meanwhile
        seen.append(n)

    def refuse(req: Any, timeout: float) -> int:
        return 404

    d = Delivery(retries=0, on_error=on_error, on_failure=lambda f: None, opener=refuse)
    a, b = parse_targets(["http://127.0.0.1:9/a/SECRET", "http://127.0.0.1:9/b/SECRET"])
    d.submit(a, b"{}")
    time.sleep(0.05)
    d.submit(b, b"{}")
    assert d.close(10) and d.errors == 2
    assert seen == sorted(seen) and seen[-1] == 2
