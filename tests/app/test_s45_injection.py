"""A store someone else wrote (a shared cluster store, a colleague's import) is data, never markup: metric names,
``action`` event payloads, ``run.json`` fields and the names in a link are shown as text, and a value of an
unexpected shape or size is shown or left out, never a traceback in place of a panel.

Covered here: a chart title built from a logged metric's name (the Compare page's "Evaluation pass@k") reached
Plotly as markup, where ``<a href>`` is a link and ``<span style>`` restyles the title; an ``action`` event whose
payload holds ``step``, a string ``alert`` or a string ``did`` failed the Run page's alerts panel; a ``run.json``
whose ``hist_edges`` is not a list of numbers failed the Distribution tab; a link naming a thousand runs, or one
name of 100,000 characters, was quoted whole on the page.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis.series import hist_edges
from entropy_watch.app import charts
from entropy_watch.app.run_tabs import TABS
from entropy_watch.store import RunWriter

from .conftest import figures
from .test_pages import app, texts

LINK = '<a href="https:attacker.invalid">details</a><span style="font-size:80px">CRITICAL'
PASS_K = f"eval/pass@2{LINK}"
N = 120


def _run(root: Path, name: str, meta: dict | None = None, events: list[tuple[int, str, str]] | None = None,
         extra: dict[str, float] | None = None) -> None:  # fmt: skip
    """A small collapsing run with reward, ``extra`` constant scalars, ``meta`` in run.json and ``events`` rows."""
    w = RunWriter(root, name)
    if meta:
        w.update_run_meta(**meta)
    h = 1.5 * np.exp(-np.arange(N) / 40.0) + 0.01
    series = {M.ENTROPY_MEAN: h, M.REWARD_MEAN: np.full(N, 0.1)} | {k: np.full(N, v) for k, v in (extra or {}).items()}
    w.write("scalars", {"step": list(range(N)) * len(series), "name": [k for k in series for _ in range(N)],
                        "value": [float(x) for v in series.values() for x in v]})  # fmt: skip
    if meta and "hist_edges" in meta:
        w.write("hist", {"step": [s for s in range(N) for _ in range(3)], "bin": [0, 1, 2] * N, "count": [1] * 3 * N})
    if events:
        w.write("events", {"step": [e[0] for e in events], "kind": [e[1] for e in events],
                           "payload": [e[2] for e in events]})  # fmt: skip
    w.heartbeat(step=N - 1)
    w.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "store"
    _run(root, "a-run", extra={"eval/pass@1": 0.2, PASS_K: 0.3})
    _run(root, "b-run", extra={"eval/pass@1": 0.2, PASS_K: 0.3})
    action = M.EVENT_ACTION
    _run(root, "act-step", events=[(60, action, json.dumps({"step": "<b>x</b>", "did": ["checkpoint saved"]}))])
    _run(root, "act-shapes", events=[(60, action, json.dumps({"did": "stopped", "alert": "not an object"})),
                                     (70, action, json.dumps({"actions": "stop", "alert": [1, 2]}))])  # fmt: skip
    _run(root, "edges-text", meta={"hist_edges": ["a", "b", "c"]})
    _run(root, "edges-number", meta={"hist_edges": 5})
    return root


def test_a_metric_name_in_a_chart_title_is_text(monkeypatch: pytest.MonkeyPatch, hostile: Path) -> None:
    """The Compare page's pass@k panel is titled with the logged name: Plotly must get it escaped (it makes
    ``<a href="https:host">`` a link that opens the attacker's site and ``<span style>`` restyles the title)."""
    at = app(monkeypatch, hostile, "views/compare.py", {"run": ["a-run", "b-run"]})
    box = at.selectbox(key="cmp_passk")
    box.select(PASS_K).run()
    assert not at.exception, [e.message for e in at.exception]
    title = figures(at)["cmp_pass"]["layout"]["title"]["text"]
    assert "pass@2" in title and "<" not in title and ">" not in title, title
    assert title == charts.plain(f"Evaluation {PASS_K.split('/')[1]}")


def test_every_chart_title_is_plain_text() -> None:
    """Titles and axis titles go to Plotly as text whoever builds them (the layout helper escapes them)."""
    tr = {"r": charts.Trace("r", np.arange(3), np.ones(3), np.ones(3), np.ones(3), 1)}
    fig = charts.overlay(tr, f"t {LINK}", f"y {LINK}")
    assert fig.layout.title.text == charts.plain(f"t {LINK}")
    assert fig.layout.yaxis.title.text == charts.plain(f"y {LINK}")
    assert fig.layout.xaxis.title.text.startswith("step")  # the linked zoom finds step charts by this title


@pytest.mark.parametrize("run", ["act-step", "act-shapes"])
def test_action_payloads_of_any_shape_show(monkeypatch: pytest.MonkeyPatch, hostile: Path, run: str) -> None:
    """An ``action`` event's payload is a writer's JSON: a "step" in it never replaces the row's step, and an
    ``alert`` that is no object or a ``did``/``actions`` that is no list is shown, not a failed alerts panel."""
    at = app(monkeypatch, hostile, "views/run.py", {"run": run})
    lines = [t.value for t in at.text]
    assert any(line.startswith("step 60: ") for line in lines), lines
    if run == "act-step":
        assert "step 60: checkpoint saved" in lines, lines
    else:
        assert "step 60: stopped" in lines and "step 70: stop" in lines, lines


@pytest.mark.parametrize("run", ["edges-text", "edges-number"])
def test_malformed_hist_edges_leave_the_tab_working(monkeypatch: pytest.MonkeyPatch, hostile: Path, run: str) -> None:
    at = app(monkeypatch, hostile, "views/run.py", {"run": run}, run_tab=TABS[0])
    assert "heatmap" not in figures(at)
    assert "No token-entropy histogram" in texts(at, "info")


@pytest.mark.parametrize(
    ("meta", "edges"),
    [({}, None), ({"hist_edges": []}, None), ({"hist_edges": [0, 0.5, 1]}, [0.0, 0.5, 1.0]),
     ({"hist_edges": "0,1"}, None), ({"hist_edges": [0, "1"]}, None), ({"hist_edges": [0, True]}, None),
     ({"hist_edges": {"a": 1}}, None)],
)  # fmt: skip
def test_hist_edges(meta: dict, edges: list[float] | None) -> None:
    assert hist_edges(meta) == edges


def test_a_link_to_many_unknown_runs_is_one_short_warning(monkeypatch: pytest.MonkeyPatch, hostile: Path) -> None:
    names = [f"nope-{i}" for i in range(900)] + ["x" * 100_000]
    at = app(monkeypatch, hostile, "views/compare.py", {"run": ["a-run", *names]})
    (warning,) = [w.value for w in at.warning]
    shown = texts(at, "warning")
    assert len(warning) < 2_000 and "nope-0, nope-1, nope-2, nope-3, nope-4 and 896 more" in shown, shown[:300]
    assert [m.value for m in at.multiselect] == [["a-run"]]


def test_a_huge_name_in_a_link_is_elided(monkeypatch: pytest.MonkeyPatch, hostile: Path) -> None:
    at = app(monkeypatch, hostile, "views/run.py", {"run": "grpo-" + "x" * 100_000})
    (error,) = [e.value for e in at.error]
    assert len(error) < 1_000 and "There is no run named “grpo-" in texts(at, "error"), error[:300]
