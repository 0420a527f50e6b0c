"""`watch` on targets that give nothing to follow: `--once` fails on a folder with no logs, an unreadable log or a run
the store does not hold (naming the runs it does); without `--once` a named run is waited for, saying so."""

from __future__ import annotations

from pathlib import Path


def test_once_on_a_folder_without_logs_is_an_error(ew, store: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = ew("--store", store, "watch", "--once", tmp_path / "empty")
    assert r.code == 1 and "no log files in this folder" in r.err, r.err


def test_once_on_an_unreadable_log_exits_1(ew, store: Path, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.csv"
    bad.write_text("step,entropy\n")
    r = ew("--store", store, "watch", "--once", bad)
    assert r.code == 1 and "no data rows" in r.err, r.err


def test_once_on_an_unknown_run_names_the_runs_there_are(ew, store: Path) -> None:
    r = ew("--store", store, "watch", "--once", "typo_run")
    assert r.code == 1, r.err
    assert r.err == f"error: run 'typo_run' not found in store {store} (runs: g, h, sft-s0)\n", r.err
    r = ew("--store", store, "watch", "--once", "typo_run", "h")  # the run it holds is still watched
    assert r.code == 1 and r.err.count("\n") == 1 and "'typo_run' not found" in r.err, r.err
    assert ew("--store", store, "watch", "--once", "h").code == 0


def test_without_once_a_run_not_there_yet_is_waited_for(ew, store: Path) -> None:
    r = ew("--store", store, "watch", "typo_run", "--iterations", "2", "--interval", "0.01")
    assert r.code == 0, r.err
    assert r.err == "[typo_run] waiting: run 'typo_run' is not in the store yet (runs: g, h, sft-s0)\n", r.err


def test_once_on_an_empty_store_says_so(ew, tmp_path: Path) -> None:
    r = ew("--store", tmp_path / "none", "watch", "--once")
    assert r.code == 0 and r.out.startswith(f"no runs in {tmp_path / 'none'}"), r.out


def test_watch_on_a_log_prints_its_import_notes_once(ew, store: Path, tmp_path: Path) -> None:
    """What reading the log said (a skipped bad cell) is printed as `alerts LOG` and `import` print it."""
    log = tmp_path / "m.csv"
    rows = [f"{i},{1 - i / 100:.3f},0.5" for i in range(1, 40)]
    rows[20] = "21,abc,0.5"
    log.write_text("step,entropy,reward\n" + "\n".join(rows) + "\n")
    r = ew("--store", store, "watch", "--once", log)
    assert r.code == 0 and r.err.count("note: column 'entropy': skipped 1 non-numeric cell(s)") == 1, r.err
