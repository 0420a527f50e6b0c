"""``app/early.py``: page documents start loading Plotly's code; every other response passes through untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from entropy_watch.app.early import PlotlyEarly, head_tags, plotly_chunk

DOC = b"<html><head><title>Streamlit</title></head><body></body></html>"


def serve(path: str, body: list[bytes], content_type: bytes = b"text/html", status: int = 200, **extra: bytes) -> Any:
    """Run the middleware around an app answering ``body`` (in chunks); returns (request headers the app saw,
    response headers, response body)."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["headers"] = dict(scope["headers"])
        headers = [(b"content-type", content_type), (b"content-length", str(sum(map(len, body))).encode())]
        headers += [(k.encode(), v) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, part in enumerate(body):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(body) - 1})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"accept-encoding", b"gzip"), (b"x", b"y")]}
    asyncio.run(PlotlyEarly(app, chunk="PlotlyChart.abc.js")(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return seen["headers"], dict(start["headers"]), out


def test_page_documents_get_the_tags_with_the_right_length() -> None:
    tags = head_tags("PlotlyChart.abc.js")
    assert b'rel="modulepreload"' in tags and b'import("./static/js/PlotlyChart.abc.js")' in tags
    for path in ("/", "/run", "/compare"):
        request, headers, body = serve(path, [DOC[:20], DOC[20:]])  # in two chunks, as a server may send it
        assert body == DOC.replace(b"</head>", tags + b"</head>")
        assert int(headers[b"content-length"]) == len(body)
        assert b"accept-encoding" not in request and request[b"x"] == b"y"  # answered uncompressed, nothing else lost


def test_everything_else_passes_through_untouched() -> None:
    js = b"console.log(1)</head>"
    for path, body, ctype, status, extra in (
        ("/static/js/index.js", [js], b"text/javascript", 200, {}),
        ("/_stcore/health", [b"ok"], b"text/plain", 200, {}),
        ("/run", [DOC], b"text/html", 304, {}),  # not modified: the browser keeps the edited copy it has
        ("/run", [b"\x1f\x8b..."], b"text/html", 200, {"content-encoding": b"gzip"}),
        ("/media/x.json", [b"{}"], b"application/json", 200, {}),
    ):
        _, headers, out = serve(path, body, ctype, status, **extra)
        assert out == b"".join(body)
        assert int(headers[b"content-length"]) == len(out)


def test_this_streamlit_has_the_chunk_and_a_head_to_put_it_in() -> None:
    # A Streamlit upgrade that renames its Plotly chunk or its index.html must fail here, not silently slow the app.
    import streamlit as st

    chunk = plotly_chunk()
    assert chunk is not None
    static = Path(st.__file__).parent / "static"
    assert (static / "static" / "js" / chunk).is_file()
    assert b"</head>" in (static / "index.html").read_bytes()
