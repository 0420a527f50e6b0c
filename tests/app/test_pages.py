"""AppTest on every page against stores from the synthetic generator, an import and a real ``Watch`` loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from entropy_watch import metrics as M
from entropy_watch.app.run_panels import TABS
from entropy_watch.store import RunWriter, Store

from .conftest import APP_MAIN, COLLAPSE, HEALTHY, IMPORTED, decode, figures

TIMEOUT = 60


def app(monkeypatch: pytest.MonkeyPatch, root: Path, page: str | None = None, **state: object) -> AppTest:
    monkeypatch.setenv("ENTROPY_WATCH_DIR", str(root))
    from entropy_watch.app import data

    monkeypatch.setattr(data, "ANALYSIS_WAIT_S", 30.0)  # small runs: wait for the analysis, deterministic
    at = AppTest.from_file(str(APP_MAIN), default_timeout=TIMEOUT)
    if page:
        at.switch_page(page)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def all_tabs(at: AppTest) -> dict[str, dict]:
    """The Run page's figures with every tab opened in turn (only the open tab's charts are sent), back on the
    first tab at the end."""
    figs = figures(at)
    for label in (*TABS[1:], TABS[0]):
        at.session_state["run_tab"] = label
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        figs.update(figures(at))
    return figs


def infos(at: AppTest) -> str:
    return "\n".join(i.value for i in at.info)


@pytest.mark.parametrize("page", [None, "pages/run.py", "pages/compare.py"])
def test_empty_store_explains_instead_of_failing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, page: str) -> None:
    at = app(monkeypatch, tmp_path / "nothing-here", page)
    assert "No runs in the store" in infos(at)
    assert not at.get("plotly_chart")


def test_runs_page_lists_every_run_with_health_and_status(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path):
    at = app(monkeypatch, synthetic_store)
    df = at.dataframe[0].value.set_index("run")
    assert set(df.index) == {COLLAPSE, HEALTHY, IMPORTED}
    assert df.loc[COLLAPSE, "health"] == "🔴 critical"
    assert df.loc[HEALTHY, "health"] in ("🟢 ok", "🔵 info")  # no warning on a healthy run
    assert df.loc[IMPORTED, "status"] == "📥 imported"
    assert df.loc[COLLAPSE, "status"] == "✅ finished"
    assert df.loc[COLLAPSE, "last step"] == 299
    steps, h = Store(synthetic_store).series(COLLAPSE, M.ENTROPY_MEAN)
    assert df.loc[COLLAPSE, "H (nats)"] == pytest.approx(h[-1])
    assert df.loc[COLLAPSE, "H/H0"] == pytest.approx(h[-1] / np.median(h[:20]))
    assert 0 < len(df.loc[COLLAPSE, "entropy"]) <= 60
    # filter and sort
    at.text_input(key="runs_filter").set_value("repo").run()
    assert list(at.dataframe[0].value["run"]) == [HEALTHY]


def test_run_page_figures_match_the_store(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "pages/run.py", run_select=COLLAPSE)
    assert set(figures(at)) == {"entropy", "heatmap", "fan", "alerts"}, "on load: header, entropy, first tab, alerts"
    figs = all_tabs(at)
    assert {"entropy", "heatmap", "fan", "clip", "adv", "dh", "cov", "reward", "alerts"} <= set(figs)
    store = Store(synthetic_store)
    steps, h = store.series(COLLAPSE, M.ENTROPY_MEAN)
    line = next(t for t in figs["entropy"]["data"] if t.get("name") == "entropy mean")
    np.testing.assert_array_equal(decode(line["x"]), steps)
    np.testing.assert_allclose(decode(line["y"]), h)
    assert any("forecast" in (t.get("name") or "") for t in figs["entropy"]["data"])
    assert figs["entropy"]["layout"]["yaxis"]["title"]["text"] == "entropy (nats/token)"
    assert "step" in figs["entropy"]["layout"]["xaxis"]["title"]["text"]
    # heatmap: one column per step, one row per bin, counts equal the hist table
    hm = figs["heatmap"]["data"][0]
    counts = decode(hm["customdata"])
    hist = store.table(COLLAPSE, "hist")
    assert counts.shape == (len(store.run_meta(COLLAPSE)["hist_edges"]), 300)
    assert counts.sum() == pytest.approx(float(np.sum(hist.column("count").to_numpy())))
    np.testing.assert_allclose(decode(hm["z"]), np.log10(1 + counts))
    # reward vs entropy with the law's fit
    assert any((t.get("name") or "").startswith("R = −") for t in figs["reward"]["data"])
    assert metric(at, "health 🔴") == "critical"
    assert metric(at, "last step") == "299"
    assert at.expander, "each alert has an expander with evidence and actions"
    assert "No sampled tokens match" in infos(at)  # the generator writes no token samples


def test_imported_run_explains_missing_charts(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "pages/run.py", run_select=IMPORTED)
    text = infos(at)
    for label in TABS[1:]:
        at.session_state["run_tab"] = label
        at.run()
        text += infos(at)
    assert "No histogram bin edges" in text or "No token-entropy histogram" in text
    assert "No reward logged" in text
    assert "No clip fractions" in text
    assert "entropy" in figures(at)


def test_live_update_shows_new_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from entropy_watch.synthetic import write_to_store

    root = tmp_path / "store"
    write_to_store(root, "live", "healthy", seed=3, n_steps=100)
    at = app(monkeypatch, root, "pages/run.py", run_select="live")
    assert metric(at, "last step") == "99"
    assert decode(figures(at)["entropy"]["data"][0]["x"]).size == 100
    w = RunWriter(root, "live")
    w.write("scalars", {"step": list(range(100, 130)), "name": [M.ENTROPY_MEAN] * 30, "value": [0.5] * 30})
    w.heartbeat(step=129)
    at.run()
    assert not at.exception
    assert metric(at, "last step") == "129"
    ent = next(t for t in figures(at)["entropy"]["data"] if t.get("name") == "entropy mean")
    assert decode(ent["x"]).size == 130 and decode(ent["y"])[-1] == 0.5


def test_compare_overlays_runs_aligned_by_step(monkeypatch: pytest.MonkeyPatch, synthetic_store: Path) -> None:
    at = app(monkeypatch, synthetic_store, "pages/compare.py", compare_select=[COLLAPSE, HEALTHY])
    figs = figures(at)
    assert {"cmp_entropy", "cmp_rel", "cmp_reward", "cmp_clip_high", "cmp_clip_low"} <= set(figs)
    by_name = {t["name"]: t for t in figs["cmp_entropy"]["data"]}
    assert set(by_name) == {COLLAPSE, HEALTHY}
    steps, h = Store(synthetic_store).series(HEALTHY, M.ENTROPY_MEAN)
    np.testing.assert_allclose(decode(by_name[HEALTHY]["y"]), h)
    rel = {t["name"]: decode(t["y"]) for t in figs["cmp_rel"]["data"]}
    np.testing.assert_allclose(rel[HEALTHY], h / np.median(h[:20]))
    assert "pass@k" in infos(at)


def test_watch_run_page_shows_tokens_clip_and_drivers(monkeypatch: pytest.MonkeyPatch, watch_store: Path) -> None:
    at = app(monkeypatch, watch_store, "pages/run.py", run_select="watch-loop")
    figs = all_tabs(at)
    assert {"entropy", "heatmap", "fan", "clip", "adv", "reward"} <= set(figs)
    tokens = at.dataframe[-1].value
    assert len(tokens) == 25 and "⟦" in tokens["context"].iloc[0]
    assert tokens["entropy"].is_monotonic_decreasing
    raw = Store(watch_store).table("watch-loop", "tokens")
    assert tokens["entropy"].iloc[0] == pytest.approx(float(np.max(raw.column("entropy").to_numpy())))
    steps, h = Store(watch_store).series("watch-loop", M.ENTROPY_MEAN)
    np.testing.assert_allclose(decode(figs["entropy"]["data"][0]["y"]), h)
    at.number_input(key="tok_min").set_value(100.0).run()  # nothing has entropy above ln 16
    assert "No sampled tokens match" in infos(at)


def test_tab_charts_are_coarsened_without_losing_extremes() -> None:
    from entropy_watch.app.queries import Trace
    from entropy_watch.app.run_panels import coarsen

    rng = np.random.default_rng(0)
    steps = np.arange(2002, dtype=np.float64)
    y = rng.normal(size=2002)
    tr = coarsen(Trace("x", steps, y, y - 1.0, y + 1.0, width=50), 1000)
    assert len(tr) == 668 and tr.width == 150  # ceil(2002 / 1000) = 3 buckets merged per point
    np.testing.assert_allclose(tr.mean[:-1], y[:2001].reshape(-1, 3).mean(axis=1))
    np.testing.assert_allclose(tr.hi[:-1], y[:2001].reshape(-1, 3).max(axis=1) + 1.0)
    assert tr.lo.min() == pytest.approx(y.min() - 1.0)
    assert tr.steps[-1] == 2001.0 and tr.mean[-1] == y[-1]  # the last, partial bucket: the newest step alone
    short = Trace("s", steps[:10], y[:10], y[:10], y[:10])
    assert coarsen(short, 1000) is short
