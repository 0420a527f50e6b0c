"""The run's known change points on the Run page: a resume, an LR schedule or config change, a reset (the kinds of
``entropy_watch.analysis.changes.KNOWN_CHANGE_KINDS``, where the analysis explains a jump of entropy instead of
alerting) are marked at their steps on the entropy chart, labelled by kind, and on every other step chart; other
events (an ``on_alert`` action, the trainer's SFT warm-up) are not; the step window hides those outside it; their
payloads are shown as data."""

from __future__ import annotations

import html
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis.changes import (
    CHANGE_LABELS,
    KNOWN_CHANGE_KINDS,
    RESET_EVENT_KINDS,
    change_label,
    change_meaning,
)
from entropy_watch.app import charts
from entropy_watch.store import RunWriter
from entropy_watch.store.reads import Trace

from .conftest import decode, figures
from .test_pages import all_tabs, app, texts

RUN = "resumed"
MARKUP = "<b>bold</b> <a href='http://evil.example'>x</a> &amp; [l](http://evil.example) **b** $x$ :smile:"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy synthetic run of 100 steps resumed from its checkpoint at step 5 (a path holding markup), an LR
    schedule change at 40, an ``on_alert`` action at 41, the SFT warm-up at 0 and a user's own kind at 60."""
    from entropy_watch.synthetic import write_to_store

    root = tmp_path_factory.mktemp("changes") / "store"
    write_to_store(root, RUN, "healthy", seed=3, n_steps=100)
    w = RunWriter(root, RUN)
    payloads = [{"steps": 20, "final_loss": 0.1}, {"checkpoint_step": 4, "checkpoint": MARKUP}, {"lr": 1e-6},
                {"rule": "critical", "did": ["stop requested"]}, {"note": "my own kind"}]  # fmt: skip
    w.write("events", {"step": [0, 5, 40, 41, 60], "kind": ["sft", "resume", "lr_schedule", M.EVENT_ACTION, "mine"],
                       "payload": [json.dumps(p) for p in payloads]})  # fmt: skip
    w.close()
    return root


def marks(fig: dict) -> dict[str, SimpleNamespace]:
    """The change points a figure marks, by kind: the steps of the markers, their labels and hovers, the steps of
    the vertical lines and the lines' legend name."""
    out = {}
    for t in fig["data"]:
        group = t.get("legendgroup") or ""
        if not group.startswith("change:"):
            continue
        m = out.setdefault(group.removeprefix("change:"), SimpleNamespace())
        if "markers" in t["mode"]:
            m.steps = decode(t["x"]).tolist()
            m.labels = list(t.get("text") or [])
            fill = t["hovertemplate"].removesuffix("<extra></extra>")  # the hover as Plotly fills it in
            m.hovers = [fill.replace("%{customdata[0]}", a).replace("%{customdata[1]}", b) for a, b in t["customdata"]]
        else:
            x = decode(t["x"])
            m.lines = x[np.isfinite(x)].tolist()  # each line from the axis' bottom to its top, NaN between them
            m.legend = t["name"] if t.get("showlegend") is not False else None
    return out


def test_a_resume_and_an_lr_change_are_marked_at_their_steps_with_their_labels(
    monkeypatch: pytest.MonkeyPatch, store: Path
) -> None:
    at = app(monkeypatch, store, "views/run.py", {"run": RUN})
    entropy = marks(figures(at)["entropy"])
    assert set(entropy) == {"resume", "lr_schedule"}
    resume, lr = entropy["resume"], entropy["lr_schedule"]
    assert resume.steps == [5] and resume.lines == [5, 5] and resume.labels == ["resume"]
    assert lr.steps == [40] and lr.lines == [40, 40] and lr.labels == ["LR schedule change"]
    assert resume.legend == "resume (baselines kept)" and lr.legend == "LR schedule change (baselines restart)"
    assert resume.hovers[0].startswith(
        "step 5: resume from checkpoint step 4 — the run goes on with its baselines; a jump here is explained"
    )
    assert lr.hovers[0].startswith("step 40: LR schedule change — baselines restart here")
    assert "lr: 1e-06" in lr.hovers[0], "the payload is shown"
    caption = texts(at, "caption")
    assert "known change points in these steps — resume at step 5; LR schedule change at step 40." in caption
    assert "the baselines (H_ref) restart at each LR schedule change" in caption
    # every other step chart of the page marks the same points (lines and hovers; the entropy chart has the labels)
    figs = all_tabs(at)
    step_charts = {k for k, f in figs.items() if f["layout"]["xaxis"]["title"]["text"].startswith("step")}
    assert {"entropy", "heatmap", "fan", "clip", "adv", "dh"} <= step_charts
    for key in step_charts - {"entropy"}:
        drawn = marks(figs[key])
        assert {k: m.steps for k, m in drawn.items()} == {"resume": [5], "lr_schedule": [40]}, key
        assert drawn["resume"].hovers == resume.hovers and drawn["resume"].legend is None, key
        assert figs[key]["layout"]["yaxis3"]["range"] == [0, 1], key


def test_an_action_and_the_sft_warm_up_are_not_change_points(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    at = app(monkeypatch, store, "views/run.py", {"run": RUN})
    for key, fig in all_tabs(at).items():
        if not fig["layout"]["xaxis"]["title"]["text"].startswith("step"):
            continue
        drawn = marks(fig)
        assert set(drawn) == {"resume", "lr_schedule"}, (key, set(drawn))  # not sft, action or a user's own kind
        assert sorted(s for m in drawn.values() for s in m.steps) == [5, 40], key
    assert "step 41: stop requested" in texts(at, "text"), "the action is still listed with the alerts"


def test_change_points_outside_the_step_window_are_not_drawn(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    at = app(monkeypatch, store, "views/run.py", {"run": RUN}, window_mode="step range", window_lo=20, window_hi=99)
    figs = all_tabs(at)
    for key, fig in figs.items():
        if fig["layout"]["xaxis"]["title"]["text"].startswith("step"):
            assert {k: m.steps for k, m in marks(fig).items()} == {"lr_schedule": [40]}, key
    at = app(monkeypatch, store, "views/run.py", {"run": RUN}, window_mode="step range", window_lo=50, window_hi=99)
    assert not marks(figures(at)["entropy"]) and "change points" not in texts(at, "caption")


def test_a_payload_with_markup_is_shown_literally(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    at = app(monkeypatch, store, "views/run.py", {"run": RUN})
    (hover,) = marks(figures(at)["entropy"])["resume"].hovers
    lines = hover.split("<br>")
    assert lines[2] == f"checkpoint: {html.escape(MARKUP, quote=False)}", lines
    assert "<b>" not in hover and "<a " not in hover, "Plotly would render these tags"
    assert html.unescape(lines[2]) == f"checkpoint: {MARKUP}", "and shows the text as it is"


def test_marks_are_one_trace_per_kind_and_thinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hundreds of change points: two traces per kind whatever their number, at most ``MAX_CHANGE_MARKS`` markers
    of a kind, each kept one's hover counting those it stands for."""
    from entropy_watch.synthetic import write_to_store

    write_to_store(tmp_path, RUN, "healthy", seed=3, n_steps=3000)
    steps = list(range(3, 3001, 3))  # 1,000 resumes
    w = RunWriter(tmp_path, RUN)
    w.write("events", {"step": [*steps, 1500], "kind": ["resume"] * len(steps) + ["reset"],
                       "payload": [json.dumps({"from_step": s - 1}) for s in steps] + ["not json"]})  # fmt: skip
    w.close()
    at = app(monkeypatch, tmp_path, "views/run.py", {"run": RUN})
    fig = figures(at)["entropy"]
    assert sum((t.get("legendgroup") or "").startswith("change:") for t in fig["data"]) == 4
    drawn = marks(fig)
    resume = drawn["resume"]
    assert len(resume.steps) == charts.MAX_CHANGE_MARKS and resume.steps == sorted(resume.steps)
    assert resume.steps[0] == 3, "the first of each step range is kept"
    more = [int(h.split("<br>+ ")[1].split(" ")[0]) for h in resume.hovers]
    assert sum(more) + len(more) == len(steps), "each kept mark counts the ones it stands for"
    assert sum(bool(lbl) for m in drawn.values() for lbl in m.labels) <= charts.MAX_CHANGE_LABELS
    assert drawn["reset"].steps == [1500] and "payload: not json" in drawn["reset"].hovers[0]
    assert "resume at 1,000 steps from 3 to 3,000" in texts(at, "caption")


def test_kinds_and_meanings_come_from_the_analysis() -> None:
    assert set(CHANGE_LABELS) | set(charts.CHANGE_COLOURS) <= KNOWN_CHANGE_KINDS, (
        "a label for a kind the analysis does not know"
    )
    for kind in KNOWN_CHANGE_KINDS:
        restarts = "baselines restart here" in change_meaning(kind)
        assert restarts == (kind in RESET_EVENT_KINDS), kind
        assert "a jump here is explained" in change_meaning(kind)
    assert change_label("resume") == "resume" and change_label("new_kind") == "new_kind"


def test_the_step_window_fits_only_the_data_axis() -> None:
    """``step_range`` fits the primary y axis to the window: the axes laid over it (the forecast's ETA line, the
    change points, both 0 to 1) keep their range, so their lines still span the plot."""
    s = np.arange(100.0)
    h = 2.0 + np.exp(-s / 50)  # entropy above 1 nat: an ETA line from 0 to 1 on the entropy's range would vanish
    fc = SimpleNamespace(steps=[99.0, 150.0], curve=[2.4, 2.3], lo=[2.4, 2.2], hi=[2.4, 2.4], interval=0.8,
                         model="line", eta_step=140.0, eta_lo_step=130.0, eta_hi_step=150.0, reached=False,
                         target_label="the floor", direction="fall", target=2.3)  # fmt: skip
    marks = charts.ChangeMarks(np.asarray([60]), ("resume",), ({},))
    fc.fitted_at = 99
    fig = charts.entropy_forecast(Trace("e", s, h, h, h), forecast=fc, x_range=(50.0, 145.0), changes=marks)
    assert list(fig.layout.yaxis2.range) == [0, 1] and list(fig.layout.yaxis3.range) == [0, 1]
    assert fig.layout.yaxis.range[0] > 2.0


def test_a_long_payload_keeps_the_end_of_its_values_and_counts_the_rest() -> None:
    path = "/mnt/shared/" + "x" * 200 + "/checkpoint-4"
    payload = {"checkpoint_step": 4, "checkpoint": path, **{f"k{i}": i for i in range(10)}}
    lines = charts.change_details(payload)
    assert lines[1].startswith("checkpoint: /mnt/shared/") and lines[1].endswith("/checkpoint-4")
    assert len(lines[1]) == len("checkpoint: ") + charts.MAX_VALUE_CHARS
    assert len(lines) == 1 + charts.MAX_PAYLOAD_FIELDS and lines[-1] == "… 6 more fields"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two healthy runs on one store: "resumed" resumed at step 30 with an LR schedule change at 70, "plain" none."""
    from entropy_watch.synthetic import write_to_store

    root = tmp_path_factory.mktemp("compare") / "store"
    for name, seed in (("plain", 1), (RUN, 2)):
        write_to_store(root, name, "healthy", seed=seed, n_steps=100)
    w = RunWriter(root, RUN)
    w.write("events", {"step": [30, 70], "kind": ["resume", "lr_schedule"],
                       "payload": [json.dumps({"checkpoint_step": 29}), json.dumps({"lr": 1e-6})]})  # fmt: skip
    w.close()
    return root


def test_compare_marks_each_runs_change_points_in_its_colour(monkeypatch: pytest.MonkeyPatch, pair: Path) -> None:
    """The Compare page marks a run's change points on every panel as the Run page does, in that run's colour and
    named after it (several runs share the chart), and says under the entropy chart whose they are; a run without
    any gets none."""
    at = app(monkeypatch, pair, "views/compare.py", compare_select=["plain", RUN])
    figs = figures(at)
    colour = {t["name"]: t["line"]["color"] for t in figs["cmp_entropy"]["data"] if t["name"] in ("plain", RUN)}
    for key in ("cmp_entropy", "cmp_reward", "cmp_clip_high", "cmp_clip_low"):
        if key not in figs:
            continue
        drawn = marks(figs[key])
        assert {k: m.steps for k, m in drawn.items()} == {f"resume@{RUN}": [30], f"lr_schedule@{RUN}": [70]}, key
        lines = [t for t in figs[key]["data"] if (t.get("legendgroup") or "").startswith("change:")]
        assert {t["line"]["color"] if "lines" == t["mode"] else t["marker"]["color"] for t in lines} == {colour[RUN]}
        assert drawn[f"resume@{RUN}"].hovers[0].startswith(f"{RUN}: step 30: resume from checkpoint step 29"), key
    said = f"the runs' known change points in these steps — {RUN}: resume at step 30, LR schedule change at step 70"
    assert said in texts(at, "caption")
    at = app(monkeypatch, pair, "views/compare.py", compare_select=["plain"])
    assert not marks(figures(at)["cmp_entropy"]) and "change points" not in texts(at, "caption")
