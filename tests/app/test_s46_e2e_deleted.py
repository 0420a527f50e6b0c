"""Real browser: a run's folder deleted while its Run page or a Compare page showing it is open and refreshing.

The live panels refresh on their own (fragments) and the server's reader still holds the rows it read of the run,
so only a browser on a running server sees what they draw then: one line saying the run has gone, no traceback,
nothing of the run drawn as if it were still there (``entropy-watch show`` says it does not exist).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import CHROMIUM, IN_A_BROWSER, LAUNCH_ARGS, streamlit_server

WAIT_MS = 120_000  # server start and a page's first script run on a loaded 2-core machine
GONE_MS = 45_000  # the panels' next refreshes (every 1 s) after the deletion, generously
GONE = "no longer in the store"

pytestmark = IN_A_BROWSER


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from entropy_watch.synthetic import write_to_store

    root = tmp_path_factory.mktemp("deleted") / "store"
    for run, kind in (("doomed", "fast_collapse"), ("doomed-too", "fast_collapse"), ("kept", "healthy")):
        write_to_store(root, run, kind, seed=3, n_steps=120)
    return root


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with streamlit_server(store, tmp_path_factory.mktemp("log") / "streamlit.log", WAIT_MS / 1000) as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        pg = b.new_page(viewport={"width": 1400, "height": 1600})
        yield pg
        b.close()


def _charts(page: object) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(e => e._fullData && e._fullData.length)",
        timeout=WAIT_MS,
    )


def _says_gone(page: object) -> None:
    """Wait for the one line; no traceback meanwhile (a panel's exception box would be one)."""
    deadline = time.monotonic() + GONE_MS / 1000
    while True:
        assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]  # type: ignore[attr-defined]
        if GONE in page.inner_text("body"):  # type: ignore[attr-defined]
            return
        assert time.monotonic() < deadline, "the page never said the run had gone"
        page.wait_for_timeout(300)  # type: ignore[attr-defined]


def test_run_page_of_a_deleted_run_says_it_has_gone(server: str, store: Path, page: object) -> None:
    page.goto(f"{server}/run?run=doomed")  # type: ignore[attr-defined]
    _charts(page)
    page.wait_for_function(  # type: ignore[attr-defined]  # the header's "last step"
        "() => [...document.querySelectorAll('[data-testid=stMetricValue]')].some(e => e.innerText.trim() === '119')",
        timeout=WAIT_MS,
    )
    shutil.rmtree(store / "run=doomed")
    _says_gone(page)
    # within the run listing's next tick (5 s) every panel has dropped the run: the line stays, no numbers of it
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelectorAll('[data-testid=stMetricValue]').length === 0", timeout=GONE_MS
    )
    page.wait_for_timeout(2500)  # type: ignore[attr-defined]  # a few more refreshes
    assert GONE in page.inner_text("body")  # type: ignore[attr-defined]
    assert page.get_by_test_id("stMetricValue").count() == 0  # type: ignore[attr-defined]
    assert page.locator('[data-testid="stException"]').count() == 0  # type: ignore[attr-defined]


def test_compare_page_names_a_deleted_run_and_draws_the_rest(server: str, store: Path, page: object) -> None:
    page.goto(f"{server}/compare?run=doomed-too&run=kept")  # type: ignore[attr-defined]
    _charts(page)
    shutil.rmtree(store / "run=doomed-too")
    _says_gone(page)
    # the charts' own refresh drops the run (on a loaded box seconds after the line: waited on, not on a pause)
    drawn = "() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(e => (e._fullData || []).map(t => t.name))"
    page.wait_for_function(  # type: ignore[attr-defined]
        f"() => {{ const n = ({drawn})(); return n.includes('kept') && !n.includes('doomed-too'); }}", timeout=GONE_MS
    )
    page.wait_for_timeout(2500)  # type: ignore[attr-defined]  # a few more refreshes: it stays dropped
    names = page.evaluate(drawn)  # type: ignore[attr-defined]
    assert "kept" in names and "doomed-too" not in names, names
