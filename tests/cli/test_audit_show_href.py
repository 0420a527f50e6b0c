"""`show`'s H_ref line names the steps H_ref was taken from: one step reads "step N", never "steps N–N"."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from entropy_watch.cli import app

REAL = Path(__file__).resolve().parents[3] / "shared" / "real_runs"
TINKER = REAL / "arvindcr4__tinker-rl-lab__tinker-arithmetic-llama32-1b.jsonl"


@pytest.mark.skipif(not TINKER.exists(), reason="../shared/real_runs is not beside this repository")
def test_href_from_one_point_names_one_step(tmp_path: Path) -> None:
    runner = CliRunner()
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["--store", store, "import", str(TINKER), "--run", "tinker"]).exit_code == 0
    out = runner.invoke(app, ["--store", store, "show", "tinker"], env={"COLUMNS": "300"}).stdout
    line = next(x for x in out.splitlines() if x.startswith("H_ref "))
    assert line.endswith("(step 0)"), line  # H_ref is that run's first logged point
    assert "steps 0–0" not in out
