"""A store path that is a file is a usage error for every command (a CI gate must not pass on a mistyped store); a
command that works on a store's contents says when there is no store; reading commands list no runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def _flat(err: str) -> str:
    """A usage error's text without the box typer draws around it, its line breaks and any space: the box folds a path
    longer than its width mid-word (a long temporary folder), so only the characters are compared."""
    return re.sub(r"[\s│╭╮╰╯─]+", "", err)


COMMANDS = [
    ["ls"],
    ["alerts"],
    ["import", "x.csv"],
    ["compact"],
    ["export", "--duckdb", "e.duckdb"],
    ["sql", "SELECT 1"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_a_file_as_the_store_is_a_usage_error(ew, tmp_path: Path, argv: list[str]) -> None:
    f = tmp_path / "f.txt"
    f.write_text("hello\n")
    r = ew("--store", f, *argv)
    assert (
        r.code == 2
        and "Usage:" in r.err
        and _flat(f"{f} is a file, not a store folder; pass --store DIR") in _flat(r.err)
    ), r.err
    assert f.read_text() == "hello\n" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_the_store_from_the_environment_is_checked_too(ew, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f.txt"
    f.write_text("")
    monkeypatch.setenv("ENTROPY_WATCH_DIR", str(f))
    r = ew("ls")
    assert r.code == 2 and _flat(f"{f} is a file, not a store folder; pass --store DIR") in _flat(r.err), r.err


@pytest.mark.parametrize("argv", [["compact"], ["export", "--duckdb", "e.duckdb"]], ids=lambda a: a[0])
def test_commands_on_a_stores_contents_need_a_store(ew, tmp_path: Path, argv: list[str]) -> None:
    missing = tmp_path / "nostore"
    r = ew("--store", missing, *argv)
    assert r.code == 1 and r.err.startswith(f"error: no store at {missing}; pass --store DIR"), r.err
    assert r.err.count("\n") == 1 and not missing.exists()


def test_reading_a_missing_store_is_an_error_an_empty_one_lists_no_runs(ew, tmp_path: Path) -> None:
    """A mistyped ``--store`` read as a clean, empty store: ``alerts`` in a cron job exited 0 on "no runs in
    /tmp/nonexist". It is an error (``alerts``: 3, the others 1); a store folder with no runs yet still says so."""
    missing = tmp_path / "nostore"
    for argv, code in ((["ls"], 1), (["alerts"], 3), (["show", "r"], 1), (["sql", "SELECT 1"], 1)):
        r = ew("--store", missing, *argv)
        assert r.code == code and r.err.startswith(f"error: no store at {missing}; pass --store DIR"), (argv, r.err)
        assert r.err.count("\n") == 1 and not missing.exists()
    missing.mkdir()
    for argv in (["ls"], ["alerts"]):
        r = ew("--store", missing, *argv)
        assert r.code == 0 and r.out.startswith("no runs in"), (argv, r.out, r.err)
