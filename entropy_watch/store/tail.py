"""TailReader: an in-memory DuckDB copy of the small tables that ingests only files it has not seen (the app's cache).

Each :meth:`TailReader.poll` lists the table folders, keeps the files not seen before, and runs
``INSERT INTO <table> BY NAME SELECT … FROM read_parquet([new files], hive_partitioning=true, union_by_name=true)``.
Cost is proportional to what is new, not to the store (measured in ``benchmarks/bench_store.py``).

De-duplication across compaction: the reader remembers every key ``(_writer, _seq)`` it has ingested. A new
``part-`` file covering only ingested keys is skipped without being read; one covering some new keys is read
restricted to those keys; a new segment whose key arrived through a part is skipped. So a row is counted once
whatever the interleaving of listing, publication of parts and deletion of segments.

Schema growth: a new file with a column the table lacks gets ``ALTER TABLE … ADD COLUMN`` first (older rows read
NULL). Thread-safe: one lock; every poll and query runs on a fresh cursor under it.

It implements the store's read interface (:class:`~entropy_watch.store.reads.RunReader`): the queries of
:class:`~entropy_watch.store.reads.SqlReads` run on the mirrored tables; a table it does not mirror (``tokens``) is read
from its files on demand, and the run listing and ``run.json`` come from a :class:`~entropy_watch.store.Store`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

import duckdb
import pyarrow as pa

from entropy_watch.errors import RunNotFound
from entropy_watch.store import layout
from entropy_watch.store.files import CoverageCache, Key, Selection, select_files
from entropy_watch.store.fs import is_object
from entropy_watch.store.listing import FolderWatch
from entropy_watch.store.query import Binder, read_locked, run_names, source_sql, with_retry
from entropy_watch.store.reader import RunInfo, Store
from entropy_watch.store.reads import SqlReads, query_files
from entropy_watch.store.schema import empty_table

DEFAULT_TABLES: tuple[str, ...] = ("scalars", "hist", "alerts", "events")


class TailReader(SqlReads):
    """Incremental in-memory mirror of ``tables`` for all runs (or ``runs``) under ``root``.

    Tables are named after the store tables and have their columns plus ``run``, ``rank``, ``_writer``, ``_seq``.
    They exist (empty) before the first poll, so queries never fail on a new store.

    Args:
        root: store root; None resolves ``$ENTROPY_WATCH_DIR`` or ``./ew_runs`` now.
        tables: which tables to mirror; ``tokens`` is large and is better read on demand with :class:`Store`.
        runs: restrict to these run names (None: every run, including runs that appear later).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        tables: Iterable[str] = DEFAULT_TABLES,
        runs: Iterable[str] | None = None,
    ) -> None:
        self.root = layout.default_root(root)
        self.tables = tuple(layout.validate_table(t) for t in tables)
        self.only = None if runs is None else tuple(layout.validate_run_name(r) for r in runs)
        self.generation = 0
        self._store = Store(self.root)
        self._con = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._coverage = CoverageCache()
        self._watch = FolderWatch()
        self._ingested: dict[str, set[Key]] = {t: set() for t in self.tables}
        cur = self._con.cursor()
        for table in self.tables:
            cur.register("_empty", empty_table(table))
            cur.execute(f"CREATE TABLE {table} AS SELECT * FROM _empty")
            cur.unregister("_empty")
        cur.close()

    @property
    def files_seen(self) -> int:
        """Files currently listed in the store that this reader has already handled."""
        with self._lock:
            return self._watch.files

    def poll(self) -> int:
        """Ingest files published since the last poll; returns the number of new rows (bumps ``generation`` if > 0)."""
        with self._lock:
            added = with_retry(self._poll_once)
            if added:
                self.generation += 1
            return added

    def query(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pa.Table:
        """Run a (parameterised) query over the mirrored tables. Queries run concurrently, each on its own cursor
        (DuckDB isolates them from an ingest in progress); the lock only guards making the cursor, so a long query
        never holds up a page's other queries or the next poll."""
        with self._lock:
            cur = self._con.cursor()
        try:
            return cur.sql(sql, params=params or None).to_arrow_table()
        finally:
            cur.close()

    def _cache_token(self) -> int:
        return self.generation

    # -- the read interface ---------------------------------------------------------------------------------------
    def runs(self) -> list[RunInfo]:
        """Runs under the root (only those followed, when ``runs`` was given), sorted by name."""
        return [r for r in self._store.runs() if self.only is None or r.name in self.only]

    def run_info(self, run: str) -> RunInfo:
        """One run's :class:`RunInfo`; raises :class:`RunNotFound`."""
        self._check(run)
        return self._store.run_info(run)

    def run_meta(self, run: str) -> dict[str, Any]:
        """The run's ``run.json`` ({} if it has none); raises :class:`RunNotFound`."""
        self._check(run)
        return self._store.run_meta(run)

    def _check(self, run: str) -> None:
        if self.only is not None and run not in self.only:
            raise RunNotFound(f"run {run!r} is not followed by this reader (it follows {', '.join(self.only)})")

    def _read(
        self, runs: list[str] | None, tables: list[str], sql: str, params: dict[str, Any] | None = None
    ) -> pa.Table:
        """Run ``sql`` over the mirrored tables; tables not mirrored are read from the files of ``runs``."""
        cold = [t for t in tables if t not in self.tables]
        if not cold:
            return self.query(sql, params)

        def names() -> list[str]:
            followed = [n for n in run_names(self.root) if self.only is None or n in self.only]
            return [n for n in followed if runs is None or n in runs]

        return query_files(self._con, self._lock, self.root, names, cold, self._coverage, sql, params)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> TailReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------------------------
    def _poll_once(self) -> int:
        names = run_names(self.root)
        if self.only is not None:
            names = [n for n in names if n in self.only]
        added = 0
        for table in self.tables:
            # Only what appeared since the last poll is listed and parsed (store/listing.py): the cost does not grow
            # with the files already read. Their folders are locked while they are read; one that vanished after
            # the scan (compaction) fails the read, and the poll is repeated from the last committed scan.
            scan = self._watch.scan(self.root, names, table, self._coverage)
            sel = select_files(scan.new, exclude=self._ingested[table])
            if not sel.empty:
                with read_locked({f.path.parent for f in scan.new if not is_object(f.path)}):
                    # in batches: one read_parquet over 30,000 small segments held 2.7 GB (1,000 at a time: see
                    # the report); what a batch ingested is remembered, so a retry after a failed batch skips it
                    for batch in _batches(sel):
                        added += self._ingest(table, batch)
                        self._ingested[table].update(k for f in batch.whole for k in f.keys)
                        self._ingested[table].update(k for _, keys in batch.partial for k in keys)
            self._watch.commit(scan)
        return added

    def _ingest(self, table: str, sel: Any) -> int:
        """Copy the selected files into ``table`` in one transaction; returns the row count."""
        cur = self._con.cursor()
        try:
            binder = Binder("f", con=cur)
            cur.register("_empty", empty_table(table))
            src = source_sql(sel, "_empty", binder)
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute(f"CREATE TEMP TABLE _new AS {src}", binder.values)
                have = {r[0] for r in cur.execute(f"DESCRIBE {table}").fetchall()}
                for name, dtype, *_ in cur.execute("DESCRIBE _new").fetchall():
                    if name not in have:  # schema growth: a column that appeared in a later segment
                        cur.execute(f'ALTER TABLE {table} ADD COLUMN "{_ident(name)}" {dtype}')
                n = cur.execute("SELECT count(*) FROM _new").fetchone()[0]
                cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _new")
                cur.execute("DROP TABLE _new")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return int(n)
        finally:
            cur.close()


INGEST_BATCH_FILES = 1000
"""Files read by one ``INSERT`` of a poll: DuckDB's memory grows with the files one ``read_parquet`` lists."""


def _batches(sel: Selection) -> list[Selection]:
    """``sel`` cut into selections of at most :data:`INGEST_BATCH_FILES` files (the partial ones last, alone)."""
    out = [Selection(whole=sel.whole[i : i + INGEST_BATCH_FILES]) for i in range(0, len(sel.whole), INGEST_BATCH_FILES)]
    out += [Selection(partial=[p]) for p in sel.partial]
    return out


def _ident(name: str) -> str:
    """A column name safe inside double quotes (quotes doubled)."""
    return name.replace('"', '""')
