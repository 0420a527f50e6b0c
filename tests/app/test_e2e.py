"""Real-browser test: ``streamlit run app/main.py`` driven by Playwright with Debian's chromium (never a download).

Checks that every page renders its Plotly charts (waiting on Plotly's decoded ``_fullData``), that new data written
to the store appears within a refresh, and saves screenshots to the test's tmp dir and to /tmp/ew_screenshots/.

Every wait is on a condition, with one generous deadline (``WAIT_MS``) sized for a loaded 2-core machine, where a
page's first script run can take tens of seconds; Playwright's ``expect`` has its own 5 s default, which
``page.set_default_timeout`` does not change, so it is raised with ``expect.set_options`` too.
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter

from .conftest import CHROMIUM, COLLAPSE, HEALTHY, IN_A_BROWSER, LAUNCH_ARGS, streamlit_server

WAIT_MS = 120_000  # any one condition: server start, a page's script run, a live refresh
SHOTS = Path("/tmp/ew_screenshots")

pytestmark = IN_A_BROWSER


@pytest.fixture(scope="module")
def e2e_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from entropy_watch.synthetic import write_to_store

    root = tmp_path_factory.mktemp("e2e") / "store"
    write_to_store(root, COLLAPSE, "fast_collapse", seed=1, n_steps=400)
    write_to_store(root, HEALTHY, "healthy", seed=2, n_steps=400)
    write_to_store(root, "live", "healthy", seed=4, n_steps=150)
    return root


@pytest.fixture(scope="module")
def server(e2e_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with streamlit_server(e2e_store, tmp_path_factory.mktemp("log") / "streamlit.log", WAIT_MS / 1000) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)  # process-wide: every expect() in the browser tests
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


def _charts_rendered(page: object, at_least: int, timeout_ms: int = WAIT_MS) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        """n => { const d = [...document.querySelectorAll('.js-plotly-plot')];
                  return d.length >= n && d.every(e => e._fullData && e._fullData.length > 0); }""",
        arg=at_least,
        timeout=timeout_ms,
    )


def _titles_rendered(page: object, titles: list[str], timeout_ms: int = WAIT_MS) -> None:
    """Wait until a rendered chart exists for each title fragment (e.g. after opening a tab)."""
    page.wait_for_function(  # type: ignore[attr-defined]
        """ts => { const d = [...document.querySelectorAll('.js-plotly-plot')]
                     .filter(e => e._fullData && e._fullData.length > 0).map(e => e.layout.title.text);
                   return ts.every(t => d.some(x => x.includes(t))); }""",
        arg=titles,
        timeout=timeout_ms,
    )


def _shot(page: object, tmp_path: Path, name: str, height: int = 1000) -> None:
    """Screenshot at a viewport tall enough for the page (Streamlit scrolls inside its own container, so a
    full-page screenshot alone would stop at the viewport)."""
    path = tmp_path / f"{name}.png"
    page.set_viewport_size({"width": 1400, "height": height})  # type: ignore[attr-defined]
    page.wait_for_timeout(800)  # type: ignore[attr-defined]
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)


def test_pages_render_and_update_live(server: str, browser: object, e2e_store: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.set_default_timeout(WAIT_MS)

    page.goto(f"{server}/")
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()
    expect(page.get_by_text("3 of 3 runs")).to_be_visible()
    page.wait_for_timeout(500)
    _shot(page, tmp_path, "01_runs")

    doc = urllib.request.urlopen(f"{server}/run?run={COLLAPSE}", timeout=30).read()
    assert b'rel="modulepreload" crossorigin href="./static/js/PlotlyChart.' in doc  # app/early.py is installed
    page.goto(f"{server}/run?run={COLLAPSE}")
    _charts_rendered(page, 4)  # on load: entropy, the first tab (histogram, quantile fan), alert timeline
    _titles_rendered(page, ["Token entropy (mean) and forecast", "histogram", "quantiles", "Alert timeline"])
    y_titles = page.evaluate("[...document.querySelectorAll('.js-plotly-plot')].map(e => e.layout.yaxis.title.text)")
    _shot(page, tmp_path, "02_run", height=2600)
    for i, (tab, titles) in enumerate(
        [("Drivers", ["Clipped tokens", "Advantages", "Entropy change per step", "Covariance drive"]),
         ("Reward, precision", ["vs entropy"])]
    ):  # fmt: skip
        page.get_by_role("tab", name=tab).click()
        _titles_rendered(page, titles)
        y_titles += page.evaluate(
            "[...document.querySelectorAll('.js-plotly-plot')].map(e => e.layout.yaxis.title.text)"
        )
        _shot(page, tmp_path, f"02_run_tab{i + 2}", height=2600)
    assert all(y_titles), "every chart has a y-axis label"

    page.goto(f"{server}/run?run=live")
    _charts_rendered(page, 3)  # entropy and the first tab (a healthy run has no alerts)
    expect(page.get_by_test_id("stMetricValue").nth(0)).to_have_text("149")
    w = RunWriter(e2e_store, "live")
    w.write("scalars", {"step": list(range(150, 180)), "name": [M.ENTROPY_MEAN] * 30, "value": [0.3] * 30})
    w.heartbeat(step=179)
    expect(page.get_by_test_id("stMetricValue").nth(0)).to_have_text("179", timeout=WAIT_MS)
    page.wait_for_function(
        """() => { const e = [...document.querySelectorAll('.js-plotly-plot')]
                     .find(d => d.layout.title.text.includes('Token entropy (mean)'));
                   const t = e && e._fullData.find(t => t.name === 'entropy mean');
                   return t && t.x.length === 180; }""",
        timeout=WAIT_MS,
    )
    _shot(page, tmp_path, "03_run_live", height=3600)

    page.goto(f"{server}/compare")
    _charts_rendered(page, 4)  # entropy (nats or H/H_ref), reward, clip-high, clip-low
    names = page.evaluate("document.querySelector('.js-plotly-plot')._fullData.map(t => t.name).filter(n => n)")
    assert {COLLAPSE, HEALTHY} <= set(names)
    _shot(page, tmp_path, "04_compare", height=1700)
    page.close()
