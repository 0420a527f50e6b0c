"""A shared HTML report says how old its data is: when the run started and when it was last written (ISO 8601,
UTC), from the run's metadata, besides when the page itself was written. Before, a reader could not tell a report
of a run that stopped a week ago from one of a run still going."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.report import build_report
from entropy_watch.store import RunWriter, Store

from ..cli_run import run_cli

pytest.importorskip("plotly")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dates_line(doc: str) -> str:
    m = re.search(r"<p class='muted'>(report written [^<]*)</p>", doc)
    assert m is not None
    return m.group(1)


def _write_run(root: Path, name: str) -> None:
    w = RunWriter(root, name)
    steps = np.arange(120)
    w.write("scalars", {"step": steps, "name": ["entropy/mean"] * 120, "value": 1.2 * np.exp(-steps / 50.0) + 0.05})
    w.close()


def test_a_store_run_report_says_when_the_run_started_and_was_last_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    _write_run(root, "grpo-s0")
    info = Store(root).run_info("grpo-s0")
    out = tmp_path / "r.html"
    ran = run_cli(capsys, "--store", root, "report", "grpo-s0", "-o", out)
    assert ran.code == 0, ran.err
    line = _dates_line(out.read_text(encoding="utf-8"))
    assert f"run started {_iso(info.meta['created_at'])}" in line
    assert f"run last written {_iso(info.updated_at)}" in line


def test_an_imported_run_says_it_was_imported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.csv"
    log.write_text("step,entropy\n" + "".join(f"{s},{1.0 - s / 200}\n" for s in range(100)))
    root = tmp_path / "store"
    assert run_cli(capsys, "--store", root, "import", log).code == 0
    out = tmp_path / "r.html"
    assert run_cli(capsys, "--store", root, "report", "log", "-o", out).code == 0
    created = Store(root).run_meta("log")["created_at"]
    assert f"imported into the store {_iso(created)}" in _dates_line(out.read_text(encoding="utf-8"))


def test_a_log_file_report_says_when_the_log_was_last_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.csv"
    log.write_text("step,entropy\n" + "".join(f"{s},{1.0 - s / 200}\n" for s in range(100)))
    when = 1_767_225_600  # 2026-01-01T00:00:00Z
    os.utime(log, (when, when))
    out = tmp_path / "r.html"
    assert run_cli(capsys, "--store", tmp_path / "none", "report", log, "-o", out).code == 0
    line = _dates_line(out.read_text(encoding="utf-8"))
    assert "log last written 2026-01-01T00:00:00Z" in line and "started" not in line


@pytest.mark.parametrize("bad", ["<script>alert(1)</script>", 1e300, float("nan"), True, None])
def test_metadata_times_any_writer_chose_are_shown_only_when_they_are_times(tmp_path: Path, bad: object) -> None:
    steps = np.arange(100)
    meta = {"created_at": bad, "updated_at": 1_767_225_600.5}
    series = RunSeries.from_arrays("r", steps, 1.0 - steps / 200, meta=meta)
    doc = build_report(series, analyze(series), tmp_path / "r.html", source="<b>x</b>").read_text(encoding="utf-8")
    line = _dates_line(doc)
    assert "run last written 2026-01-01T00:00:00Z" in line and "started" not in line
    assert "alert(1)" not in doc and "<b>x</b>" not in doc
