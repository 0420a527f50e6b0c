"""Usage mistakes are usage errors (typer's usage message, exit 2); global options work on either side of the
command name; domain errors stay one line with exit 1, bugs say "internal error"."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.testing

from entropy_watch.cli import app

runner = typer.testing.CliRunner()

USAGE_MISTAKES = [
    ["show"],  # missing argument (`alerts` alone reads every run in the store)
    ["shwo", "g"],  # misspelled command
    ["alerts", "g", "--since", "abc"],  # bad value
    ["ls", "--bogus"],  # unknown option
    ["sql"],  # missing query
    ["alerts", "g", "--min-severity", "loud"],
    ["alerts", "g", "--fail-on", "collapse,bogus"],
    ["alerts", "g", "--map", "entropy"],  # not canonical=COLUMN
    ["import", "x.csv", "--map", "=col"],
    ["import", "x.csv", "--format", "bogus"],  # bad values are usage errors, before any file is read
    ["import", "x.csv", "--map", "bogus=entropy"],
    ["import", "x.csv", "y.csv", "--run", "both"],  # one name for two runs: was exit 1
    ["import", "x.csv", "--map", "entropy=a", "--map", "entropy/mean=b"],  # the last one silently won
    ["import", "x.csv", "--run=-x"],  # `show -x` would read it as an option
    ["watch", "--once", "--interval", "-1"],
    ["watch", "--once", "--interval", "0"],
    ["watch", "--iterations", "0"],
    ["watch", "--iterations", "-1"],
    ["alerts", "g", "--map", "entropy=x"],  # --map on a store run (its columns are named)
    ["sql", "SELECT 1", "--limit", "0"],
    ["sql", "SELECT 1", "--limit", "-2"],
    ["train", "--steps", "-3"],  # the trainer's options, checked before anything trains
    ["train", "--device", "tpu"],  # torch's own message was an "internal error"
    ["train", "--run", "../x"],
    ["train", "--run", ""],  # fell back to the default name
    ["train", "--seed", "-1"],
    ["compare", "--algos", ""],  # ran only the precision study
    ["compare", "--jobs", "0"],
    ["compare", "--probe-steps", "-1"],
]


@pytest.mark.parametrize("argv", USAGE_MISTAKES, ids=lambda a: " ".join(a))
def test_usage_mistake_is_a_usage_error(ew, store: Path, argv: list[str]) -> None:
    r = ew("--store", store, *argv)
    assert r.code == 2, (r.code, r.err)
    assert "Usage:" in r.err and "internal error" not in r.err + r.out, r.err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["import", "x.csv", "--format", "bogus"], "unknown format 'bogus'"),
        (["import", "x.csv", "--map", "bogus=entropy"], "unknown mapping key 'bogus'"),
        (["watch", "--once", "--interval", "0"], "0 is not a positive number"),
        (["alerts", "g", "--map", "entropy=x"], "--map applies to log files"),
        (["import", "x.csv", "y.csv", "--run", "both"], "names one run but 2 paths were given"),
        (["import", "x.csv", "--map", "entropy=a", "--map", "entropy/mean=b"], "map one metric"),
        (["import", "x.csv", "--run=-x"], "may not start with '-'"),
    ],
    ids=lambda a: a if isinstance(a, str) else " ".join(a),
)
def test_bad_option_values_say_what_is_wrong(ew, store: Path, argv: list[str], said: str) -> None:
    r = ew("--store", store, *argv)
    assert r.code == 2 and said in r.err, r.err


def test_usage_error_from_the_console_script(ew_proc, tmp_path: Path) -> None:
    r = ew_proc("--store", tmp_path, "shwo")
    assert r.code == 2 and "Usage:" in r.err and "No such command" in r.err and "internal error" not in r.err


def test_usage_errors_through_clirunner(store: Path) -> None:
    for argv in (["show"], ["ls", "--store"], ["alerts", "g", "--since", "abc"]):
        r = runner.invoke(app, argv)
        assert r.exit_code == 2, (argv, r.output)


@pytest.mark.parametrize(
    "argv",
    [["ls", "--json"], ["show", "g", "--json"], ["sql", "SELECT count(*) AS n FROM scalars", "--json"]],
    ids=lambda a: a[0],
)
def test_store_option_before_or_after_the_command(ew, store: Path, argv: list[str]) -> None:
    before = ew("--store", store, *argv)
    assert before.code == 0, before.err
    for after in (ew(*argv, "--store", store), ew(*argv, f"--store={store}"), ew(argv[0], "-s", store, *argv[1:])):
        assert after.code == 0, after.err
        assert after.out == before.out


def test_store_after_the_command_for_alerts_and_clirunner(ew, store: Path) -> None:
    r = ew("alerts", "h", "--store", store, "--json")
    assert r.code == ew("--store", store, "alerts", "h", "--json").code and '"run": "h"' in r.out
    r = runner.invoke(app, ["ls", "--store", str(store), "--json"])
    assert r.exit_code == 0 and '"run": "g"' in r.output


def test_debug_after_the_command_shows_the_traceback(ew_proc, tmp_path: Path) -> None:
    r = ew_proc("show", "nope", "--store", tmp_path, "--debug")
    assert r.code != 0 and "Traceback" in r.err and "RunNotFound" in r.err  # the command ran with --debug


def test_domain_error_is_one_line_exit_1(ew, tmp_path: Path) -> None:
    r = ew("--store", tmp_path, "show", "nope")
    assert r.code == 1 and r.err.startswith("error: ") and r.err.count("\n") == 1, r.err


def test_a_bug_is_reported_as_internal_error(ew, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from entropy_watch.store import Store

    def boom(self, *a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(Store, "runs", boom)
    r = ew("--store", store, "ls")
    assert r.code == 1 and r.err.startswith("internal error (TypeError); rerun with --debug") and "a bug" in r.err
