"""Defects a browser audit of live runs, many runs and navigation found: the Compare page's runs live in the URL (a
reload, Back or a shared link shows the same runs), the Run page's header keeps one line about the verdict's steps
(a live tick that starts or ends "catching up" no longer moves the page by a line), and the legend under a chart of
many long-named runs gets the rows Plotly packs it into (it was cut off under the half-width Compare panels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from entropy_watch.app import charts
from entropy_watch.app.run_panels import verdict_step_text
from entropy_watch.store.reads import Trace

from .conftest import COLLAPSE, HEALTHY, IMPORTED
from .test_pages import app, texts


def test_compare_opens_the_runs_the_url_names(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "views/compare.py", {"run": [IMPORTED, COLLAPSE]})
    assert at.multiselect(key="compare_select").value == [IMPORTED, COLLAPSE]
    assert at.query_params["run"] == [IMPORTED, COLLAPSE]


def test_compare_url_follows_the_picker(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    """Picking runs writes them to the URL (repeated ``run=``, as run names may hold commas), so a reload keeps them."""
    at = app(monkeypatch, synthetic_store, "views/compare.py")
    at.multiselect(key="compare_select").set_value([HEALTHY, COLLAPSE]).run()
    assert not at.exception
    assert at.query_params["run"] == [HEALTHY, COLLAPSE]
    at.multiselect(key="compare_select").set_value([]).run()
    assert "run" not in at.query_params


def test_compare_names_a_run_the_store_lacks(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "views/compare.py", {"run": [HEALTHY, "no-such-run"]})
    assert at.multiselect(key="compare_select").value == [HEALTHY]
    assert "no-such-run" in texts(at, "warning")


def test_header_always_says_which_steps_the_verdict_read(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path):
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": COLLAPSE})
    assert "Verdict from the steps up to 299, the newest." in texts(at, "caption")


def test_verdict_step_line_is_one_line_either_way() -> None:
    assert verdict_step_text(120, 120, False) == "Verdict from the steps up to 120, the newest."
    # analysed to the newest data: the later steps logged no entropy (the trainer's final eval), said so
    assert verdict_step_text(1200, 1234, False) == (
        "Verdict from the steps up to 1,200, the last with an entropy value (the newest, 1,234, has none)."
    )
    pending = verdict_step_text(1200, 1234, True)
    assert pending.startswith("Verdict from the steps up to 1,200;") and "(1,234)" in pending and "\n" not in pending


def _trace(name: str) -> Trace:
    x = np.arange(5, dtype=np.float64)
    return Trace(name, x, x, x, x)


def test_legend_rows_pack_long_names_as_plotly_does() -> None:
    """Three 40-character names: no two fit one row (46 + 46 > 70), so three rows, not ceil(138 / 70) = 2."""
    names = [f"{i}" * 40 for i in range(3)]
    fig = charts.overlay({n: _trace(n) for n in names}, "Reward (mean)", "reward")
    assert charts._legend_rows(fig) == 3
    short = charts.overlay({n: _trace(n) for n in ("a", "b", "c")}, "Reward (mean)", "reward")
    assert charts._legend_rows(short) == 1


def test_many_long_run_names_get_a_legend_row_each() -> None:
    names = [f"owner__repo__qwen25-0.5b-gsm8k-grpo-lr1e-6-s{i:06d}" for i in range(40)]  # 50 characters each
    assert {len(n) for n in names} == {50}
    fig = charts.overlay({n: _trace(n) for n in names}, "Reward (mean)", "reward")
    assert charts._legend_rows(fig) == 40
    assert fig.layout.height >= charts.HEIGHT + 22 * 39
