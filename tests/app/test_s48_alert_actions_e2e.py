"""The alert tables' suggested actions in a real browser (``streamlit run`` + Playwright, Debian's chromium): an info
note of a collapsing run and the alerts an earlier analysis stored each list their actions, one list item per
action, the text as the analysis wrote it (markdown in it shown, never a link). Every wait is on a condition with one
generous deadline (a loaded 2-core machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from entropy_watch.app.display import WORD_JOINER

from .conftest import CHROMIUM, COLLAPSE, IN_A_BROWSER, LAUNCH_ARGS, streamlit_server
from .test_s48_alert_actions import RUN, TRICKY_ACTION, alert, write_recorded

WAIT_MS = 120_000

pytestmark = IN_A_BROWSER


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from entropy_watch.synthetic import write_to_store

    root = write_recorded(tmp_path_factory.mktemp("s48actions") / "store")
    write_to_store(root, COLLAPSE, "fast_collapse", seed=1, n_steps=300)
    return root


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with streamlit_server(store, tmp_path_factory.mktemp("log") / "streamlit.log", WAIT_MS / 1000) as url:
        yield url


def listed(page: object, expander: str) -> tuple[list[str], int]:
    """Open the expander whose label starts ``expander``: (the text of its table's list items, its links)."""
    from playwright.sync_api import expect

    box = page.get_by_test_id("stExpander").filter(has_text=expander)  # type: ignore[attr-defined]
    box.get_by_text(expander).click()
    items = box.get_by_test_id("stTable").locator("li")
    expect(items.first).to_be_visible()
    texts = [t.replace(WORD_JOINER, "") for t in items.all_inner_texts()]
    return texts, box.get_by_test_id("stTable").locator("a").count()


def test_alert_tables_show_each_alert_s_actions_in_a_browser(server: str, store: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from entropy_watch.analysis import RunSeries, analyze
    from entropy_watch.store import Store

    notes = [a for a in analyze(RunSeries.from_reader(Store(store), COLLAPSE)).verdict.alerts if a.severity == "info"]
    assert any(a.actions for a in notes), notes  # the synthetic collapse's zero-variance note suggests actions
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{server}/run?run={RUN}")
        texts, links = listed(page, "3 stored alerts")
        assert texts == [*alert(12).actions, *alert(9).actions, TRICKY_ACTION] and links == 0, texts  # newest first
        page.get_by_test_id("stTable").last.screenshot(path=str(tmp_path / "stored.png"))
        page.goto(f"{server}/run?run={COLLAPSE}")
        n = len(notes)
        texts, links = listed(page, f"🔵 {n} info note{'s' if n != 1 else ''}")
        assert texts == [x for a in notes for x in a.actions] and links == 0, texts
        page.get_by_test_id("stTable").last.screenshot(path=str(tmp_path / "notes.png"))
        browser.close()
