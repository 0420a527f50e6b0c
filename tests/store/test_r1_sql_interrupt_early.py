"""A Ctrl-C that lands before the worker's query has begun still stops it (DuckDB drops an interrupt made while no
query runs: ``fetch_interruptible`` asked once, then waited for a query that never stopped)."""

from __future__ import annotations

import _thread
import threading
import time

import duckdb
import pytest

from entropy_watch.store.query import fetch_interruptible

NEVER_ENDS = "SELECT count(*) FROM range(1000000000000000) a, range(10) b"


class _LateStart:
    """A relation whose query begins only after the Ctrl-C has been taken (a worker scheduled late)."""

    def __init__(self, rel: duckdb.DuckDBPyRelation, started: threading.Event) -> None:
        self.rel, self.started = rel, started

    def to_arrow_table(self) -> object:
        time.sleep(0.5)  # the main thread takes its KeyboardInterrupt meanwhile
        self.started.set()
        return self.rel.to_arrow_table()


def test_an_interrupt_before_the_query_begins_still_stops_it() -> None:
    con = duckdb.connect()
    started = threading.Event()
    threading.Timer(0.15, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        fetch_interruptible(con, _LateStart(con.sql(NEVER_ENDS), started))  # type: ignore[arg-type]
    assert started.is_set()
    workers = [t for t in threading.enumerate() if t.name == "entropy-watch-sql"]
    assert not any(t.is_alive() for t in workers)  # the query stopped: the connection is free to close
    con.close()
