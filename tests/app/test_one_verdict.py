"""One verdict on every surface, as the browser audit of the app checked it: the forecast's ETA on the entropy chart
with everything its legend names, the Runs table's H/H_ref worded and coloured by the verdict, the verdict's level
told apart from the last logged value, stored alerts of an earlier analysis kept apart from the verdict's, the
controller panel only for a run with a controller, and what an empty filter result says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert
from entropy_watch.app.display import HEALTH_TONES, Window, fmt_nats, verdict_tone
from entropy_watch.app.run_panels import RECORDED_TITLE
from entropy_watch.app.run_tabs import TABS
from entropy_watch.store import RunWriter, Store

from .conftest import IMPORTED, decode, figures, shown
from .test_pages import app, metric, texts, verdict

DECAY, SOLVED, CALM, FAR = "decay", "solved", "calm", "far"
OLD = Alert(step=40, detector="collapse.decline", kind="collapse", severity="warning", message="an earlier warning")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``decay``: a warning collapse whose ETA (386) lies 3.2 fit windows ahead (where the analysis once stopped its
    curve, at 371) and whose interval runs on to 626, logging a constant ``control/target_entropy`` as plain GRPO
    does; ``far``: a warning whose ETA lies past its drawn curve; ``solved``: a benign saturation at 0.3% of H_ref;
    ``calm``: ok, with a warning stored by an earlier analysis."""
    from entropy_watch.synthetic import write_to_store

    root = tmp_path_factory.mktemp("one-verdict") / "store"
    t = np.arange(150)
    rng = np.random.default_rng(5)
    h = 1.15 * np.exp(-t / 140) * np.exp(0.08 * rng.standard_normal(t.size))
    r = 0.5 + 0.02 * rng.standard_normal(t.size)
    w = RunWriter(root, DECAY)
    w.update_run_meta(framework="tests")
    for name, v in ((M.ENTROPY_MEAN, h), (M.REWARD_MEAN, r), (M.CONTROL_TARGET, np.full(t.size, 1.14))):
        w.write("scalars", {"step": t.tolist(), "name": [name] * t.size, "value": [float(x) for x in v]})
    w.heartbeat(step=149)
    w.close()
    t = np.arange(200)  # a fall, then a slow decline: a warning whose ETA lies 18 fit windows ahead
    h = np.where(t < 60, 1.15 * np.exp(-t / 50), 1.15 * np.exp(-60 / 50) * np.exp(-0.0005 * (t - 60)))
    rng = np.random.default_rng(0)
    h = h * np.exp(0.05 * rng.standard_normal(t.size))
    r = 0.5 + 0.02 * rng.standard_normal(t.size)
    w = RunWriter(root, FAR)
    for name, v in ((M.ENTROPY_MEAN, h), (M.REWARD_MEAN, r)):
        w.write("scalars", {"step": t.tolist(), "name": [name] * t.size, "value": [float(x) for x in v]})
    w.close()
    write_to_store(root, SOLVED, "solved", seed=1, n_steps=300)
    write_to_store(root, CALM, "healthy", seed=5, n_steps=300)
    w = RunWriter(root, CALM)
    w.write("alerts", {k: [v] for k, v in OLD.to_row().items()})
    w.close()
    return root


def legend(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if t.get("showlegend", True) is not False and t.get("name")]


def named(fig: dict, prefix: str) -> list[dict]:
    return [t for t in fig["data"] if (t.get("name") or "").startswith(prefix)]


def xs(trace: dict) -> np.ndarray:
    x = decode(trace["x"]).astype(np.float64)
    return x[np.isfinite(x)]


# -- 1: the ETA on the chart ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "window",
    [
        {},
        {"window_mode": "last N steps", "window_last": 100},
        {"window_mode": "step range", "window_lo": 50, "window_hi": 100_000},
    ],
    ids=["all-steps", "last-N", "range-to-end"],
)
def test_the_eta_and_everything_the_legend_names_are_on_the_chart(
    monkeypatch: pytest.MonkeyPatch, store: Path, window: dict
) -> None:
    """The headline's ETA has its line on the chart whatever the step window (one that reaches the run's end), with
    its interval shaded and named in the legend, the reference lines running on to it, and no legend entry
    off the chart (the audit: the lines stopped at the curve's end, 371, the ETA and its shading stood on empty
    chart, the shading was not in the legend, and a last-N window left the ETA off the chart)."""
    v = verdict(store, DECAY)
    fc = v.forecast
    assert v.health == "warning" and fc is not None and fc.eta_step < fc.eta_hi_step, "the case"
    at = app(monkeypatch, store, "views/run.py", {"run": DECAY}, **window)
    fig = figures(at)["entropy"]
    (eta,) = named(fig, "ETA to ")
    assert set(xs(eta)) == {fc.eta_step} and f"step {fc.eta_step:,.0f}" in eta["name"]
    (band,) = named(fig, "ETA 80% interval: steps ")
    assert f"{fc.eta_lo_step:,.0f}–{fc.eta_hi_step:,.0f}" in band["name"]
    lay = fig["layout"]["xaxis"]
    if "range" in lay and lay.get("autorange") is False:
        lo, hi = lay["range"]
    else:  # Plotly's autorange: what is drawn
        every = np.concatenate([xs(t) for t in fig["data"] if t.get("yaxis") != "y3"])
        lo, hi = float(every.min()), float(every.max())
    assert lo <= fc.eta_step < hi, (lo, hi, fc.eta_step)
    assert "its late end past the chart" in band["name"] and max(xs(band)) <= hi
    (curve,) = named(fig, "forecast (")
    assert np.interp(fc.eta_step, xs(curve), decode(curve["y"])) == pytest.approx(fc.target, rel=0.05), "meets it"
    for ref in ("H_ref", "floor"):
        (line,) = named(fig, ref)
        assert max(xs(line)) >= fc.eta_step, f"the {ref} line runs on to the ETA"
    for t in legend(fig):
        x = xs(t)
        assert x.size and ((x >= lo) & (x <= hi)).any(), f"{t['name']}: in the legend but off the chart"


def test_a_step_range_that_ends_early_drops_the_eta_and_says_where_it_is(
    monkeypatch: pytest.MonkeyPatch, store: Path
) -> None:
    v = verdict(store, DECAY)
    at = app(monkeypatch, store, "views/run.py", {"run": DECAY}, window_mode="step range", window_lo=0, window_hi=100)
    fig = figures(at)["entropy"]
    assert fig["layout"]["xaxis"]["range"] == [0.0, 100.0]
    assert not named(fig, "ETA"), "an ETA past the steps shown: no line and no legend entry for it"
    assert f"Its ETA, step {v.forecast.eta_step:,.0f}, lies past the steps shown" in texts(at, "caption")
    for t in legend(fig):
        assert ((xs(t) >= 0) & (xs(t) <= 100)).any(), t["name"]


def test_a_window_reaching_the_end_always_stretches_past_the_eta() -> None:
    assert Window(last=100).x_range(3434, ahead=5100.0) == (3335.0, 3484.0), "a curve: by N/2 at most"
    lo, hi = Window(last=100).x_range(3434, ahead=5100.0, eta=5000.0)
    assert lo == 3335.0 and 5000.0 < hi < 5100.0, "the ETA: always"
    assert Window(lo=0, hi=100_000).x_range(300, eta=900.0)[1] > 900.0
    assert Window(lo=0, hi=200).x_range(300, eta=900.0) == (0.0, 200.0), "a range ending before the run's end"


def test_an_eta_past_the_drawn_forecast_is_said_not_marked(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    """An ETA further ahead than the analysis draws its curve (``outlook.MAX_REACH`` fit windows: a chart stretched
    over it would shrink the run into its first pixels): no ETA line or interval (and so no legend entry off the
    chart), the caption says where it is."""
    fc = verdict(store, FAR).forecast
    assert fc is not None and not fc.reached and fc.eta_step > fc.steps[-1], "the case"
    at = app(monkeypatch, store, "views/run.py", {"run": FAR}, window_mode="last N steps", window_last=100)
    fig = figures(at)["entropy"]
    assert not named(fig, "ETA") and fig["layout"]["xaxis"]["range"][1] < fc.eta_step
    assert f"Its ETA, step {fc.eta_step:,.0f}, lies further ahead than the forecast is drawn" in texts(at, "caption")


# -- 2 and 3: the Runs table says what the verdict says; level vs last logged ---------------------------------------
def test_runs_table_words_and_colours_h_over_h_ref_by_the_verdict(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    """The audit: "🟠 warning | 45% normal" in green, "🔵 info | 2% collapsed" in red; the word and colour now come
    from the verdict's kind and health, and "H level" is the verdict's level."""
    at = app(monkeypatch, store)
    df = at.dataframe[0].value
    styles = at.dataframe[0].proto.arrow_data.styler.styles
    colours = {}  # row -> cell colour; the Styler writes cells of one style as one rule: "#a, #b { ... }"
    for cells, colour in re.findall(r"([^{}]+)\{ background-color: (#\w+)", styles):
        colours.update({int(r): colour for r in re.findall(r"row(\d+)_col", cells)})
    for i, run in enumerate(df["run"]):
        v = verdict(store, run)
        word, colour = verdict_tone(v.health, v.kind)
        cell = df["H/H_ref"].iloc[i]
        assert cell.split(" ", 1)[1:] == ([word] if word else []), (run, cell, v.health, v.kind)
        assert colours.get(i) == colour == HEALTH_TONES[v.health], (run, colours.get(i), v.health)
        assert df["H level (nats)"].iloc[i] == fmt_nats(v.level)
    by = df.set_index("run")
    assert by.loc[SOLVED, "health"] == "🔵 info" and by.loc[SOLVED, "H/H_ref"].endswith(" saturation")
    assert by.loc[DECAY, "H/H_ref"].endswith(" collapse")


def test_level_and_last_logged_entropy_are_named_apart(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    """Compare said "Latest entropy 0.62 nats" (the last point) where the Run page and the Runs table said 0.52
    (the verdict's level): every surface names which it shows."""
    v = verdict(store, CALM)
    steps, h = Store(store).series(CALM, M.ENTROPY_MEAN)
    assert fmt_nats(v.level) != fmt_nats(h[-1]), "the case: the level and the last point differ"
    at = app(monkeypatch, store, "views/run.py", {"run": CALM})
    assert metric(at, "entropy level (nats)") == fmt_nats(v.level)
    at = app(monkeypatch, store, "views/compare.py", compare_select=[DECAY, CALM])
    said = texts(at, "caption")
    assert "Entropy level (the verdict's, a rolling median" in said and "Latest entropy" not in said
    assert f"{CALM}: level {fmt_nats(v.level)} nats (last logged {fmt_nats(h[-1])} at step {steps[-1]:,})" in said


# -- 4: stored alerts apart ----------------------------------------------------------------------------------------
def test_stored_alerts_outside_the_verdict_are_listed_apart(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    """An ok run with a warning an earlier analysis stored: the verdict's all-clear stands, and the stored warning is
    listed under its own label, never as a warning box beside it."""
    v = verdict(store, CALM)
    assert v.health == "ok" and OLD.key not in {a.key for a in v.alerts}
    at = app(monkeypatch, store, "views/run.py", {"run": CALM})
    assert "No alerts in the current verdict" in texts(at, "success")
    labels = [shown(e.label) for e in at.expander]
    assert not any(lbl.startswith("🟠") for lbl in labels), labels
    assert f"1 stored alert {RECORDED_TITLE}" in labels
    cells = [str(x) for t in at.table for x in t.value.to_numpy().ravel()]
    assert any(shown(c) == OLD.message for c in cells)
    assert not figures(at).get("alerts"), "no timeline marks a stored alert as the verdict's"


# -- 5: the controller panel ---------------------------------------------------------------------------------------
def test_a_constant_target_without_a_lever_is_no_controller(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    at = app(monkeypatch, store, "views/run.py", {"run": DECAY}, run_tab=TABS[2])
    assert "control" not in figures(at), "no chart of one flat target line and an empty axis"
    assert "No entropy controller in this run" in texts(at, "caption")


# -- 6, 7: empty results say why ------------------------------------------------------------------------------------
def test_a_name_filter_matching_nothing_says_so_instead_of_an_empty_grid(
    monkeypatch: pytest.MonkeyPatch, store: Path
) -> None:
    at = app(monkeypatch, store)
    at.text_input(key="runs_filter").set_value("zzz<b>").run()
    assert not at.dataframe, "no empty grid"
    assert "No runs match the name filter “zzz<b>”" in texts(at, "info")
    assert not [b for b in at.button if b.key in ("open_run", "compare")]


def test_token_filters_name_the_text_filter_and_imported_runs_get_none(
    monkeypatch: pytest.MonkeyPatch, watch_store: Path, synthetic_store: Path
) -> None:
    at = app(monkeypatch, watch_store, "views/run.py", {"run": "watch-loop"})
    at.text_input(key="tok_text").set_value("no such token").run()
    said = texts(at, "info")
    assert "containing “no such token”" in said and "clear or change the text filter" in said
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": IMPORTED})
    assert "tok_text" not in [w.key for w in at.text_input], "no token filters for a run without tokens"
    assert "No sampled tokens: imported logs carry only scalar metrics" in texts(at, "info")


def test_run_not_found_says_its_list_is_cut(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for i in range(12):
        w = RunWriter(tmp_path, f"run-{i:02d}")
        w.write("scalars", {"step": [0, 1], "name": [M.ENTROPY_MEAN] * 2, "value": [1.0, 0.9]})
        w.close()
    at = app(monkeypatch, tmp_path, "views/run.py", {"run": "zzzzzzzz"})
    said = texts(at, "markdown")
    assert "the first 10 of 12 by name" in said and "Runs listed at most" not in said, "no page-script docstring"
    links = [shown(p.proto.label) for p in at.get("page_link")]
    assert links[:10] == [f"run-{i:02d}" for i in range(10)] and links[-1] == "All runs"


def test_stored_alert_rows_that_cannot_be_read_are_skipped() -> None:
    from entropy_watch.app.run_panels import split_alerts

    bad = {"step": 1, "detector": "x", "kind": "collapse", "severity": "warning", "message": "m", "evidence": "{"}
    good = {**OLD.to_row(), "evidence": json.dumps({})}
    current, earlier = split_alerts(None, [bad, good])
    assert current == [] and [a.key for a in earlier] == [OLD.key]
