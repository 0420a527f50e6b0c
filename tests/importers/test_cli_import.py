"""`entropy-watch import` through typer's CliRunner and, once, as a real subprocess (one-line error, exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from entropy_watch.cli import app
from entropy_watch.store.layout import run_json_path

from ..real_runs import REAL

runner = CliRunner()


def _csv(tmp_path: Path, name: str = "m.csv", text: str = "iter,ent,acc\n1,0.9,0.1\n2,0.8,0.2\n") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_import_with_maps_and_json(tmp_path) -> None:
    p = _csv(tmp_path)
    store = tmp_path / "s"
    r = runner.invoke(
        app,
        [
            "--store",
            str(store),
            "import",
            str(p),
            "--run",
            "mine",
            "--map",
            "step=iter",
            "-m",
            "entropy=ent",
            "--map",
            "reward=acc",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    (row,) = out["runs"]
    assert row["run"] == "mine" and row["first_step"] == 1 and row["last_step"] == 2
    assert row["mapping"] == {"step": "iter", "entropy/mean": "ent", "reward/mean": "acc"}
    assert run_json_path(store, "mine").is_file()


def test_import_prints_runs_and_step_ranges(tmp_path) -> None:
    files = [str(REAL / n) for n in sorted(os.listdir(REAL)) if n.endswith((".csv", ".jsonl"))]
    r = runner.invoke(app, ["--store", str(tmp_path / "s"), "import", *files])
    assert r.exit_code == 0, r.output
    assert "imported into" in r.output and "1-500" in r.output and "0-3434" in r.output
    assert len([d for d in os.listdir(tmp_path / "s") if d.startswith("run=")]) == len(files)


def test_errors(tmp_path) -> None:
    p = _csv(tmp_path, text="step,entropy\n1,0.5\n")
    store = str(tmp_path / "s")
    assert runner.invoke(app, ["--store", store, "import", str(p)]).exit_code == 0
    again = runner.invoke(app, ["--store", store, "import", str(p)])
    assert again.exit_code == 1 and "not imported: run 'm' already exists" in again.output
    assert runner.invoke(app, ["--store", store, "import", str(p), "--replace"]).exit_code == 0
    bad_map = runner.invoke(app, ["--store", store, "import", str(p), "--map", "entropy"])
    assert bad_map.exit_code == 2 and "canonical=COLUMN" in bad_map.output
    two = runner.invoke(app, ["--store", store, "import", str(p), str(p), "--run", "x"])
    assert two.exit_code == 2 and "one at a time" in two.output  # a usage mistake


def test_subprocess_one_line_error(tmp_path) -> None:
    p = _csv(tmp_path, "bad.csv", "step,entropy\n1,0.5\n2,oops\n")
    r = subprocess.run(
        [sys.executable, "-m", "entropy_watch", "--store", str(tmp_path / "s"), "import", str(p)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "line 3" in r.stderr
    assert not (tmp_path / "s").exists() or not os.listdir(tmp_path / "s")
