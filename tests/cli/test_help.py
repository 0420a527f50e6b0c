"""Every command has help, and domain errors are one line with exit code 1."""

from __future__ import annotations

import subprocess
import sys

import typer.testing

from entropy_watch.cli import app

runner = typer.testing.CliRunner()


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_every_command_has_help() -> None:
    names = _commands()
    assert {"ls", "show", "sql", "compact", "export"} <= set(names)
    for name in names:
        r = runner.invoke(app, [name, "--help"])
        assert r.exit_code == 0, (name, r.output)
        assert "Usage" in r.output
        help_text = r.output.split("Usage", 1)[1]
        assert len(help_text.strip().splitlines()) > 2, f"{name} has no help text"


def test_unknown_run_is_one_line_error_exit_1(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "entropy_watch", "--store", str(tmp_path), "show", "nope"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr


def test_debug_shows_traceback(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "entropy_watch", "--debug", "--store", str(tmp_path), "show", "nope"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_invalid_run_name_rejected(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "entropy_watch", "--store", str(tmp_path), "show", "../etc"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "run name" in r.stderr


def test_sql_is_read_only(tmp_path) -> None:
    target = tmp_path / "written.csv"
    refused = {f"COPY (SELECT 1) TO '{target}'": "COPY", "CREATE TABLE t AS SELECT 1": "CREATE",
               "SELECT 1; SELECT 2": "2 statements (SELECT, SELECT)", "install httpfs": "INSTALL"}  # fmt: skip
    for query, said in refused.items():  # the statement named as written (DuckDB calls INSTALL a LOAD)
        r = runner.invoke(app, ["--store", str(tmp_path), "sql", query])  # main() turns this into one line
        assert r.exit_code == 1 and str(r.exception).endswith(f"read-only SELECT query; got {said}"), r.exception
    assert not target.exists()
    r = runner.invoke(app, ["--store", str(tmp_path), "sql", "SELECT 41 + 1 AS answer", "--json"])
    assert r.exit_code == 0 and '"answer": 42' in r.output
