"""The command line as scripts and narrow terminals meet it: ``report`` on a run that logged no entropy agrees with
``alerts`` ("nothing to analyse", exit 0, nothing written), and ``show`` on a narrow terminal folds its values
instead of cutting them to "0.…"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entropy_watch.cli.common import fmt_value


def test_report_on_a_run_without_entropy_is_nothing_to_analyse_as_alerts_says(ew, store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    alerts = ew("--store", store, "alerts", "sft-s0")
    report = ew("--store", store, "report", "sft-s0", "-o", out)
    folder = ew("--store", store, "report", store / "run=sft-s0", "-o", out)
    assert alerts.code == 0 and "nothing to analyse" in alerts.out
    for r in (report, folder):
        assert r.code == alerts.code, r  # exited 1 ("error: ... has no entropy series yet") while alerts exited 0
        assert "nothing to analyse" in r.out and "no report written" in r.out and r.err == ""
        assert r.out.count("\n") == 1
    assert not out.exists()
    # an unknown run is still an error, and a run with entropy still gets its report
    assert ew("--store", store, "report", "no-such-run", "-o", out).code == 1
    ok = ew("--store", store, "report", "g", "-o", out)
    assert ok.code == 0 and out.is_file() and ok.out.startswith("wrote ")


def _column(table: str, index: int) -> str:
    """The cells of a rich table's column ``index`` (0-based), its folded pieces joined in order."""
    cells = [line.split("│")[index + 1].strip() for line in table.splitlines() if line.startswith("│")]
    return "".join(cells)


@pytest.mark.parametrize("columns", ["20", "34"])
def test_show_on_a_narrow_terminal_folds_values_never_cuts_them(
    ew, store: Path, monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    latest = json.loads(ew("--store", store, "show", "g", "--json").out)["metrics"]
    monkeypatch.setenv("COLUMNS", columns)
    r = ew("--store", store, "show", "g")
    assert r.code == 0 and "…" not in r.out  # the values were cut to "0.…", the names to "en…"
    values = _column(r.out, 1)
    for value, _step in latest.values():
        assert fmt_value(value) in values
    assert "entropy/mean" in _column(r.out, 0)


def test_alerts_over_a_glob_of_run_folders_skips_the_catalog_placeholder(ew, tmp_path: Path) -> None:
    """`compact` leaves ``run=.catalog`` beside the runs; ``alerts ew_runs/run=*`` named it and exited 3 ("run name
    '.catalog' may not start with '.'") on a store whose runs were all clean."""
    from entropy_watch.synthetic import write_to_store

    write_to_store(tmp_path, "h", kind="healthy", seed=1, n_steps=150)
    assert ew("--store", tmp_path, "compact").code == 0
    folders = sorted(str(p) for p in tmp_path.glob("run=*"))  # what the shell's `run=*` expands to
    assert f"{tmp_path}/run=.catalog" in folders and len(folders) == 2
    r = ew("--store", tmp_path, "alerts", *folders, "--json")
    assert (r.code, r.err) == (ew("--store", tmp_path, "alerts", "h").code, "")
    assert [e["run"] for e in json.loads(r.out)] == ["h"]
    alone = ew("--store", tmp_path, "report", f"{tmp_path}/run=.catalog", "-o", tmp_path / "r.html")
    assert alone.code == 1 and alone.err.startswith("error: ") and "holds no run" in alone.err


def test_alerts_json_names_a_run_with_nothing_to_analyse_as_any_run(ew, store: Path) -> None:
    """Every entry's ``run`` is the run's name and ``source`` its folder, whether it had entropy or not: the run
    without entropy was listed as ``{"run": "<STORE>/run=sft-s0", "source": "<STORE>/run=sft-s0"}`` when named by
    its folder, and with ``source`` "sft-s0" when named by name."""
    r = ew("--store", store, "alerts", "h", "sft-s0", store / "run=h", store / "run=sft-s0", "--json")
    assert r.code == 0
    got = [(e["run"], e["source"]) for e in json.loads(r.out)]
    assert got == [(run, f"{store}/run={run}") for run in ("h", "sft-s0", "h", "sft-s0")]


def test_one_line_errors_keep_a_path_with_a_line_break_whole(ew, store: Path, tmp_path: Path) -> None:
    """A file or store named with a line break: the error line was cut inside the path (``error: <dir>/bad\\nx.csv:
    <dir>/bad``), the reason lost. Now the path is escaped whole and the reason follows it, one line."""
    bad, missing = tmp_path / "bad\nx.csv", tmp_path / "missing\ny.csv"
    bad.write_text("step,entropy\n")
    nowhere = tmp_path / "no\nstore"
    shown = {p: str(p).replace("\n", "\\n") for p in (bad, missing, nowhere)}
    r = ew("--store", store, "alerts", bad, missing, "h")
    assert r.code == 3 and r.out.startswith("h: ")
    lines = r.err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"error: {shown[bad]}") and "no data rows" in lines[0]
    assert lines[1] == f"error: {shown[missing]}: no such file or directory"
    imp = ew("--store", tmp_path / "s", "import", bad)
    assert imp.code == 1 and imp.err.count("\n") == 1 and "no data rows" in imp.err
    assert imp.err.startswith(f"error: {shown[bad]} not imported: {shown[bad]}")
    rep = ew("--store", store, "report", missing, "-o", tmp_path / "r.html")
    assert (rep.code, rep.err) == (1, f"error: {shown[missing]}: no such file or directory\n")
    ls = ew("--store", nowhere, "ls")
    assert ls.code == 1 and ls.err.startswith(f"error: no store at {shown[nowhere]}; pass")
