"""Ctrl-C stops a user's never-ending ``Store.sql`` query (DuckDB's ``to_arrow_table`` ran on with the signal
waiting: ``entropy-watch sql`` ignored Ctrl-C and a CI timeout's SIGTERM for good)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from entropy_watch.synthetic import write_to_store

SCRIPT = textwrap.dedent(
    """
    import sys
    from entropy_watch.store import Store
    store = Store(sys.argv[1])
    print("querying", flush=True)
    try:
        store.sql("SELECT count(*) FROM range(1000000000000000) a, scalars")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    print("finished", flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_a_query_that_would_never_end(tmp_path: Path) -> None:
    write_to_store(tmp_path, "r", kind="healthy", seed=0, n_steps=20)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "querying", proc.stderr.read()
        time.sleep(1.5)  # into DuckDB's fetch
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # the query alone would run for days
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and out.strip() == "interrupted", (proc.returncode, out, err)


def test_a_query_that_ends_answers_as_before(tmp_path: Path) -> None:
    from entropy_watch.store import Store

    write_to_store(tmp_path, "r", kind="healthy", seed=0, n_steps=20)
    table = Store(tmp_path).sql("SELECT count(*) AS n FROM scalars WHERE name = 'entropy/mean'")
    assert table.column("n").to_pylist() == [20]
    with pytest.raises(Exception, match="nope"):
        Store(tmp_path).sql("SELECT nope FROM scalars")


def test_a_ctrl_c_duckdb_wrapped_as_another_error_is_an_interrupt_never_a_bad_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DuckDB wraps a Ctrl-C that lands in Python code it called (an Arrow relation's schema) as another error: it
    stops the reader at once, no file is checked for damage and no read is tried again."""
    import duckdb

    from entropy_watch.store import quarantine
    from entropy_watch.store.query import interrupted, with_retry

    wrapped = duckdb.InvalidInputException("Python exception 'registered as _empty_scalars' failed: KeyboardInterrupt:")
    assert interrupted(wrapped) and interrupted(duckdb.InterruptException("INTERRUPT Error: Interrupted!"))
    assert not interrupted(duckdb.InvalidInputException("No magic bytes found at end of file"))

    def checked() -> bool:
        raise AssertionError("an interrupt had the store's files checked")

    monkeypatch.setattr(quarantine, "check_listed", checked)
    calls = []

    def read() -> None:
        calls.append(1)
        raise wrapped

    with pytest.raises(duckdb.InvalidInputException):
        with_retry(read)
    assert calls == [1]
