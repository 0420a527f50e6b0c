"""An HTTP proxy in front of the test S3 server (moto) that answers chosen requests with 403 AccessDenied: a bucket
policy that changes mid-run, credentials that may list but not read."""

from __future__ import annotations

import http.client
import http.server
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
    while ``on`` is set, passing everything else through."""

    def __init__(self, upstream: str, deny: Callable[[str, str], bool]) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.on = False
        self.denied = 0
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
                if proxy.on and deny(self.command, self.path):
                    proxy.denied += 1
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
                self._reply(resp.status, resp.getheaders(), resp.read())
                conn.close()

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
