"""The HTML report as users share it: attached to a ticket, opened days later on another machine, offline. A long
run's report carries its lines thinned (min and max per bucket, a one-point spike kept), not every point; it says
when it was written, in UTC, and to which step; and, opened in Debian's chromium, it fetches nothing and shows the
verdict and the alerts that ``show --json`` and ``alerts --json`` print for the same run."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.report import build_report

from .conftest import CHROMIUM, report_page

WAIT_MS = 120_000
ARRAY = re.compile(r'"y":\{"dtype":"f8","bdata":("(?:[^"\\]|\\.)*")')  # a JSON string: "/" written "\u002f"


def drawn_ys(doc: str) -> list[np.ndarray]:
    """The float ``y`` arrays of the report's charts, as plotly writes them into the page (base64 of float64)."""
    return [np.frombuffer(base64.b64decode(json.loads(m)), dtype="<f8") for m in ARRAY.findall(doc)]


def long_run(n: int) -> RunSeries:
    """A slow collapse over ``n`` steps with a one-point spike and a one-point dip, and a reward."""
    rng = np.random.default_rng(0)
    steps = np.arange(n)
    h = 1.2 * np.exp(-steps / (n / 3)) + 0.05 + 0.01 * rng.random(n)
    h[n // 3] = 5.0  # one spike, which a thinned chart must still show
    h[2 * n // 3] = 0.001  # and one dip
    reward = np.linspace(0.0, 1.0, n)
    return RunSeries.from_arrays("long", steps, h, scalars={"reward/mean": (steps, reward)})


def test_a_long_run_report_is_thinned_and_keeps_its_spikes(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    short, long = long_run(200), long_run(100_000)
    small = build_report(short, analyze(short), tmp_path / "short.html").stat().st_size
    out = build_report(long, analyze(long), tmp_path / "long.html")
    # 3 lines of 100k points were 6 MB more than a short run's report (plotly.js is 4.8 MB of both)
    assert out.stat().st_size < small + 600_000, (out.stat().st_size, small)
    doc = out.read_text(encoding="utf-8")
    ys = drawn_ys(doc)
    assert ys and max(len(y) for y in ys) <= 6_002  # 2 of each of 2,000 buckets, a gap, the ends
    drawn = ys[0]  # the entropy line, the page's first chart's first trace: logged values, the spike and the dip
    assert np.isin(drawn, long.entropy).all() and drawn.max() == 5.0 and drawn.min() == 0.001
    assert "100,000 logged points: each line is drawn with the lowest and the highest point" in doc
    assert "logged points:" not in build_report(short, analyze(short), tmp_path / "short.html").read_text("utf-8")


def test_thinning_keeps_a_gap_and_the_ends() -> None:
    from entropy_watch.report import thinned

    y = np.linspace(1.0, 2.0, 50_000)
    y[10_000:10_005] = np.nan
    keep = thinned(y)
    assert keep[0] == 0 and keep[-1] == y.size - 1 and np.all(np.diff(keep) > 0)
    assert np.isnan(y[keep]).any()  # the line keeps its gap
    assert thinned(y[:100]).tolist() == list(range(100))


def test_the_report_says_when_it_was_written_in_utc(tmp_path: Path) -> None:
    """A verdict saying "now" read days later: the report says when, in a time zone anyone can read."""
    pytest.importorskip("plotly")
    steps = np.arange(150)
    series = RunSeries.from_arrays("r", steps, 1.5 * np.exp(-steps / 40.0) + 0.01, meta={"vocab_size": 1000})
    before = time.time()
    doc = build_report(series, analyze(series), tmp_path / "r.html").read_text(encoding="utf-8")
    after = time.time()
    m = re.search(r"report written (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC, of the data to step 149<", doc)
    assert m is not None
    written = time.mktime(time.strptime(m.group(1) + " UTC", "%Y-%m-%d %H:%M:%S %Z")) - time.timezone
    assert int(before) - 1 <= written <= after + 1
    assert "ln V 6.91 nats" in doc  # every number with its unit


def store_run(root: Path, name: str) -> None:
    """An exploding run written to a store, with a resume, as a training writes it."""
    from entropy_watch.store import RunWriter

    w = RunWriter(root, name)
    steps = np.arange(400)
    h = np.where(steps < 200, 0.4, 0.4 * np.exp((steps - 200) / 60.0)) * (1 + 0.02 * np.sin(steps))
    reward = np.where(steps < 200, 0.6, 0.6 - (steps - 200) / 500)
    w.write("scalars", {"step": np.concatenate([steps, steps]), "name": ["entropy/mean"] * 400 + ["reward/mean"] * 400,
                        "value": np.concatenate([h, reward])})  # fmt: skip
    w.write("events", {"step": [120], "kind": ["resume"], "payload": [json.dumps({"checkpoint_step": 120})]})
    w.close()


@pytest.mark.e2e
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (apt-get install -y chromium)")
def test_a_shared_report_shows_what_show_and_alerts_print(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("plotly")
    pytest.importorskip("playwright.sync_api")
    from entropy_watch.cli import main

    def ew(*args: str) -> str:
        capsys.readouterr()
        try:
            main(["--store", str(tmp_path / "store"), *args])
        except SystemExit as e:
            assert e.code in (0, 1, 2, None), capsys.readouterr()
        return capsys.readouterr().out

    name = "ρ-sweep-日本語-ü"
    store_run(tmp_path / "store", name)
    out = tmp_path / "shared report.html"
    ew("report", name, "-o", str(out))
    verdict = json.loads(ew("show", name, "--json"))["verdict"]
    (listed,) = json.loads(ew("alerts", name, "--json"))
    assert listed["verdict"] == verdict and verdict["kind"] == "explosion" and listed["alerts"]
    with report_page(out, 2, WAIT_MS) as (page, requests):
        assert [u for u in requests if not u.startswith("file:")] == []  # plotly.js inlined: opens offline
        assert page.title() == f"entropy_watch report: {name}"
        body = page.inner_text("body")
    assert verdict["headline"] in body and verdict["forecast"]["text"] in body
    for a in listed["alerts"]:  # most severe first, as `alerts` lists them
        assert f"{a['step']}\t{a['severity']}\t{a['kind']}\t{a['detector']}\t{a['message']}" in body
    rows = [line.split("\t")[:4] for line in body.splitlines() if line.count("\t") >= 4]
    assert rows[1:] == [[str(a["step"]), a["severity"], a["kind"], a["detector"]] for a in listed["alerts"]]
    assert re.search(r"report written \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, of the data to step 399", body)
    assert "resume from checkpoint step 120" in body
