"""The alerts / watch / report / show commands through typer's CliRunner: exit codes, JSON, writing, following,
HTML — and that every one of them renders the same verdict as ``entropy_watch.analysis.verdict``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer.testing

from entropy_watch.cli import app
from entropy_watch.synthetic import write_to_store

from ..real_runs import REAL

runner = typer.testing.CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    write_to_store(root, "healthy", "healthy", seed=0, n_steps=300)
    write_to_store(root, "collapse", "collapse_exp", seed=0, n_steps=300)
    return root


def _run(store: Path, *args: str) -> typer.testing.Result:
    return runner.invoke(app, ["--store", str(store), *args])


def test_exit_status_clean_and_critical(store: Path) -> None:
    r = _run(store, "alerts", "healthy")
    assert r.exit_code == 0, r.output
    r = _run(store, "alerts", "collapse")
    assert r.exit_code == 2, r.output
    assert "collapse" in r.output and "critical" in r.output


def test_warning_exit_status_and_filters(store: Path) -> None:
    r = _run(store, "alerts", "collapse", "--json")
    data = json.loads(r.stdout)
    assert data[0]["run"] == "collapse" and data[0]["alerts"]
    warn_steps = [a["step"] for a in data[0]["alerts"] if a["severity"] == "warning"]
    crit_steps = [a["step"] for a in data[0]["alerts"] if a["severity"] == "critical"]
    assert warn_steps and crit_steps
    last = max(a["step"] for a in data[0]["alerts"])
    r = _run(store, "alerts", "collapse", "--json", "--since", str(last + 1))
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["alerts"] == []
    r = _run(store, "alerts", "collapse", "--min-severity", "critical", "--json")
    assert {a["severity"] for a in json.loads(r.stdout)[0]["alerts"]} == {"critical"}
    # only warnings after the first critical alert was filtered: exit 1
    only_warn = [s for s in warn_steps if s > max(crit_steps)]
    if only_warn:
        r = _run(store, "alerts", "collapse", "--since", str(max(crit_steps) + 1), "--min-severity", "warning")
        assert r.exit_code == 1


def test_errors_exit_3_with_one_line(store: Path) -> None:
    r = _run(store, "alerts", "no-such-run")
    assert r.exit_code == 3
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert _run(store, "alerts", "healthy", "--min-severity", "loud").exit_code == 2  # a usage error


def test_run_folder_and_raw_log_file(store: Path) -> None:
    r = _run(store, "alerts", str(store / "run=collapse"), "--json")
    assert r.exit_code == 2 and json.loads(r.stdout)[0]["run"] == "collapse"
    f = REAL / "rasbt__reasoning-from-scratch__ch07-7_5-kl.csv"
    if f.exists():
        r = _run(store, "alerts", str(f), "--json")
        assert r.exit_code == 2
        assert any(a["kind"] == "explosion" for a in json.loads(r.stdout)[0]["alerts"])


def test_write_stores_alerts_once(store: Path) -> None:
    from entropy_watch.store import Store

    assert _run(store, "alerts", "collapse", "--write").exit_code == 2
    n = Store(store).table("collapse", "alerts").num_rows
    assert n > 0
    _run(store, "alerts", "collapse", "--write")
    assert Store(store).table("collapse", "alerts").num_rows == n  # no duplicates


def test_watch_once_and_iterations(store: Path) -> None:
    r = _run(store, "watch", "--once")
    assert r.exit_code == 0, r.output
    assert "[collapse] step" in r.stdout and "[healthy]" not in r.stdout
    r = _run(store, "watch", "collapse", "--iterations", "2", "--interval", "0.01", "--json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines and all(x["run"] == "collapse" for x in lines)
    assert len(lines) == len({(x["step"], x["detector"], x["severity"]) for x in lines})  # each alert printed once


def test_report_writes_one_self_contained_html(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    r = _run(store, "report", "collapse", "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "<script" in text and "Plotly" in text and "https://cdn" not in text.split("<body>")[0]
    assert "Token-entropy distribution" in text and "forecast" in text and "critical" in text


def test_report_names_the_extra_when_plotly_is_missing(store: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from entropy_watch.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    r = _run(store, "report", "collapse", "-o", str(tmp_path / "x.html"))
    assert isinstance(r.exception, MissingExtra) and "entropy-watch[app]" in str(r.exception)


def _verdict_of(store: Path, run: str) -> dict:
    from entropy_watch.analysis import RunSeries, verdict
    from entropy_watch.store import Store

    return verdict(RunSeries.from_reader(Store(store), run)).to_dict()


def test_show_alerts_and_report_render_the_verdict(store: Path, tmp_path: Path) -> None:
    import html as html_mod

    for run in ("healthy", "collapse"):
        v = _verdict_of(store, run)
        got = json.loads(_run(store, "alerts", run, "--json").stdout)[0]
        assert got["verdict"] == v
        assert [a["key"] for a in got["alerts"]] == [a["key"] for a in v["alerts"]]  # the verdict's order
        shown = json.loads(_run(store, "show", run, "--json").stdout)["verdict"]
        assert shown == v
        text = _run(store, "show", run).stdout
        assert v["headline"][:60] in " ".join(text.split())
        assert "H / H0" not in text  # the verdict's H_ref replaces the old first-point ratio
        out = tmp_path / f"{run}.html"
        assert _run(store, "report", run, "-o", str(out)).exit_code == 0
        page = out.read_text()
        assert html_mod.escape(v["headline"]) in page
        if v["forecast"] is not None:
            assert f"forecast ({v['forecast']['direction']}" in page
    assert _verdict_of(store, "collapse")["health"] == "critical"
    assert _verdict_of(store, "healthy")["health"] == "ok"


@pytest.mark.skipif(not REAL.exists(), reason="shared/real_runs not present")
def test_cli_and_verdict_agree_on_a_real_log_at_every_step_checked(tmp_path: Path) -> None:
    from entropy_watch.analysis import RunSeries, verdict
    from entropy_watch.importers import load_log

    f = REAL / "Sunshine535__nips-grpo-dynamics__qwen25-7b-exp1a-rho2.00_seed44.jsonl"
    s = RunSeries.from_imported(load_log(f)[0])
    got = json.loads(runner.invoke(app, ["alerts", str(f), "--json"]).stdout)[0]
    assert got["verdict"] == verdict(s).to_dict()
    # the CLI reads the whole file; cut copies of it give the verdict at earlier steps
    lines = f.read_text().splitlines()
    for k in (8, 20, 33):
        cut = tmp_path / f"cut{k}.jsonl"
        cut.write_text("\n".join(lines[: next(i for i, x in enumerate(lines) if x.strip()) + k]) + "\n")
        part = RunSeries.from_imported(load_log(cut)[0])
        got = json.loads(runner.invoke(app, ["alerts", str(cut), "--json"]).stdout)[0]["verdict"]
        assert got["step"] == int(part.steps[-1])
        want = verdict(s, at_step=int(part.steps[-1])).to_dict()
        assert {k: v for k, v in got.items() if k != "run"} == {k: v for k, v in want.items() if k != "run"}


def test_report_labels_sit_on_their_lines_and_the_charts_share_the_step_axis() -> None:
    """The entropy chart is log-scaled: ``add_hline(annotation_text=...)`` put "H_ref" at 10^1.15 nats for a 1.15 nats
    line, and the axis stretched to the label squashed the run; the forecast stretched the entropy chart's steps past
    the reward chart's."""
    import math

    import plotly.graph_objects as go

    from entropy_watch.analysis import analyze
    from entropy_watch.report import _entropy_figure, step_range
    from entropy_watch.synthetic import generate

    series = generate("steady_collapse", 1, 100).to_series()
    res = analyze(series)
    v = res.verdict
    assert v.forecast is not None and v.reference.value is not None and v.floor is not None
    fig = _entropy_figure(go, series, res)
    assert fig.layout.yaxis.type == "log"
    labels = {a.text: a.y for a in fig.layout.annotations}
    assert labels["H_ref"] == math.log10(v.reference.value) and labels["floor"] == math.log10(v.floor)
    lo, hi = step_range(series, res)
    assert lo == series.steps[0] and hi == max(series.steps[-1], v.forecast.steps[-1])
