"""One verdict on every surface: `show`, `show --json`, `alerts`, `alerts --json` and the HTML report of a stored run
say the same health, headline, H_ref, floor and ln V (the report read "ln V 11.9 nats" beside `show`'s "ln V 11.93"
for the same run)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from entropy_watch.synthetic import write_to_store

from ..cli_run import Ran


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s47")
    write_to_store(root, "col", kind="fast_collapse", seed=2, n_steps=80)  # a vocabulary stated: ln V known
    write_to_store(root, "ok", kind="healthy", seed=2, n_steps=40)
    return root


def _report(ew: Callable[..., Ran], root: Path, run: str, out: Path) -> str:
    r = ew("--store", root, "report", run, "-o", out)
    assert r.code == 0, r.err
    return out.read_text(encoding="utf-8")


@pytest.mark.parametrize("run", ["col", "ok"])
def test_every_surface_says_the_same_verdict(ew: Callable[..., Ran], runs: Path, tmp_path: Path, run: str) -> None:
    v = json.loads(ew("--store", runs, "show", run, "--json").out)["verdict"]
    listed = json.loads(ew("--store", runs, "alerts", run, "--json").out)[0]
    assert {**listed["verdict"], "run": None} == {**v, "run": None}
    assert [(a["step"], a["detector"]) for a in listed["alerts"]] == [(a["step"], a["detector"]) for a in v["alerts"]]

    show = ew("--store", runs, "show", run).out
    assert f"verdict: {v['headline']}\n" in show
    assert ew("--store", runs, "alerts", run).out.splitlines()[0] == f"{run}: {v['headline']}"

    page = _report(ew, runs, run, tmp_path / f"{run}.html")
    headline = re.search(r"<p class='headline'[^>]*>(.*?)</p>", page)
    assert headline is not None and html.unescape(headline.group(1)) == v["headline"]
    assert f"health: {v['health']}</p>" in page
    floor = re.search(r"^floor (\S+) nats(?:; ln V (\S+))?$", show, re.M)
    assert floor is not None
    assert f"floor {floor.group(1)} nats" in page  # the same figure, the same rounding
    if v["ln_v"] is not None:
        assert floor.group(2) is not None and f"ln V {floor.group(2)} nats" in page
    href = re.search(r"^H_ref (\S+) nats: (.*) \(steps? (.*)\)$", show, re.M)
    assert href is not None
    assert f"H_ref {href.group(1)} nats: {html.escape(href.group(2))} (steps {href.group(3)})" in page
