"""`show`'s H_ref line names the steps H_ref was taken from: one step reads "step N", never "steps N–N"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from entropy_watch.cli import app


def test_href_from_one_point_names_one_step(tmp_path: Path) -> None:
    """A run whose entropy was already falling fast (the Tinker arithmetic run's shape: 0.77 nats at step 0, ~0.003
    by step 10) takes H_ref from its first logged point; `show` said "(steps 0–0)"."""
    steps = np.arange(41)
    log = tmp_path / "fastdrop.csv"
    log.write_text("step,entropy\n" + "".join(f"{s},{0.77 * np.exp(-0.6 * s) + 0.003:.6f}\n" for s in steps))
    runner = CliRunner()
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["--store", store, "import", str(log), "--run", "fastdrop"]).exit_code == 0
    out = runner.invoke(app, ["--store", store, "show", "fastdrop"], env={"COLUMNS": "300"}).stdout
    line = next(x for x in out.splitlines() if x.startswith("H_ref "))
    assert "the first logged point" in line and line.endswith("(step 0)"), line
    assert "steps 0–0" not in out
