"""The CLI as a scriptable tool: a reader that stops early (``| head``, ``| grep -q``) changes no exit status and ends
``watch``; a full disk under ``alerts --json`` is an error (3), never "warning" (1); an output encoding that cannot
hold a run name prints it escaped; SIGTERM stops a command as Ctrl-C does (temporaries removed, exit 143); tables
fold long values to the width instead of cutting them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from entropy_watch.synthetic import write_to_store

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and signals")


def _no_reader(*args: str, timeout: float = 120) -> tuple[int, str]:
    """Run the CLI with stdout a pipe nobody reads (its read end closed first: every write fails with EPIPE);
    returns the exit status and stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "entropy_watch", *map(str, args)], stdout=write_end, stderr=subprocess.PIPE
        )
    finally:
        os.close(write_end)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err.decode()


@POSIX
@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["alerts", "g", "--json"], 2),  # critical: click's own broken-pipe handler exited 1 ("warning")
        (["alerts", "h", "--json"], 0),  # healthy: exited 1, failing a `set -o pipefail` gate on a clean run
        (["ls", "--json"], 0),
        (["--version"], 0),
        (["--help"], 0),  # typer's help console: rich's own broken-pipe handler exited 1 (`--help | grep -q`)
        (["alerts", "--help"], 0),
    ],
    ids=["alerts-critical", "alerts-clean", "ls", "version", "help", "command-help"],
)
def test_a_reader_that_went_away_changes_no_exit_status(store: Path, argv: list[str], code: int) -> None:
    """``entropy-watch alerts --json | grep -q critical``: grep stops reading at its match; the gate still sees the
    verdict's status, and nothing on stderr."""
    got, err = _no_reader("--store", store, *argv)
    assert got == code and err == "", (got, err)


@POSIX
def test_watch_ends_once_nobody_reads_its_output(store: Path) -> None:
    """``entropy-watch watch | head -1`` (wait for the first alert): watch ends when ``head`` has gone, exit 0; it
    polled forever, a "callback on_new_alerts failed: BrokenPipeError" line at each new alert."""
    code, err = _no_reader("--store", store, "watch", "--interval", "0.05", "--min-severity", "info", timeout=90)
    assert code == 0 and "BrokenPipe" not in err and "failed" not in err, (code, err)


@POSIX
def test_watch_ends_when_its_reader_goes_while_nothing_new_comes(tmp_path: Path) -> None:
    """``entropy-watch watch | head -1 && page-oncall`` on a store whose alerts are all out at the first poll: the
    reader took its line and left, and watch, with nothing more to print, never found out: the pipeline never
    ended."""
    write_to_store(tmp_path, "g", kind="collapse_exp", seed=1, n_steps=300)
    read_end, write_end = os.pipe()
    cmd = [sys.executable, "-m", "entropy_watch", "--store", str(tmp_path), "watch", "--interval", "0.05"]
    proc = subprocess.Popen([*cmd, "--min-severity", "info"], stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            assert reader.readline().startswith(b"[g] step ")  # the first alert; the reader goes away
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and err == b"", (proc.returncode, err)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_alerts_json_on_a_full_disk_is_an_error_not_a_warning(store: Path) -> None:
    """``alerts --json > out.json`` on a full disk: exit 3 (an error) with one line; it exited 1, which ``alerts``
    documents as "warning", for a run that is critical."""
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [sys.executable, "-m", "entropy_watch", "--store", str(store), "alerts", "g", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert r.stderr.startswith("error: ") and "No space left" in r.stderr and len(r.stderr.splitlines()) == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_watch_on_a_full_disk_says_so_in_words(store: Path) -> None:
    """``watch --once > alerts.log`` on a full disk: one line per run saying its alerts were not printed, exit 1; it
    printed "callback on_new_alerts failed: OSError: ..." (the monitor's words for a bug)."""
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [sys.executable, "-m", "entropy_watch", "--store", str(store), "watch", "--once"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "[g] new alerts not printed: error: " in r.stderr and "callback" not in r.stderr, r.stderr


def test_a_run_name_the_output_encoding_cannot_hold_is_printed_escaped(ew_proc, tmp_path: Path) -> None:
    """``PYTHONIOENCODING=ascii`` (or a Latin-1 locale) and a run named ``café``: the tables print ``caf\\xe9``; they
    failed with "error: 'ascii' codec can't encode character" (``ls`` 1, ``alerts`` 3 on a clean run)."""
    write_to_store(tmp_path, "café", kind="healthy", seed=0, n_steps=120)
    env = {"PYTHONIOENCODING": "ascii"}
    listed = ew_proc("--store", tmp_path, "ls", env=env)
    assert listed.code == 0 and "caf\\xe9" in listed.out and listed.err == "", listed.err
    rows = [line for line in listed.out.splitlines() if line.startswith(("+", "|"))]
    assert len({len(line) for line in rows}) == 1, listed.out  # the table measured the escaped name: aligned
    shown = ew_proc("--store", tmp_path, "show", "café", env=env)
    assert shown.code == 0 and "caf\\xe9" in shown.out, shown.err
    alerted = ew_proc("--store", tmp_path, "alerts", "café", env=env)
    assert alerted.code in (0, 1) and "caf\\xe9" in alerted.out and "codec" not in alerted.err, alerted.err


# Runs the CLI's export with SIGTERM arriving while the temporary database is being written (a CI job's timeout,
# `docker stop`, `kill`): deterministic, the process signals itself from inside the export.
_EXPORT_THEN_TERM = textwrap.dedent(
    """
    import os, signal, sys
    import entropy_watch.store.catalog as catalog
    from entropy_watch.cli import main

    real = catalog._write_export

    def write_then_term(store, names, infos, path):
        real(store, names, infos, path)
        assert path.exists()
        os.kill(os.getpid(), signal.SIGTERM)

    catalog._write_export = write_then_term
    main(sys.argv[1:])
    """
)


@POSIX
def test_sigterm_stops_export_as_ctrl_c_does(store: Path, tmp_path: Path) -> None:
    """SIGTERM during ``export``: exit 143 with nothing on stderr, and the half-written temporary removed (the
    default action ended the process at once and left ``.out.duckdb.<pid>.0.tmp`` behind for good)."""
    dest = tmp_path / "out" / "out.duckdb"
    r = subprocess.run(
        [sys.executable, "-c", _EXPORT_THEN_TERM, "--store", str(store), "export", "--duckdb", str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 128 + signal.SIGTERM, (r.returncode, r.stderr)
    assert r.stderr == "", r.stderr
    assert sorted(p.name for p in dest.parent.iterdir()) == [], "the temporary export was left behind"


@POSIX
def test_sigterm_handling_ends_with_the_invocation(ew, store: Path) -> None:
    """The SIGTERM handler a command installs is removed when it returns (the CLI runs in-process in tests, apps),
    through main() and through click's test runner alike."""
    from typer.testing import CliRunner

    from entropy_watch.cli import app

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a fresh process, whatever ran before
    try:
        assert ew("--store", store, "ls").code == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert CliRunner().invoke(app, ["--store", str(store), "ls"]).exit_code == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def _first_column(out: str) -> list[str]:
    """The first column's cells of a rich table (rows of a cell folded over several lines joined)."""
    cells: list[str] = []
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        first, row_start = line.split("│")[1].strip(), line.split("│")[2].strip() != ""
        if row_start or not cells:
            cells.append(first)
        else:
            cells[-1] += first
    return cells


def test_ls_folds_a_long_run_name_instead_of_cutting_it(ew, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ls`` on an 80-column terminal showed ``qwen2.5-7b-…``: not a name to copy into ``show`` or ``alerts``."""
    name = "qwen2.5-7b-grpo-dapo-clip-higher-lr1e-6-seed0-final"
    write_to_store(tmp_path, name, kind="healthy", seed=0, n_steps=60)
    monkeypatch.setenv("COLUMNS", "80")
    r = ew("--store", tmp_path, "ls")
    assert r.code == 0 and "…" not in r.out, r.out
    assert _first_column(r.out) == [name], r.out


def test_sql_folds_long_values_instead_of_cutting_them(ew, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = "a-value-much-longer-than-the-terminal-is-wide-0123456789"
    monkeypatch.setenv("COLUMNS", "30")
    r = ew("--store", store, "sql", f"SELECT '{value}' AS v, 0.123456 AS x")
    assert r.code == 0 and "…" not in r.out, r.out
    assert _first_column(r.out) == [value], r.out


def test_alerts_json_entries_share_their_keys(ew, store: Path, tmp_path: Path) -> None:
    """A script reading ``alerts --json`` over a store with an SFT run (no entropy: the demo's ``sft-s0``) and a
    missing file: every entry has ``run`` and ``source``, every run ``verdict`` (null when nothing was analysed);
    ``entry["verdict"]`` and ``entry["run"]`` raised KeyError."""
    r = ew("--store", store, "alerts", "g", "sft-s0", str(tmp_path / "nope.csv"), "--json")
    assert r.code == 3, r.err
    analysed, nothing, error = json.loads(r.out)
    assert analysed["run"] == "g" and analysed["verdict"]["health"] == "critical"
    assert nothing["run"] == "sft-s0" and nothing["verdict"] is None and nothing["alerts"] == []
    assert error["run"] is None and "nope.csv" in error["error"] and "nope.csv" in error["source"]


def test_import_of_many_files_in_a_ci_log_leaves_stderr_empty(ew_proc, tmp_path: Path) -> None:
    """``entropy-watch import a.csv b.csv c.csv d.csv 2>err; [ -s err ]``: the progress bar (off a terminal) wrote a
    blank line on stderr, which a script reads as "something went wrong"."""
    logs = []
    for i in range(4):
        logs.append(tmp_path / f"run{i}.csv")
        logs[-1].write_text("step,entropy,reward\n" + "".join(f"{s},{1.0 - s / 100},{s / 100}\n" for s in range(20)))
    r = ew_proc("--store", tmp_path / "s", "import", *logs)
    assert r.code == 0 and r.err == "", repr(r.err)


@pytest.mark.skipif(sys.platform == "win32", reason="advisory file locks (fcntl)")
def test_two_alert_writers_store_each_alert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ``alerts --write`` on one run at once (overlapping cron jobs): each read the stored alerts before the other
    wrote, and every alert was stored twice. Here both read at the same moment unless one waits for the other."""
    from entropy_watch.analysis import RunSeries, analyze
    from entropy_watch.cli import alerts_cmds
    from entropy_watch.store import Store

    write_to_store(tmp_path, "g", kind="collapse_exp", seed=1, n_steps=300)
    new = analyze(RunSeries.from_reader(Store(tmp_path), "g")).alerts
    assert new
    both_read = threading.Barrier(2)
    real_table = Store.table

    def table(self: Store, run: str, name: str, *args: object, **kwargs: object) -> object:
        got = real_table(self, run, name, *args, **kwargs)
        if name == "alerts":
            try:  # without a lock both writers meet here, each having read no alerts
                both_read.wait(timeout=2.0)
            except threading.BrokenBarrierError:  # the other writer waits for this one's lock: go on alone
                pass
        return got

    monkeypatch.setattr(Store, "table", table)
    counts: list[int] = []
    writers = [
        threading.Thread(target=lambda: counts.append(alerts_cmds._write_alerts(tmp_path, "g", new))) for _ in range(2)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=60)
    monkeypatch.undo()
    assert sorted(counts) == [0, len(new)]
    assert Store(tmp_path).table("g", "alerts").num_rows == len(new)


@pytest.mark.parametrize("columns", ["0", "abc", "-1"])
def test_a_columns_value_that_is_no_width_prints_the_whole_table(
    ew, store: Path, monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    """``COLUMNS=0`` (``export COLUMNS=$(tput cols)`` where there is no terminal): ``ls`` printed nothing at all and
    exited 0; a value that is no width is ignored, as when COLUMNS is unset."""
    monkeypatch.setenv("COLUMNS", columns)
    r = ew("--store", store, "ls")
    assert r.code == 0 and _first_column(r.out) == ["g", "h", "sft-s0"], r.out
