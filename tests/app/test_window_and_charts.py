"""The sidebar's step window on every chart of the Run page, the alerts panel under a window that hides the alerts,
one colour per run across the Compare page's panels, legends and number formats on every chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from entropy_watch.app.display import Window, short_name
from entropy_watch.app.run_panels import outside_window
from entropy_watch.app.run_tabs import TABS

from .conftest import COLLAPSE, HEALTHY, IMPORTED
from .test_pages import all_tabs, app, verdict


def step_figures(figs: dict[str, dict]) -> dict[str, dict]:
    return {k: f for k, f in figs.items() if f["layout"]["xaxis"]["title"]["text"].startswith("step")}


@pytest.mark.parametrize(
    ("state", "want"),
    [
        ({"window_mode": "step range", "window_lo": 0, "window_hi": 100}, [0.0, 100.0]),
        ({"window_mode": "last N steps", "window_last": 50}, [250.0, 299.0]),
    ],
)
def test_every_run_chart_follows_the_step_window(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path, state: dict, want: list[float]
) -> None:
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": HEALTHY}, **state)
    figs = step_figures(all_tabs(at))
    assert {"entropy", "heatmap", "fan", "clip", "adv", "dh"} <= set(figs), set(figs)
    for key, fig in figs.items():
        if key == "entropy" and state.get("window_last"):  # may stretch right over a forecast, by at most N/2
            lo, hi = fig["layout"]["xaxis"]["range"]
            assert lo == want[0] and want[1] <= hi <= want[1] + 25, (key, lo, hi)
            continue
        if key == "alerts":
            continue  # drawn only with alerts in the window; its range is tested with the alerts panel
        assert fig["layout"]["xaxis"]["range"] == want, (key, fig["layout"]["xaxis"].get("range"))


def test_all_steps_leave_the_axes_to_plotly() -> None:
    assert Window().x_range(300) is None
    assert Window(lo=0, hi=100_000).x_range(300) == (0.0, 300.0), "a range past the run's end is cut at its end"
    assert Window(last=100).x_range(3434, ahead=5100.0) == (3335.0, 3484.0), "a forecast stretches it by N/2 at most"


def test_a_window_without_the_alerts_never_reads_as_all_clear(synthetic_store: Path) -> None:
    v = verdict(synthetic_store, COLLAPSE)
    assert v.health in ("warning", "critical") and v.kind == "collapse"
    text = outside_window(v, len(v.alerts))
    since = next(p.since for p in v.problems if p.kind == "collapse" and p.cleared is None)
    assert text.startswith("No alerts in the steps shown") and "no collapse" not in text
    assert f"{v.health} collapse since step {since:,}" in text and "widen the window" in text


def test_compare_keeps_one_colour_per_run_and_shows_legends(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path
) -> None:
    from .conftest import figures

    at = app(monkeypatch, synthetic_store, "views/compare.py", compare_select=[COLLAPSE, IMPORTED, HEALTHY])
    figs = figures(at)
    colours: dict[str, set[str]] = {}
    for key in ("cmp_entropy", "cmp_reward", "cmp_clip_high", "cmp_clip_low"):
        assert figs[key]["layout"]["showlegend"] is True
        for t in figs[key]["data"]:
            if t.get("showlegend", True) is not False:
                colours.setdefault(t["name"], set()).add(t["line"]["color"])
    assert IMPORTED not in {t["name"] for t in figs["cmp_reward"]["data"]}, "the imported run logged no reward"
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == len(colours), "different runs, different colours"
    for key in ("cmp_clip_high", "cmp_clip_low"):  # fractions as percentages, never "100µ"
        assert figs[key]["layout"]["yaxis"]["tickformat"] == "~%"


def test_single_series_charts_have_a_legend_and_plain_ticks(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path
) -> None:
    at = app(monkeypatch, synthetic_store, "views/run.py", {"run": HEALTHY}, run_tab=TABS[1])
    for key, fig in all_tabs(at).items():
        lay = fig["layout"]
        assert lay["showlegend"] is True, key
        for axis in ("xaxis", "yaxis"):
            assert lay[axis].get("exponentformat") == "none" or lay[axis].get("ticktext"), (key, axis)


def test_long_run_names_keep_their_distinguishing_end() -> None:
    a = "Sunshine535__nips-grpo-dynamics__qwen25-7b-exp1a-rho0.30_seed43"
    b = "Sunshine535__nips-grpo-dynamics__qwen25-7b-exp1a-rho0.50_seed43"
    assert short_name(a) != short_name(b) and short_name(a).endswith("rho0.30_seed43") and len(short_name(a)) <= 46
    assert short_name("short-name") == "short-name"
