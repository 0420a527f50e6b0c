"""The HTML report of a run someone else wrote: its name, source, import notes (any JSON value in run.json) and
change-point payloads are text in the page. Checked on the file, and in Debian's chromium (never a download): no
script of the data runs, no element of the data is built, nothing is fetched from elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.report import build_report

from .conftest import CHROMIUM, report_page

WAIT_MS = 120_000


def payload(tag: str) -> str:
    """Markup that, were it HTML, would record ``tag`` in ``window.__pwned`` and fetch a remote image."""
    return (
        f"<img src=x onerror=\"window.__pwned=(window.__pwned||[]).concat(['{tag}'])\">"
        f"<script>window.__pwned=(window.__pwned||[]).concat(['s{tag}'])</script>"
        f"<img src='http://attacker.invalid/{tag}.png'></title></style></script>[x](javascript:alert(1))"
    )


def hostile_report(tmp: Path) -> tuple[Path, str]:
    """A collapsing run whose data carries :func:`payload` everywhere the report reads text; its path and HTML."""
    steps = np.arange(150)
    h = 1.5 * np.exp(-steps / 40.0) + 0.01
    notes = [payload("note"), 7, {"k": payload("dict")}, None]
    resume = {"step": 60, "kind": "resume", "payload": {"checkpoint_step": payload("ckpt")}}
    series = RunSeries(name=payload("name"), steps=steps, entropy=h, meta={"import_notes": notes}, changes=[resume])
    out = build_report(series, analyze(series), tmp / "report.html", source=payload("source"))
    return out, out.read_text(encoding="utf-8")


def test_notes_of_any_json_type_are_escaped_text(tmp_path: Path) -> None:
    """An import note is what run.json holds: a number, an object or null is written as text, not a crash."""
    _, doc = hostile_report(tmp_path)
    for text in ("note: 7", "note: None", "note: {&#x27;k&#x27;: &#x27;&lt;img src=x"):
        assert text in doc, text
    for raw in ("<img src=x", "<script>window.__pwned", "attacker.invalid/name.png'>"):
        assert raw not in doc, raw


@pytest.mark.e2e
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (apt-get install -y chromium)")
def test_report_runs_no_data_in_a_browser(tmp_path: Path) -> None:
    pytest.importorskip("playwright.sync_api")
    path, _ = hostile_report(tmp_path)
    with report_page(path, 1, WAIT_MS) as (page, requests):
        assert page.evaluate("window.__pwned || null") is None
        assert page.evaluate("document.images.length") == 0
        hrefs = page.evaluate("[...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
        assert all(h == "https://plotly.com/" for h in hrefs), hrefs  # Plotly's own mode-bar logo only
        assert [u for u in requests if not u.startswith("file:")] == []
        title = page.title()
        assert title.startswith("entropy_watch report: <img src=x") and "window.__pwned" in title
        body = page.inner_text("body")
        assert "note: 7" in body and "resume from checkpoint step <img src=x" in body
