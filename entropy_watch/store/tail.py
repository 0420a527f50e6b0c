"""TailReader: an in-memory DuckDB copy of the small tables that ingests only files it has not seen (the app's cache).

Each :meth:`TailReader.poll` lists the table folders, keeps the files not seen before, and runs
``INSERT INTO <table> BY NAME SELECT … FROM read_parquet([new files], hive_partitioning=true, union_by_name=true)``.
Cost is proportional to what is new, not to the store (measured in ``benchmarks/bench_store.py``).

De-duplication across compaction: the reader remembers every key ``(_writer, _seq)`` it has ingested. A new
``part-`` file covering only ingested keys is skipped without being read; one covering some new keys is read
restricted to those keys; a new segment whose key arrived through a part is skipped. So a row is counted once
whatever the interleaving of listing, publication of parts and deletion of segments. Keys are remembered per rank
folder (a run copied under another name holds the same keys, and its rows are its own).

Files that went away (:attr:`~entropy_watch.store.listing.Scan.gone`): the rows of every key that no file listed in
its folder covers any more are deleted, and the key forgotten. Compaction deleting the segments it merged drops
nothing (the part it published first covers them); a run deleted, or deleted and re-created under the same name
(``make demo`` does that), loses the old run's rows, as a fresh :class:`~entropy_watch.store.Store` sees it. Were a
listing ever to miss both a new part and the segments it replaced, the keys dropped are read back from the part at
the next poll (they were forgotten).

Schema growth: a new file with a column the table lacks gets ``ALTER TABLE … ADD COLUMN`` first (older rows read
NULL). Thread-safe: one lock; every poll and query runs on a fresh cursor under it.

The run listing (:meth:`TailReader.runs`) reads again only the runs whose own folders changed since it last read them
(:class:`~entropy_watch.store.listing.RunStamp`, one ``stat`` per folder): the app lists the runs at every refresh
that found new data, and read every run's ``_run.json`` and heartbeats each time (30 runs, 3 writers: 200 opens of
``_run.json``/``run.json`` a second). A ``running`` run is always read again (it turns ``stalled`` with time alone);
so is every run on an object store (no modification times).

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
from entropy_watch.store.files import SEG_RE, CoverageCache, Key, Selection, file_ref, select_files
from entropy_watch.store.fs import StorePath, is_object
from entropy_watch.store.listing import FolderWatch, RunStamp
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
        self._ingested: dict[str, dict[str, set[Key]]] = {t: {} for t in self.tables}  # table -> rank folder -> keys
        self._listed: dict[str, tuple[RunStamp, RunInfo]] = {}  # run -> its listing and the stamp taken before it
        self._listed_lock = threading.Lock()
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
        """Ingest files published since the last poll, drop the rows of files deleted since (module docstring);
        returns the number of new rows. Bumps ``generation`` when rows were added or dropped."""
        with self._lock:
            added, dropped = with_retry(self._poll_once)
            if added or dropped:
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
        """Runs under the root (only those followed, when ``runs`` was given), sorted by name; a run whose folders
        are unchanged since the last call is not read again (module docstring)."""
        names = [n for n in run_names(self.root) if self.only is None or n in self.only]
        if is_object(self.root):
            return self._store.run_infos(names)
        with self._listed_lock:
            listed = {n: self._listed.get(n) for n in names}
        kept = {n: e[1] for n, e in listed.items() if e is not None and e[1].state != "running" and e[0].unchanged()}
        stale = [n for n in names if n not in kept]
        stamps = {n: RunStamp.take(layout.run_dir(self.root, n)) for n in stale}  # before the run is read
        fresh = dict(zip(stale, self._store.run_infos(stale), strict=True)) if stale else {}
        with self._listed_lock:
            for gone in set(self._listed).difference(names):
                del self._listed[gone]
            for n, info in fresh.items():
                if (stamp := stamps[n]) is not None:
                    self._listed[n] = (stamp, info)
        return [kept[n] if n in kept else fresh[n] for n in names]

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
    def _poll_once(self) -> tuple[int, int]:
        """One poll: ``(rows added, rows dropped)``."""
        names = run_names(self.root)
        if self.only is not None:
            names = [n for n in names if n in self.only]
        added = dropped = 0
        for table in self.tables:
            # Only what appeared since the last poll is listed and parsed (store/listing.py): the cost does not grow
            # with the files already read. Their folders are locked while they are read; one that vanished after
            # the scan (compaction) fails the read, and the poll is repeated from the last committed scan.
            scan = self._watch.scan(self.root, names, table, self._coverage)
            ingested = self._ingested[table]
            for key, (folder, now) in scan.gone.items():
                dropped += self._drop(table, key, folder, now)
            by_folder: dict[str, list[Any]] = {}
            for f in scan.new:
                by_folder.setdefault(str(f.path.parent), []).append(f)
            sel = Selection()
            for key, refs in by_folder.items():
                part = select_files(refs, exclude=ingested.get(key, set()))
                sel.whole += part.whole
                sel.partial += part.partial
            if not sel.empty:
                with read_locked({f.path.parent for f in scan.new if not is_object(f.path)}):
                    # in batches: one read_parquet over 30,000 small segments held 2.7 GB (1,000 at a time: see
                    # the report); what a batch ingested is remembered, so a retry after a failed batch skips it
                    for batch in _batches(sel):
                        added += self._ingest(table, batch)
                        for f in batch.whole:
                            ingested.setdefault(str(f.path.parent), set()).update(f.keys)
                        for f, keys in batch.partial:
                            ingested.setdefault(str(f.path.parent), set()).update(keys)
            self._watch.commit(scan)
        return added, dropped

    def _drop(self, table: str, key: str, folder: StorePath, now: frozenset[str]) -> int:
        """Delete from ``table`` the rows of ``folder``'s keys that none of the files it holds ``now`` covers (a
        file deleted for good, not merged into a part first); returns how many rows went."""
        had = self._ingested[table].get(key)
        if not had:
            return 0
        covered: set[Key] = set()
        for name in now:
            if (m := SEG_RE.match(name)) is not None:
                covered.add((m.group(1), int(m.group(2))))
            elif name.startswith("part-") and (ref := file_ref(folder / name, self._coverage)) is not None:
                covered |= ref.keys  # its coverage was read when it was listed (cached); a part gone since: retried
        lost = had - covered
        if not lost:
            return 0
        run, rank = folder.parent.parent.name.removeprefix("run="), int(folder.name.removeprefix("rank="))
        cur = self._con.cursor()
        try:
            writers, seqs = zip(*sorted(lost), strict=True)
            cur.register("_lost", pa.table({"w": pa.array(writers, pa.string()), "s": pa.array(seqs, pa.int64())}))
            n = cur.execute(
                f"DELETE FROM {table} t USING _lost d WHERE t.run = $run AND t.rank = $rank "
                "AND t._writer = d.w AND t._seq = d.s",
                {"run": run, "rank": rank},
            ).fetchone()
            cur.unregister("_lost")
        finally:
            cur.close()
        if lost == had:
            del self._ingested[table][key]
        else:
            had -= lost
        return int(n[0]) if n else 0

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
