"""A local webhook on 127.0.0.1 for the notification tests (tests/notify, tests/hooks): records every POST; answers
200, fails or hangs."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Webhook:
    """``mode``: "ok" (200), "error" (``status``, default 500), "hang" (answer only after ``release`` is set).
    ``requests``: (path, headers, parsed JSON body) per POST received; ``hanging``: requests now being held."""

    port: int = 0
    mode: str = "ok"
    status: int = 500
    retry_after: str | None = None
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    hanging: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    received: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str = "/hook/T000/SECRET-TOKEN") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str | None = None) -> list[Any]:
        return [b for p, _, b in list(self.requests) if path is None or p == path]

    def wait_for(self, n: int, timeout: float = 30.0) -> bool:
        """Wait until ``n`` requests arrived (answered or not)."""
        with self.received:
            return self.received.wait_for(lambda: len(self.requests) >= n, timeout)


def _handler(hook: Webhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw
            hang = hook.mode == "hang"
            with hook.received:
                hook.requests.append((self.path, dict(self.headers), body))
                if hang:  # counted with the request: wait_for(n) returning means it is held (a test reads it then)
                    hook.hanging += 1
                hook.received.notify_all()
            if hang:
                hook.release.wait(60)
                with hook.received:
                    hook.hanging -= 1
            if hook.mode == "error":
                self.send_response(hook.status)
                if hook.retry_after is not None:
                    self.send_header("Retry-After", hook.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:  # keep the test output clean
            pass

    return Handler


@contextlib.contextmanager
def serve() -> Iterator[Webhook]:
    """A running local webhook (127.0.0.1, a free port), shut down on exit."""
    hook = Webhook()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hook))
    server.daemon_threads = True
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.release.set()
        server.shutdown()
        server.server_close()
