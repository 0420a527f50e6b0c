"""What ``watch``, ``alerts`` and ``report`` say about a target that names nothing they can read: a log path that
is not there is "no such file or directory" for all three (``watch`` took it for a run name: it waited for a run
called ``nosuch.csv``, or refused ``logs/nosuch.csv`` as a bad run name), and an empty target (``"$RUN"`` with RUN
unset) says it names nothing instead of reading the current folder as a log folder. ``watch --once --iterations N``
is a usage error (``--iterations`` was silently ignored)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.mark.parametrize("target", ["logs/nosuch.csv", "nosuch.csv", "nosuch.jsonl.gz"])
@pytest.mark.parametrize("once", [["--once"], ["--iterations", "1", "--interval", "0.01"]])
def test_watch_a_missing_log_is_no_such_file(ew, store: Path, target: str, once: list[str]) -> None:
    r = ew("--store", store, "watch", target, *once)
    assert r.code == 1, (r.code, r.out, r.err)
    assert _one_error_line(r.err) == f"error: {target}: no such file or directory"


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["watch", "--once", ""], 1), (["alerts", ""], 3), (["report", "", "-o", "r.html"], 1)],
    ids=["watch", "alerts", "report"],
)
def test_an_empty_target_names_nothing(ew, store: Path, tmp_path: Path, argv: list[str], code: int) -> None:
    (tmp_path / "r.html").unlink(missing_ok=True)
    r = ew("--store", store, *[str(tmp_path / a) if a == "r.html" else a for a in argv])
    assert r.code == code, (r.code, r.out, r.err)
    line = _one_error_line(r.err)
    assert line.startswith("error: '' names nothing; name a run"), line
    assert not (tmp_path / "r.html").exists()


def test_watch_once_and_iterations_conflict(ew, store: Path) -> None:
    r = ew("--store", store, "watch", "--once", "--iterations", "3", "g")
    assert r.code == 2, (r.code, r.out, r.err)
    flat = " ".join(r.err.replace("│", " ").split())
    assert "Usage:" in r.err and "give --once or --iterations N, not both" in flat, r.err


@pytest.mark.parametrize(
    "argv",
    [
        ["compact", "--min-age", "-1"],
        ["sql", "--limit", "99999999999999999999", "SELECT 1"],
    ],  # fmt: skip
)
def test_store_command_mistakes_are_usage_errors(ew, store: Path, argv: list[str]) -> None:
    """A negative age, a limit past int64 (DuckDB's "Conversion Error", exit 1): the CLI framework's usage error,
    exit 2. (A run name no store can hold is one line, exit 1, as `alerts` says it: tests/cli/test_names.py.)"""
    r = ew("--store", store, *argv)
    assert r.code == 2 and "Traceback" not in r.err, r
