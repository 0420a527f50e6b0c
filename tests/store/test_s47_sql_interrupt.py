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
