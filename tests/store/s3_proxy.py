"""An HTTP proxy in front of the test S3 server (moto) that answers chosen requests with 403 AccessDenied (a bucket
policy that changes mid-run, credentials that may list but not read), or cuts their answers short (a connection
dropped mid-body, as a loaded server or a flaky network does)."""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

DENIED = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
WRITES = ("PUT", "POST", "DELETE")


def writes(command: str, path: str) -> bool:
    """Every write (PUT, POST, DELETE)."""
    return command in WRITES


class DenyingProxy:
    """An HTTP proxy in front of the S3 server answering 403 AccessDenied to requests ``deny(command, path)`` picks
    while ``on`` is set, passing everything else through. ``cut``: instead of a 403, the upstream answer's headers
    and half its body, then the connection closes; ``budget``: how many requests to fail (None: all while ``on``)."""

    def __init__(
        self, upstream: str, deny: Callable[[str, str], bool], *, cut: bool = False, budget: int | None = None
    ) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.on = False
        self.denied = 0
        self.cut, self.budget = cut, budget
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    data = b""
                    while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return data
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                length = {k.lower(): v for k, v in headers}.get("content-length", str(len(body)))
                self.send_header("Content-Length", length if self.command == "HEAD" else str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                failing = proxy.on and deny(self.command, self.path)
                failing = failing and (proxy.budget is None or proxy.denied < proxy.budget)
                if failing:
                    proxy.denied += 1
                    if not proxy.cut:
                        self._reply(403, [("Content-Type", "application/xml")], DENIED)
                        return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                chunked = "chunked" in self.headers.get("Transfer-Encoding", "")
                conn.request(
                    self.command, self.path, body=iter([body]) if chunked else body, headers=headers,
                    encode_chunked=chunked,
                )  # fmt: skip
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if failing and proxy.cut and self.command == "GET" and len(data) > 1:
                    self.send_response(resp.status)  # the whole answer's length, half its bytes, then the line drops
                    for k, v in resp.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection"):
                            self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._reply(resp.status, resp.getheaders(), data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[DenyingProxy]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
