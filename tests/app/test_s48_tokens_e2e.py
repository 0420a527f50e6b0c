"""The token explorer in a real browser (``streamlit run`` + Playwright, Debian's chromium): what a researcher
looking for forking tokens types reaches the table: "show" is the number of tokens shown, a token copied from the
table ("␣Wait") finds itself, "%" is a literal character, a run without sampled tokens says so. Every wait is on a
condition with one generous deadline (a loaded 2-core machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import CHROMIUM, IN_A_BROWSER, LAUNCH_ARGS, streamlit_server
from .test_s48_tokens import EMPTY, RUN, write_token_store

WAIT_MS = 120_000

pytestmark = IN_A_BROWSER


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = write_token_store(tmp_path_factory.mktemp("s48e2e") / "store")
    with streamlit_server(root, tmp_path_factory.mktemp("log") / "streamlit.log", WAIT_MS / 1000) as url:
        yield url


def test_the_explorer_shows_what_is_asked_in_a_browser(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{server}/run?run={RUN}")
        expect(page.get_by_text("25 tokens from 3 steps (0–20).")).to_be_visible()  # one per step showed 3

        def search(text: str) -> None:
            box = page.get_by_label("token contains", exact=True)
            box.fill(text)
            box.press("Enter")

        search("␣Wait")  # as the table shows " Wait"
        expect(page.get_by_text("3 tokens from 3 steps (0–20).")).to_be_visible()
        search("")
        expect(page.get_by_text("25 tokens from 3 steps (0–20).")).to_be_visible()
        limit = page.get_by_label("show", exact=True)
        limit.fill("500")
        limit.press("Enter")
        expect(page.get_by_text("30 tokens from 3 steps (0–20).")).to_be_visible()
        search("%")
        expect(page.get_by_text("3 tokens from 3 steps (0–20).")).to_be_visible()
        page.get_by_test_id("stDataFrame").last.screenshot(path=str(tmp_path / "percent.png"))
        page.goto(f"{server}/run?run={EMPTY}")
        expect(page.get_by_text("This run has no sampled tokens (yet).", exact=False)).to_be_visible()
        browser.close()
