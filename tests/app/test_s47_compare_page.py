"""The Compare page as a researcher reads it after training (AppTest): seeds of one config with long names that
differ only at their end, one healthy run beside them.

- no stray text: a module-level docstring under a constant of a page script was written onto the Compare page by
  Streamlit's magic ("Names of a link's unknown runs quoted at most ...", above the title);
- each run's health is on the page and is the health ``entropy-watch show RUN --json`` prints (the page gave levels
  only: a collapsing seed beside a healthy one read alike until each Run page was opened);
- the half-width panels' legends name each run in a short form that keeps its end, so runs that differ only at the
  end stay apart (Plotly cut ``…-rho0.30_seed43`` and ``…-rho0.50_seed43`` at the chart's edge into the same text).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from entropy_watch.app.display import NAME_CHARS

from .conftest import APP_HOME, figures, shown

PAGES = Path(APP_HOME).parent
PREFIX = "owner__nips-grpo-dynamics__qwen25-7b-exp1a-long-config-name"
SEEDS = {f"{PREFIX}-rho0.30_seed43": ("steady_collapse", 1), f"{PREFIX}-rho0.50_seed43": ("fast_collapse", 2)}
CALM = "calm-baseline"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from entropy_watch.synthetic import write_to_store

    root = tmp_path_factory.mktemp("s47cmp") / "store"
    for run, (kind, seed) in SEEDS.items():
        write_to_store(root, run, kind, seed=seed, n_steps=160)
    write_to_store(root, CALM, "healthy", seed=3, n_steps=160)
    return root


def compare(monkeypatch: pytest.MonkeyPatch, root: Path, runs: list[str], **query: str) -> AppTest:
    monkeypatch.setenv("ENTROPY_WATCH_DIR", str(root))
    from entropy_watch.app import data, first_paint

    monkeypatch.setattr(data, "ANALYSIS_WAIT_S", 30.0)  # wait for the verdicts: deterministic
    monkeypatch.setattr(data, "POLL_MIN_S", 0.0)
    monkeypatch.setattr(first_paint, "HOLD_S", 0.0)
    at = AppTest.from_file(str(APP_HOME), default_timeout=60)
    at.switch_page("views/compare.py")
    at.query_params.update({"run": runs, **query})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def show_json(root: Path, run: str, capsys: pytest.CaptureFixture) -> dict:
    from entropy_watch.cli import main

    capsys.readouterr()
    try:
        main(["--store", str(root), "show", run, "--json"])
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr()
    return json.loads(capsys.readouterr().out)


def test_page_scripts_write_no_stray_docstrings(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    """Streamlit's magic writes every bare string of a page script (past its first statement) onto the page."""
    at = compare(monkeypatch, store, [CALM])
    said = " ".join(m.value for m in at.markdown)
    assert "quoted at most" not in said and "Compare runs" == at.title[0].value, said[:300]
    for script in (PAGES / "home.py", *sorted((PAGES / "views").glob("*.py"))):
        body = ast.parse(script.read_text()).body
        bare = [
            n.lineno
            for n in body[1:]
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
        ]
        assert not bare, f"{script.name}: a bare string at line(s) {bare} is drawn on the page"


def test_each_run_s_health_is_on_the_page_as_show_prints_it(
    monkeypatch: pytest.MonkeyPatch, store: Path, capsys: pytest.CaptureFixture
) -> None:
    runs = [*SEEDS, CALM]
    at = compare(monkeypatch, store, runs)
    said = next(shown(c.value) for c in at.caption if c.value.startswith("Entropy level (the verdict's"))
    healths = {run: show_json(store, run, capsys)["verdict"]["health"] for run in runs}
    assert len(set(healths.values())) > 1, ("the case: runs of different health", healths)
    for run, health in healths.items():
        assert f"{run}: level " in said, (run, said[:500])
        mine = said.split(f"{run}: level ", 1)[1].split(" · ", 1)[0]
        assert mine.endswith(f"health {health}"), (run, mine, health)


def test_half_width_legends_keep_each_run_s_end(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    runs = [*SEEDS, CALM]
    assert all(len(r) > NAME_CHARS for r in SEEDS), "the case: names longer than a half panel's legend holds"
    figs = figures(compare(monkeypatch, store, runs))
    full = [t["name"] for t in figs["cmp_entropy"]["data"] if t.get("showlegend") is not False]
    assert full == runs, full  # the full-width entropy panel names them whole
    colour = {t["name"]: t["line"]["color"] for t in figs["cmp_entropy"]["data"] if t["name"] in runs}
    for key in ("cmp_reward", "cmp_clip_high", "cmp_clip_low"):
        shown = [t for t in figs[key]["data"] if t.get("showlegend") is not False and t.get("name")]
        names = [t["name"] for t in shown]
        assert all(len(n) <= NAME_CHARS for n in names), (key, names)
        assert len(set(names)) == len(runs), (key, names)
        for run, t in zip(runs, shown, strict=True):  # each keeps its end and its colour of the entropy panel
            assert run.endswith(t["name"].split("…")[-1]) and t["line"]["color"] == colour[run], (key, run, t["name"])
        assert names[2] == CALM


def test_a_link_opens_the_same_view_and_the_url_follows_it(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    """A colleague's link shows the runs as H / H_ref on a log axis (it showed them in nats, linear); a toggle is
    written back into the URL for the next link."""
    runs = [*SEEDS]
    at = compare(monkeypatch, store, runs)
    assert at.radio(key="cmp_scale").value == "nats" and not at.toggle(key="cmp_log").value
    assert "scale" not in at.query_params and "log" not in at.query_params
    at.radio(key="cmp_scale").set_value("H / H_ref")
    at.toggle(key="cmp_log").set_value(True)
    at.run()
    assert at.query_params["scale"] == "ref" and at.query_params["log"] == "1", dict(at.query_params)

    link = compare(monkeypatch, store, runs, scale="ref", log="1")  # a new session: the colleague's
    assert link.radio(key="cmp_scale").value == "H / H_ref" and link.toggle(key="cmp_log").value
    fig = figures(link)["cmp_entropy"]
    assert fig["layout"]["yaxis"]["type"] == "log" and fig["layout"]["yaxis"]["title"]["text"] == "H / H_ref"


def test_the_csv_holds_every_logged_point_of_the_steps_shown(store: Path, tmp_path: Path) -> None:
    """The Compare page's download (there was no way to take the compared series out but a PNG per chart): every
    logged point in each run's step window, full resolution, as ``Store.series`` reads it; a name a spreadsheet
    would run as a formula is written after a "'"."""
    import csv
    import io

    from entropy_watch import metrics as M
    from entropy_watch.app import data
    from entropy_watch.store import Store
    from entropy_watch.synthetic import write_to_store

    write_to_store(tmp_path, "+calc", "healthy", seed=5, n_steps=40)
    write_to_store(tmp_path, CALM, "healthy", seed=3, n_steps=40)
    names = (M.ENTROPY_MEAN, M.REWARD_MEAN, "eval/pass@1")  # pass@1: logged by neither, left out
    data.poll(str(tmp_path))  # as the page does before drawing (the download reads what the page has read)
    rows = list(csv.reader(io.StringIO(data.series_csv(str(tmp_path), {CALM: (0, 39), "+calc": (10, 19)}, names))))
    assert rows[0] == ["run", "metric", "step", "value"]
    got: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for run, metric, step, value in rows[1:]:
        got.setdefault((run, metric), []).append((int(step), float(value)))
    assert list(got) == [
        (CALM, M.ENTROPY_MEAN),
        (CALM, M.REWARD_MEAN),
        ("'+calc", M.ENTROPY_MEAN),
        ("'+calc", M.REWARD_MEAN),
    ]
    st = Store(tmp_path)
    for (run, metric), points in got.items():
        steps, values = st.series(run.lstrip("'"), metric)
        lo, hi = (0, 39) if run == CALM else (10, 19)
        inside = (steps >= lo) & (steps <= hi)
        assert points == list(zip(steps[inside].tolist(), values[inside].tolist(), strict=True)), (run, metric)
