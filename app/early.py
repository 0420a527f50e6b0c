"""Plotly's code from the first byte of the page: an ASGI middleware that adds it to Streamlit's ``index.html``.

Streamlit fetches its Plotly component (``PlotlyChart.<hash>.js``, 4.7 MB of JavaScript) only when the first chart
arrives, and evaluating it is a ~1 s task on the browser's main thread (measured on a 2-core box, every visit, warm
cache or not). Started from a script in the page's first delta, it still ends ~1 s after the chart's data is there.
The document itself can start it: :class:`PlotlyEarly` adds a ``modulepreload`` link and a module script importing the
chunk to every page document Streamlit serves (``/``, ``/run?run=…``, any page route), so the browser fetches and
evaluates it while it waits for the WebSocket and the script run — time the main thread spends idle otherwise.

Installed by ``app/main.py`` (``st.App(..., middleware=[Middleware(PlotlyEarly)])``). Anything that is not an HTML
document passes through untouched; without the chunk (another Streamlit build) the middleware does nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from functools import cache
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

# Paths that are never a page document: Streamlit's bundles, its endpoints, media and components.
NOT_PAGES = ("/static/", "/_stcore/", "/media/", "/component/", "/app/static/")
FRAMING = (b"content-length", b"transfer-encoding")  # replaced by the edited body's own length


@cache
def plotly_chunk() -> str | None:
    """File name of Streamlit's lazily loaded Plotly component (``PlotlyChart.<hash>.js``), None if not found."""
    import streamlit as st

    found = sorted((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"))
    return found[0].name if found else None


def head_tags(chunk: str) -> bytes:
    """What goes before ``</head>``: fetch the chunk now, evaluate it as soon as Streamlit's own module has run.

    Relative URLs like Streamlit's own (``./static/js/…``), so they resolve under a base URL path too."""
    url = f"./static/js/{chunk}"
    return (
        f'<link rel="modulepreload" crossorigin href="{url}">'
        f'<script type="module">import("{url}").catch(() => {{}});</script>'
    ).encode()


class PlotlyEarly:
    """ASGI middleware: page documents (``text/html``) get :func:`head_tags`; every other response passes through.

    The request of a page document is sent on without ``Accept-Encoding`` so Streamlit answers it uncompressed (the
    document is ~6 kB) and the tags can be added; ``Content-Length`` is corrected."""

    def __init__(self, app: ASGIApp, chunk: str | None = None) -> None:
        self.app = app
        chunk = chunk or plotly_chunk()
        self.tags = head_tags(chunk) if chunk else None

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        path = scope.get("path", "")
        if self.tags is None or scope["type"] != "http" or scope["method"] != "GET" or path.startswith(NOT_PAGES):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]
        start: Message | None = None
        chunks: list[bytes] = []

        async def edit(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                html = headers.get(b"content-type", b"").startswith(b"text/html")
                if html and b"content-encoding" not in headers and message.get("status") == 200:
                    start = message  # hold it: the length changes
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = b"".join(chunks)
                if b"</head>" in body:
                    body = body.replace(b"</head>", self.tags + b"</head>", 1)
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in FRAMING]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, edit)
