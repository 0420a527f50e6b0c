"""AppTest on every page against stores from the synthetic generator, an import and a real ``Watch`` loop: each point
of issue 12 that AppTest can see (the browser test, ``test_e2e_live.py``, checks what only a browser shows)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from entropy_watch import metrics as M
from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.analysis.alert import fmt_nats
from entropy_watch.app.display import HEALTH_TONES, verdict_tone
from entropy_watch.app.run_tabs import TABS
from entropy_watch.store import RunWriter, Store

from .conftest import APP_HOME, COLLAPSE, HEALTHY, IMPORTED, decode, figures, shown

TIMEOUT = 60


def app(
    monkeypatch: pytest.MonkeyPatch, root: Path, page: str | None = None, query: dict | None = None, **state: object
) -> AppTest:
    monkeypatch.setenv("ENTROPY_WATCH_DIR", str(root))
    from entropy_watch.app import data, first_paint

    monkeypatch.setattr(data, "ANALYSIS_WAIT_S", 30.0)  # small runs: wait for the verdict, deterministic
    monkeypatch.setattr(data, "POLL_MIN_S", 0.0)  # every script run polls (no rate limit between fragments)
    monkeypatch.setattr(first_paint, "HOLD_S", 0.0)  # no browser: nothing to wait for
    at = AppTest.from_file(str(APP_HOME), default_timeout=TIMEOUT)
    if page:
        at.switch_page(page)
    at.query_params.update(query or {})
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def all_tabs(at: AppTest) -> dict[str, dict]:
    """The Run page's figures with every tab opened in turn (only the open tab's charts are sent)."""
    figs = figures(at)
    for label in (*TABS[1:], TABS[0]):
        at.session_state["run_tab"] = label
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        figs.update(figures(at))
    return figs


def texts(at: AppTest, *kinds: str) -> str:
    """The text of the elements of ``kinds`` as a reader sees it (markdown escapes of data resolved)."""
    return "\n".join(shown(e.value) for kind in kinds for e in getattr(at, kind))


def verdict(root: Path, run: str):  # noqa: ANN201
    return analyze(RunSeries.from_reader(Store(root), run)).verdict


# -- 8: bad paths say what is true, and the empty store names commands that exist ----------------------------------
@pytest.mark.parametrize("page", [None, "views/run.py", "views/compare.py"])
def test_empty_store_explains_with_commands_that_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, page: str):
    import re

    from entropy_watch.cli import app as cli

    at = app(monkeypatch, tmp_path / "nothing-here", page)
    text = texts(at, "info")
    assert "No runs in the store" in text and not at.get("plotly_chart")
    commands = {c.name or c.callback.__name__ for c in cli.registered_commands}
    for named in re.findall(r"entropy-watch (\w+)", text):
        assert named in commands, f"the message names `entropy-watch {named}`, which does not exist"


def test_run_without_entropy_says_so_instead_of_a_green_box(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "rewards-only")
    w.update_run_meta(framework="tests", hist_edges=[0.0, 0.1, 1.0])
    w.write("scalars", {"step": list(range(30)), "name": [M.REWARD_MEAN] * 30, "value": [0.5] * 30})
    w.heartbeat(step=29)
    at = app(monkeypatch, tmp_path, "views/run.py", {"run": "rewards-only"})
    assert not at.success, "no green 'No alerts' box for a run that cannot be analysed"
    assert "logged no entropy" in texts(at, "warning")
    assert "No analysis: this run has no entropy series" in texts(at, "info")
    for label in TABS:
        at.session_state["run_tab"] = label
        at.run()
        assert "imported" not in texts(at, "info"), "a recorded run is never called imported"


def test_imported_run_explains_missing_charts(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": IMPORTED})
    text = texts(at, "info")
    for label in TABS[1:]:
        at.session_state["run_tab"] = label
        at.run()
        text += texts(at, "info")
    assert "No token-entropy histogram: imported logs carry only scalar metrics" in text
    assert "No reward (reward/mean or eval/pass@1) logged" in text and "No clip fractions" in text
    assert "entropy" in figures(at)
    notes = Store(synthetic_store).run_meta(IMPORTED)["import_notes"]  # what the import said, shown with the run
    assert notes and all(n in texts(at, "caption") for n in notes)


# -- 1: deep links ---------------------------------------------------------------------------------------------
def test_deep_link_opens_that_run(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": HEALTHY})
    assert shown(at.title[0].value) == HEALTHY and at.query_params["run"] == HEALTHY
    assert metric(at, "last step") == "299"


def test_unknown_run_says_so_and_lists_close_names(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": "grpo-colapse"})
    assert "There is no run named “grpo-colapse”" in texts(at, "error")
    assert at.query_params["run"] == "grpo-colapse", "the URL is left as it was"
    assert not at.get("plotly_chart") and not at.metric, "no other run is shown instead"
    links = [shown(p.proto.label) for p in at.get("page_link")]
    assert COLLAPSE in links and HEALTHY not in links, links


def test_an_empty_run_in_the_url_opens_the_picker(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    """``/run?run=`` names no run: the page shows one (the picker's), not "There is no run named “”"."""
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": ""})
    assert "There is no run named" not in texts(at, "error") and at.title[0].value != "Run not found"
    assert at.query_params["run"] == shown(at.title[0].value) and metric(at, "last step")


# -- 2: the Runs table -----------------------------------------------------------------------------------------
def test_runs_table_health_first_pinned_name_every_row(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path, tmp_path: Path
) -> None:
    import shutil

    synthetic_store = Path(shutil.copytree(synthetic_store, tmp_path / "store"))
    short = RunWriter(synthetic_store, "short-run")
    short.write("scalars", {"step": [0, 1, 2], "name": [M.ENTROPY_MEAN] * 3, "value": [1.0, 8.7e-05, 0.9]})
    short.close()
    t = np.arange(100)  # calm, an explosion, then a thrash: the median back down, every third point at 30x
    thrash = np.where((t >= 40) & (t < 60), 4.0, np.where((t >= 60) & (t % 3 == 0), 9.0, 0.3))
    thrash = thrash * np.exp(np.random.default_rng(2).normal(0.0, 0.03, t.size))
    w = RunWriter(synthetic_store, "thrash")
    w.write("scalars", {"step": t.tolist(), "name": [M.ENTROPY_MEAN] * t.size, "value": thrash.tolist()})
    w.close("interrupted")  # stopped by Ctrl-C
    at = app(monkeypatch, synthetic_store)
    df = at.dataframe[0].value
    assert list(df["health"])[0] == "🔴 critical", "sorted by health, worst first"
    by = df.set_index("run")
    assert by.loc["short-run", "health"] == "⚪ too short"
    assert by.loc[IMPORTED, "status"] == "📥 imported" and by.loc[COLLAPSE, "status"] == "✅ finished"
    assert by.loc["thrash", "status"] == "✋ interrupted"
    v = verdict(synthetic_store, COLLAPSE)
    assert by.loc[COLLAPSE, "_ratio"] == pytest.approx(v.level / v.reference.value)
    assert v.health == "critical" and by.loc[COLLAPSE, "H/H_ref"].endswith(" collapse"), "the verdict's kind"
    assert 0 < len(by.loc[COLLAPSE, "entropy"]) <= 60
    cols = json.loads(at.dataframe[0].proto.columns)
    assert cols["name"]["pinned"] is True and cols["name"]["label"] == "run"
    assert cols["entropy"]["type_config"]["type"] == "line_chart"
    order = list(at.dataframe[0].proto.column_order)
    assert order.index("health") < order.index("entropy") < order.index("status"), "health and sparkline first"
    styles = at.dataframe[0].proto.arrow_data.styler.styles
    assert HEALTH_TONES["critical"] in styles, "a critical run's H/H_ref is coloured as critical"
    assert by.loc["short-run", "H/H_ref"] == "—", "nothing analysed: no ratio"
    # a median back under 2x H_ref beside a critical explosion whose points still spike: not "normal"
    assert by.loc["thrash", "health"] == "🔴 critical" and by.loc["thrash", "_ratio"] < 2
    assert by.loc["thrash", "H/H_ref"].endswith(" spiking"), by.loc["thrash", "H/H_ref"]
    at.text_input(key="runs_filter").set_value("repo").run()
    assert list(at.dataframe[0].value["run"]) == [HEALTHY]


def test_numbers_read_as_the_verdict_headline_writes_them() -> None:
    from entropy_watch.app.display import fmt_nats, fmt_ratio

    assert fmt_nats(0.00031) == "0.00031" and fmt_nats(8.7e-05) == "8.7e-05" and fmt_nats(4.051) == "4.05"
    assert fmt_ratio(0.0004) == "0.04%" and fmt_ratio(0.13) == "13%" and fmt_ratio(2.43) == "2.4×"
    assert fmt_nats(None) == "—" and fmt_ratio(float("nan")) == "—"
    assert verdict_tone("warning", "collapse") == ("collapse", HEALTH_TONES["warning"])
    assert verdict_tone("info", "saturation") == ("saturation", HEALTH_TONES["info"])
    assert verdict_tone("ok", None) == ("", HEALTH_TONES["ok"]) and verdict_tone("too-short", None) == ("", "")
    assert verdict_tone("critical", "explosion", unsettled=True) == ("spiking", HEALTH_TONES["critical"])
    assert verdict_tone("info", "zero_variance_groups")[0] == "zero variance groups"


# -- B and 5: the verdict drawn, readable charts -----------------------------------------------------------------
def test_run_page_renders_the_verdict(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": COLLAPSE})
    assert set(figures(at)) == {"entropy", "heatmap", "fan", "alerts"}, "on load: entropy, first tab, alerts"
    v = verdict(synthetic_store, COLLAPSE)
    assert v.headline in texts(at, "error", "warning", "info", "success")
    assert metric(at, "health") == v.health
    fig = figures(at)["entropy"]
    line = next(t for t in fig["data"] if t.get("name") == "entropy mean")
    steps, h = Store(synthetic_store).series(COLLAPSE, M.ENTROPY_MEAN)
    np.testing.assert_array_equal(decode(line["x"]), steps)
    np.testing.assert_allclose(decode(line["y"]), h)
    drawn = [t for t in fig["data"] if (t.get("name") or "").startswith("forecast (")]
    if v.forecast is not None and v.forecast.curve:
        np.testing.assert_allclose(decode(drawn[0]["y"]), v.forecast.curve)
    else:  # none, or a level already past its target: nothing forecast, nothing drawn
        assert not drawn
    names = [t.get("name") or "" for t in fig["data"]]
    assert any(n.startswith("H_ref") for n in names) and any(n.startswith("floor") for n in names)
    assert not fig["layout"].get("annotations"), "reference levels are legend entries, never labels on the data"


def test_an_unsettled_explosion_draws_the_line_its_points_are_past(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The headline says "13 of its last 31 points are past 5.35× H_ref (1.04 nats) ...: not settled" and has no
    forecast to draw: the chart draws that line, so the thrash is read against it (rasbt ch07 7_3's page showed
    H_ref and the floor only)."""
    t = np.arange(100)
    clean = np.where((t >= 40) & (t < 60), 4.0, 0.3)  # calm, a 20-point explosion, then a thrash
    clean = np.where((t >= 60) & (t % 3 == 0), 9.0, clean)
    h = clean * np.exp(0.03 * np.random.default_rng(2).standard_normal(t.size))
    w = RunWriter(tmp_path, "thrash")
    w.update_run_meta(framework="tests")
    w.write("scalars", {"step": t.tolist(), "name": [M.ENTROPY_MEAN] * t.size, "value": h.tolist()})
    w.heartbeat(step=99)
    w.close()
    v = verdict(tmp_path, "thrash")
    assert v.unsettled and v.unsettled_line is not None and v.forecast is None
    assert f"past {v.unsettled_line / v.reference.value:.3g}× H_ref ({fmt_nats(v.unsettled_line)} nats)" in v.unsettled
    at = app(monkeypatch, tmp_path, "views/run.py", {"run": "thrash"})
    assert v.headline in texts(at, "error")
    drawn = [t for t in figures(at)["entropy"]["data"] if (t.get("name") or "").startswith("explosion warning line")]
    assert len(drawn) == 1 and set(decode(drawn[0]["y"]).tolist()) == {v.unsettled_line}


@pytest.mark.parametrize(
    ("page", "query", "first", "charts"),
    [
        ("views/run.py", {"run": COLLAPSE}, "entropy", {"entropy", "heatmap", "fan", "alerts"}),
        ("views/compare.py", None, "cmp_entropy", {"cmp_entropy", "cmp_reward", "cmp_clip_high", "cmp_clip_low"}),
    ],
)
def test_first_drawing_sends_the_entropy_chart_alone_then_waits_once(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path, page: str, query: dict | None, first: str, charts: set
) -> None:
    """app/first_paint: the session's first drawing of a page sends its entropy chart, waits, then the rest (so the
    browser reveals the first chart alone); a rerun, an opened tab or the other page in the same session never waits."""
    from entropy_watch.app import first_paint

    sent: list[str] = []
    waits: list[list[str]] = []
    draw = st.plotly_chart

    def recording(fig: object, *args: object, key: str | None = None, **kwargs: object) -> object:
        sent.append(str(key))
        return draw(fig, *args, key=key, **kwargs)

    monkeypatch.setattr(st, "plotly_chart", recording)
    monkeypatch.setattr(first_paint, "time", SimpleNamespace(sleep=lambda s: waits.append(list(sent))))
    at = app(monkeypatch, synthetic_store, page, query)
    assert waits == [[first]], "one wait, after the entropy chart and before any other chart"
    assert charts <= set(sent), sent
    at.run()
    if page == "views/run.py":
        at.session_state["run_tab"] = TABS[1]
        at.run()
    assert not at.exception and waits == [[first]], "no wait once the page has been drawn in this session"
    at.switch_page("views/compare.py" if page == "views/run.py" else "views/run.py")
    at.query_params.update({"run": COLLAPSE})
    at.run()
    assert not at.exception and len(waits) == 1, "the other page in the same session has Plotly loaded: no wait"


def test_every_chart_keeps_its_legend_off_the_title_and_data(
    monkeypatch: pytest.MonkeyPatch, watch_store: Path
) -> None:
    at = app(monkeypatch, watch_store, "views/run.py", {"run": "watch-loop"})
    figs = all_tabs(at)
    assert {"entropy", "heatmap", "fan", "clip", "adv", "dh", "reward"} <= set(figs)
    for key, fig in figs.items():
        lay = fig["layout"]
        assert lay["legend"]["y"] < 0 and lay["legend"]["yanchor"] == "top", f"{key}: legend under the plot"
        assert lay["title"]["yanchor"] == "top", key
        assert lay["yaxis"]["title"]["text"], f"{key}: y axis labelled"
    ticks = figs["heatmap"]["layout"]["yaxis"]["ticktext"]
    assert "0.01" in ticks and not any("µ" in t or "m" in t for t in ticks)


def test_controller_chart_labels_every_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from entropy_watch.synthetic import write_to_store

    write_to_store(tmp_path, "ctl", "healthy", seed=3, n_steps=100)
    w = RunWriter(tmp_path, "ctl")
    s = list(range(60))
    for name, v in (
        (M.CONTROL_ZETA, 0.01),
        (M.CONTROL_EPS_HIGH, 0.28),
        (M.CONTROL_TARGET, 0.5),
        (M.CONTROL_BAND_LOW, 0.4),
        (M.CONTROL_BAND_HIGH, 0.6),
        (M.CONTROL_ENTROPY, 0.55),
        (M.CONTROL_EPS_MAX, 1.0),
    ):
        w.write("scalars", {"step": s, "name": [name] * 60, "value": [v] * 60})
    w.close()
    at = app(monkeypatch, tmp_path, "views/run.py", {"run": "ctl"}, run_tab=TABS[2])
    fig = figures(at)["control"]
    names = [t.get("name") or "" for t in fig["data"] if t.get("showlegend", True) is not False]
    for want in ("REPO-R ζ", "ADAPO ε_high", "target entropy", "target band", "entropy the controller saw"):
        assert any(want in n for n in names), (want, names)
    by_name = {t.get("name"): t for t in fig["data"]}
    cap = by_name["cap on ε_high (control/eps_max)"]  # dotted, in the colour of the knob it bounds
    eps = next(t for n, t in by_name.items() if n and n.startswith("ADAPO ε_high"))
    assert cap["line"]["dash"] == "dot" and cap["line"]["color"] == eps["line"]["color"]
    assert fig["layout"]["yaxis2"]["title"]["text"] == "entropy (nats/token)"
    # plotly.js gives an overlaying axis "sync" ticks unless told: nats at the left axis's grid (0.067, 0.367, ...)
    assert fig["layout"]["yaxis2"]["tickmode"] == "auto" and fig["layout"]["yaxis2"]["rangemode"] == "tozero"


def test_compare_offers_log_y_and_h_over_h_ref(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "views/compare.py", compare_select=[COLLAPSE, HEALTHY])
    figs = figures(at)
    assert {"cmp_entropy", "cmp_reward", "cmp_clip_high", "cmp_clip_low"} <= set(figs)
    by_name = {t["name"]: t for t in figs["cmp_entropy"]["data"]}
    steps, h = Store(synthetic_store).series(HEALTHY, M.ENTROPY_MEAN)
    np.testing.assert_allclose(decode(by_name[HEALTHY]["y"]), h)
    at.radio(key="cmp_scale").set_value("H / H_ref")
    at.toggle(key="cmp_log").set_value(True).run()
    fig = figures(at)["cmp_entropy"]
    rel = {t["name"]: decode(t["y"]) for t in fig["data"]}
    np.testing.assert_allclose(rel[HEALTHY], h / verdict(synthetic_store, HEALTHY).reference.value)
    assert fig["layout"]["yaxis"]["type"] == "log" and fig["layout"]["legend"]["y"] < 0
    assert "pass@k" in texts(at, "info")


def test_smoothing_keeps_the_raw_line_faint(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    from entropy_watch.app.display import smooth

    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": HEALTHY}, smoothing=0.9)
    data = {t.get("name"): t for t in figures(at)["entropy"]["data"]}
    _, h = Store(synthetic_store).series(HEALTHY, M.ENTROPY_MEAN)
    np.testing.assert_allclose(decode(data["entropy mean"]["y"]), smooth(h, 0.9))
    np.testing.assert_allclose(decode(data["entropy mean (raw)"]["y"]), h)
    last, ref = 0.0, []
    for k, x in enumerate(h, start=1):  # TensorBoard's smoothing: EMA debiased by 1 - w^k
        last = 0.9 * last + 0.1 * x
        ref.append(last / (1 - 0.9**k))
    np.testing.assert_allclose(smooth(h, 0.9), ref)


# -- 6: alerts in order of importance ------------------------------------------------------------------------------
def test_alerts_most_severe_first_info_folded(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": COLLAPSE})
    v = verdict(synthetic_store, COLLAPSE)
    labels = [shown(e.label) for e in at.expander]
    major = [a for a in v.alerts if a.severity != "info"]
    assert labels[: len(major)] == [
        f"{'🔴' if a.severity == 'critical' else '🟠'} {a.severity} · {a.kind} at step {a.step:,} — {a.message}"
        for a in major
    ]
    n_info = sum(a.severity == "info" for a in v.alerts)
    if n_info:
        assert any(lbl.startswith(f"🔵 {n_info} info note") for lbl in labels)
        assert not any(lbl.startswith("🔵 info ·") for lbl in labels), "info alerts are never shown as findings"


def test_actions_taken_show_on_the_alert_timeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An ``on_alert`` action (issue 14) is an ``events`` row of kind ``action``: the alert section lists it and the
    timeline marks it on a row of its own; other event kinds and a malformed payload never break the page."""
    import json as _json

    from entropy_watch.app.charts import ACTIONS_ROW
    from entropy_watch.synthetic import write_to_store

    write_to_store(tmp_path, "acted", "healthy", seed=3, n_steps=100)
    w = RunWriter(tmp_path, "acted")
    did = "checkpoint requested ([/INST] saved by the trainer)"
    payload = {"rule": "critical", "alert": {"step": 40, "kind": "collapse", "severity": "critical"},
               "actions": ["checkpoint", "stop"], "did": [did, "stop requested"]}  # fmt: skip
    w.write("events", {"step": [41, 50, 60], "kind": [M.EVENT_ACTION, "resume", M.EVENT_ACTION],
                       "payload": [_json.dumps(payload), "{}", "not json"]})  # fmt: skip
    w.close()
    at = app(monkeypatch, tmp_path, "views/run.py", {"run": "acted"})
    shown = texts(at, "text")
    assert f"step 41: {did}; stop requested — on critical collapse at step 40" in shown
    assert "step 60: not json" in shown
    assert "resume" not in shown
    tl = figures(at)["alerts"]
    marks = [t for t in tl["data"] if t.get("name") == "action"]
    assert len(marks) == 1 and list(decode(marks[0]["x"])) == [41, 60]
    assert set(marks[0]["y"]) == {ACTIONS_ROW}


# -- 3: live refresh -----------------------------------------------------------------------------------------------
def test_live_update_shows_new_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from entropy_watch.synthetic import write_to_store

    root = tmp_path / "store"
    write_to_store(root, "live", "healthy", seed=3, n_steps=100)
    at = app(monkeypatch, root, "views/run.py", {"run": "live"})
    assert metric(at, "last step") == "99"
    w = RunWriter(root, "live")
    w.write("scalars", {"step": list(range(100, 130)), "name": [M.ENTROPY_MEAN] * 30, "value": [0.5] * 30})
    w.heartbeat(step=129)
    at.run()
    assert not at.exception
    assert metric(at, "last step") == "129"
    ent = next(t for t in figures(at)["entropy"]["data"] if t.get("name") == "entropy mean")
    assert decode(ent["x"]).size == 130 and decode(ent["y"])[-1] == 0.5


def test_the_server_start_warms_reader_and_verdicts(synthetic_store: Path) -> None:
    from entropy_watch.app import data

    data.warm(str(synthetic_store))
    mon = data.monitor(str(synthetic_store))
    assert mon.running
    versions = data.reader(str(synthetic_store)).versions()
    assert set(versions) == {COLLAPSE, HEALTHY, IMPORTED}
    for run, version in versions.items():
        st_ = mon.refresh(run, wait_s=30.0, version=version)
        assert st_ is not None and st_.verdict is not None


# -- 7: token views ------------------------------------------------------------------------------------------------
def test_tokens_default_spreads_over_steps_and_shows_ids(monkeypatch: pytest.MonkeyPatch, watch_store: Path) -> None:
    at = app(monkeypatch, watch_store, "views/run.py", {"run": "watch-loop"})
    tokens = at.dataframe[-1].value
    raw = Store(watch_store).table("watch-loop", "tokens")
    sampled = sorted(set(raw.column("step").to_pylist()))
    assert len(tokens) == min(25, raw.num_rows), "the 25 tokens asked for by default, not one per step"
    assert set(tokens["step"]) == set(sampled) and tokens["step"].is_monotonic_increasing, "every step, in order"
    assert all(t.startswith("#") for t in tokens["token"]), "no tokenizer: the id is shown"
    assert all("⟦#" in c and c != "[]" for c in tokens["context"])
    assert at.number_input(key="tok_hi").value is None, "'to step' is empty by default: up to the newest step"
    at.radio(key="tok_mode").set_value("highest entropy").run()
    tokens = at.dataframe[-1].value
    assert tokens["entropy"].is_monotonic_decreasing
    assert tokens["entropy"].iloc[0] == pytest.approx(float(np.max(raw.column("entropy").to_numpy())))
    at.number_input(key="tok_min").set_value(100.0).run()  # nothing has entropy above ln 16
    assert "No sampled tokens match" in texts(at, "info")
