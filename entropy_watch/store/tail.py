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

**Bounded memory** (``keep=N``). Mirroring every run holds every row of the store: a team's store of 197 runs
(25.8M scalar rows) took 25.3 s and 4.96 GB to load, 60 runs 17.9 s and 1.3 GB. With ``keep`` the reader holds the
rows of at most ``keep`` runs, those named by :meth:`TailReader.follow` most recently (the runs a page shows: the
app follows the run it draws); a run followed is read whole at the next poll, and one let go loses its rows and is
forgotten by the listing. For every run it keeps an index of its scalar segments instead (a row per key: rows and
newest step, maintained by the same scan, de-duplication and drop rules as the rows), which answers
:meth:`~TailReader.versions` exactly as the rows would. Any other read of a run not held (the monitor analysing it)
comes from the run's files, like ``tokens``. The sparklines of the names given as ``sparks`` (the app: the Runs
page's entropy line) come from the index too: the same scan keeps those names' points of every segment, each
segment's newest wall time and the runs' ``resume`` events (what the store's rules read), so the Runs page of 60
uncompacted runs no longer reads their 9,290 files (3-4 s, its cold first paint 11 -> 16 s); lines of other names
are read from the files, a few runs at a time. Lines are kept per run and made again once the run's version moved
(from files at most every :data:`SPARK_REFRESH_S`). Memory then grows with the files (one index row per segment),
the points of ``sparks`` (1.2M points, ~65 MB, for 60 runs of 8 ranks) and the runs followed, not with the rows.

It implements the store's read interface (:class:`~entropy_watch.store.reads.RunReader`): the queries of
:class:`~entropy_watch.store.reads.SqlReads` run on the mirrored tables; a table it does not mirror (``tokens``) is read
from its files on demand, and the run listing and ``run.json`` come from a :class:`~entropy_watch.store.Store`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

from entropy_watch.errors import RunNotFound
from entropy_watch.store import layout
from entropy_watch.store.files import SEG_RE, CoverageCache, Key, Selection, file_ref, select_files
from entropy_watch.store.fs import StorePath, is_object
from entropy_watch.store.listing import FolderWatch, RunStamp, Scan
from entropy_watch.store.query import Binder, read_connection, read_locked, run_names, source_sql, with_retry
from entropy_watch.store.reader import RunInfo, Store
from entropy_watch.store.reads import SqlReads, query_files, with_ctes
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
        keep: hold the rows of at most this many runs, those named by :meth:`follow` most recently (None: every
            run's rows; module docstring, "Bounded memory").
        sparks: keep mode: scalar names whose points the index keeps for every run, so that :meth:`sparklines` of
            them reads memory, not every run's files (the app: the Runs page's entropy line).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        tables: Iterable[str] = DEFAULT_TABLES,
        runs: Iterable[str] | None = None,
        keep: int | None = None,
        sparks: Iterable[str] = (),
    ) -> None:
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ValueError(f"keep must be a number of runs (1 or more) or None, got {keep!r}")
        self.keep = keep
        self.sparks: tuple[str, ...] = tuple(dict.fromkeys(sparks))
        self.root = layout.default_root(root)
        self.tables = tuple(layout.validate_table(t) for t in tables)
        self.only = None if runs is None else tuple(layout.validate_run_name(r) for r in runs)
        self.generation = 0
        self.refused: dict[str, str] = {}
        """Runs the last poll could not list (another user's private run): ``run -> why``; the rest was read."""
        self._refusing: dict[str, str] = {}
        self._store = Store(self.root)
        self._con = read_connection()  # bounded memory, spilling to $TMPDIR, never the working directory
        self._lock = threading.Lock()
        self._coverage = CoverageCache()
        self._watch = FolderWatch()
        self._ingested: dict[str, dict[str, set[Key]]] = {t: {} for t in self.tables}  # table -> rank folder -> keys
        self._listed: dict[str, tuple[RunStamp, RunInfo]] = {}  # run -> its listing and the stamp taken before it
        self._listed_lock = threading.Lock()
        # keep mode: the runs whose rows are held (least recently followed first), those a poll has read since they
        # were followed, and the index of every run's scalar segments (rows and newest step per key)
        self._follow: OrderedDict[str, None] = OrderedDict()
        self._ready: frozenset[str] = frozenset()
        self._index_watch = FolderWatch()
        self._indexed: dict[str, set[Key]] = {}
        self._indexed_events: dict[str, set[Key]] = {}
        self._next_key = 0  # the id the next index row gets (its sparkline points refer to it)
        self._sparks: dict[tuple[str, str, int], tuple[tuple[int, int], float, list[float]]] = {}  # version, when
        self._scope = threading.local()
        cur = self._con.cursor()
        for table in self.tables:
            cur.register("_empty", empty_table(table))
            cur.execute(f"CREATE TABLE {table} AS SELECT * FROM _empty")
            cur.unregister("_empty")
        cur.execute(f"CREATE TABLE {INDEX} ({INDEX_COLUMNS})")
        cur.execute(f"CREATE TABLE {POINTS} ({POINTS_COLUMNS})")
        cur.execute(f"CREATE TABLE {RESUMES} ({RESUMES_COLUMNS})")
        cur.close()

    @property
    def files_seen(self) -> int:
        """Files currently listed in the store that this reader has already handled."""
        with self._lock:
            return self._watch.files

    def poll(self) -> int:
        """Ingest files published since the last poll, drop the rows of files deleted since (module docstring);
        returns the number of new rows (in keep mode: every run's new scalar rows, and the other tables' of the runs
        followed). Bumps ``generation`` when rows were added or dropped."""
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

    # -- bounded memory (keep) ------------------------------------------------------------------------------------
    def follow(self, *runs: str) -> None:
        """Hold the rows of ``runs`` from the next poll on (keep mode; a no-op otherwise): the runs a page shows. The
        runs followed least recently beyond ``keep`` are let go (their rows dropped); until a poll has read a run
        followed, its reads come from its files."""
        if self.keep is None:
            return
        names = [layout.validate_run_name(r) for r in runs]
        with self._lock:
            for name in names:
                self._follow[name] = None
                self._follow.move_to_end(name)
            gone = []
            while len(self._follow) > self.keep:
                gone.append(self._follow.popitem(last=False)[0])
            self._let_go(gone)

    @property
    def followed(self) -> list[str]:
        """The runs whose rows this reader holds (every run when ``keep`` is None: ``[]`` then means all)."""
        return list(self._follow)

    def versions(self) -> dict[str, tuple[int, int]]:
        """``run -> (scalar rows, newest step)``; in keep mode from the index of every run's segments (each key
        once, as the rows would count), without holding their rows."""
        if self.keep is None:
            return super().versions()
        tbl = self.query(f"SELECT run, sum(n) AS n, max(s) AS s FROM {INDEX} GROUP BY run")
        cols = (tbl.column(c).to_pylist() for c in ("run", "n", "s"))
        return {str(r): (int(n), int(s)) for r, n, s in zip(*cols, strict=True) if s is not None}

    def sparklines(self, name: str, points: int = 60) -> dict[str, list[float]]:
        """``run -> bucket means`` of ``name`` (:meth:`SqlReads.sparklines`). In keep mode the line of each run is
        kept (``points`` numbers) and made again once the run's version moved: for a name among ``sparks`` from the
        points the index holds, every run in one query; for another name from the runs' files, a few runs at a time,
        and only once the line is :data:`SPARK_REFRESH_S` old (a live run's line catches up within that)."""
        if self.keep is None:
            return super().sparklines(name, points)
        indexed = name in self.sparks
        versions = self.versions()
        now = time.monotonic()
        with self._lock:
            known = {r: self._sparks.get((r, name, points)) for r in versions}
        wait = 0.0 if indexed else SPARK_REFRESH_S
        stale = [r for r, hit in known.items() if hit is None or (hit[0] != versions[r] and now - hit[1] >= wait)]
        size = SPARK_POINTS_BATCH_RUNS if indexed else SPARK_BATCH_RUNS
        for i in range(0, len(stale), size):
            batch = stale[i : i + size]
            self._scope.runs, self._scope.spark = batch, (name if indexed else None)
            try:
                got = super().sparklines(name, points)
            finally:
                self._scope.runs = self._scope.spark = None
            with self._lock:
                for run in batch:
                    self._sparks[(run, name, points)] = (versions[run], now, got.get(run, []))
        with self._lock:
            for key in [k for k in self._sparks if k[0] not in versions]:
                del self._sparks[key]
            out = {r: hit[2] for r in versions if (hit := self._sparks.get((r, name, points))) is not None}
        return {r: v for r, v in out.items() if v}

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
        if (spark := getattr(self._scope, "spark", None)) is not None:
            return self._read_points(spark, list(getattr(self._scope, "runs", None) or []), sql, params)
        cold = [t for t in tables if t not in self.tables]
        if runs is None and self.keep is not None:
            runs = getattr(self._scope, "runs", None)
        if self.keep is not None and (runs is None or not self._ready.issuperset(runs)):
            cold = list(tables)  # rows not held: read from the runs' files
        if not cold:
            out = self.query(sql, params)
            if self.keep is None or runs is None or self._ready.issuperset(runs):  # not let go before it began
                return out
            cold = list(tables)

        def names() -> list[str]:
            followed = [n for n in run_names(self.root) if self.only is None or n in self.only]
            return [n for n in followed if runs is None or n in runs]

        return query_files(self._con, self._lock, self.root, names, cold, self._coverage, sql, params)

    def _read_points(self, name: str, runs: list[str], sql: str, params: dict[str, Any] | None) -> pa.Table:
        """Run a sparkline's ``sql`` over what the index holds of ``runs`` (keep mode, ``name`` among ``sparks``):
        ``scalars`` is the points of ``name`` plus a row per segment carrying its newest wall time (what the resume
        rule's ``ends`` reads of every other row), ``events`` the resumes: the rows the query reads of the files."""
        ctes = f"""scalars AS (
                SELECT i.run, i.rank, i._writer, i._seq, $_sp_name AS name, p.step, p.value, p.wall_time
                FROM {POINTS} p JOIN {INDEX} i USING (k) WHERE p.i = $_sp_i AND list_contains($_sp_runs, i.run)
                UNION ALL
                SELECT run, rank, _writer, _seq, NULL, NULL, NULL, t FROM {INDEX} WHERE list_contains($_sp_runs, run)),
            events AS (
                SELECT run, rank, _writer, _seq, step, 'resume' AS kind, wall_time FROM {RESUMES}
                WHERE list_contains($_sp_runs, run))"""
        own = {"_sp_name": name, "_sp_i": self.sparks.index(name), "_sp_runs": runs}
        return self.query(with_ctes(ctes, sql), {**own, **(params or {})})

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
        self._refusing = {}
        if self.keep is not None:
            added, dropped = self._poll_index(names)
            names = [n for n in names if n in self._follow]
        for table in self.tables:
            # Only what appeared since the last poll is listed and parsed (store/listing.py): the cost does not grow
            # with the files already read. Their folders are locked while they are read; one that vanished after
            # the scan (compaction) fails the read, and the poll is repeated from the last committed scan.
            scan = self._watch.scan(self.root, names, table, self._coverage)
            self._refusing.update(scan.refused)
            ingested = self._ingested[table]
            for key, (folder, now) in scan.gone.items():
                dropped += self._drop(table, key, folder, now)
            n = self._ingest_scan(scan, ingested, functools.partial(self._ingest, table))
            added += 0 if self.keep is not None and table == INDEXED_TABLE else n
            self._watch.commit(scan)
        if self.keep is not None:
            self._ready = frozenset(names)
        self.refused = self._refusing
        return added, dropped

    def _ingest_scan(self, scan: Scan, ingested: dict[str, set[Key]], ingest: Callable[[Selection], int]) -> int:
        """Ingest the files new in ``scan`` whose keys are not in ``ingested`` (per rank folder); returns the rows."""
        by_folder: dict[str, list[Any]] = {}
        for f in scan.new:
            by_folder.setdefault(str(f.path.parent), []).append(f)
        sel = Selection()
        for key, refs in by_folder.items():
            part = select_files(refs, exclude=ingested.get(key, set()))
            sel.whole += part.whole
            sel.partial += part.partial
        added = 0
        if not sel.empty:
            with read_locked({f.path.parent for f in scan.new if not is_object(f.path)}):
                # in batches: one read_parquet over 30,000 small segments held 2.7 GB (1,000 at a time: see
                # the report); what a batch ingested is remembered, so a retry after a failed batch skips it
                for batch in _batches(sel):
                    added += ingest(batch)
                    for f in batch.whole:
                        ingested.setdefault(str(f.path.parent), set()).update(f.keys)
                    for f, keys in batch.partial:
                        ingested.setdefault(str(f.path.parent), set()).update(keys)
        return added

    def _poll_index(self, names: list[str]) -> tuple[int, int]:
        """Keep mode: bring the index of every run's scalar keys (and the points of ``sparks``) and of its resume
        events up to date; ``(rows added, rows dropped)``."""
        scan = self._index_watch.scan(self.root, names, INDEXED_TABLE, self._coverage)
        self._refusing.update(scan.refused)
        dropped = 0
        for key, (folder, now) in scan.gone.items():
            dropped += self._drop(INDEX, key, folder, now, self._indexed, count="n", also=POINTS)
        added = self._ingest_scan(scan, self._indexed, self._ingest_index)
        self._index_watch.commit(scan)
        if self.sparks:  # the resumes a sparkline's rule reads: a few rows per run
            scan = self._index_watch.scan(self.root, names, "events", self._coverage)
            for key, (folder, now) in scan.gone.items():
                dropped += self._drop(RESUMES, key, folder, now, self._indexed_events)
            added += self._ingest_scan(scan, self._indexed_events, self._ingest_resumes)
            self._index_watch.commit(scan)
        return added, dropped

    def _ingest_index(self, sel: Selection) -> int:
        """Add the rows, newest step and newest wall time of each key of the selected files to the index, and its
        points of ``sparks`` (one read of the files, in one transaction); returns the rows."""
        with self._files(INDEXED_TABLE, sel) as (cur, src, values):
            pts = "list(struct_pack(i := list_position($_sp, name) - 1, step, value, wall_time))"
            cur.execute(
                f"CREATE TEMP TABLE _keys AS SELECT *, $_k0 + row_number() OVER () AS k FROM ("
                f"SELECT run, rank, _writer, _seq, count(*) AS n, max(step) AS s, max(wall_time) AS t, "
                f"{pts} FILTER (WHERE list_contains($_sp, name)) AS pts FROM ({src}) GROUP BY ALL)",
                {**values, "_sp": list(self.sparks), "_k0": self._next_key},
            )
            keys, rows = cur.execute("SELECT count(*), coalesce(sum(n), 0) FROM _keys").fetchone() or (0, 0)
            cur.execute(f"INSERT INTO {INDEX} SELECT run, rank, _writer, _seq, n, s, t, k FROM _keys")
            cur.execute(
                f"INSERT INTO {POINTS} SELECT k, p.i, p.step, p.value, p.wall_time "
                "FROM (SELECT k, unnest(pts) AS p FROM _keys WHERE pts IS NOT NULL)"
            )
            cur.execute("DROP TABLE _keys")
        self._next_key += int(keys)
        return int(rows)

    def _ingest_resumes(self, sel: Selection) -> int:
        """Add the ``resume`` events of the selected files to the index (keep mode, with ``sparks``); returns 0:
        they are no rows of the store's scalars."""
        with self._files("events", sel) as (cur, src, values):
            cur.execute(
                f"INSERT INTO {RESUMES} SELECT run, rank, _writer, _seq, step, wall_time FROM ({src}) "
                "WHERE kind = 'resume'",
                values,
            )
        return 0

    def _let_go(self, runs: list[str]) -> None:
        """Drop the rows of ``runs`` and forget their files (keep mode; the caller holds the lock)."""
        if not runs:
            return
        self._ready = self._ready.difference(runs)
        self._watch.forget(self.root, runs)
        prefixes = tuple(f"{layout.run_dir(self.root, r)}{sep}" for r in runs for sep in {os.sep, "/"})
        cur = self._con.cursor()
        try:
            for table in self.tables:
                for key in [k for k in self._ingested[table] if k.startswith(prefixes)]:
                    del self._ingested[table][key]
                cur.execute(f"DELETE FROM {table} WHERE list_contains($runs, run)", {"runs": runs})
        finally:
            cur.close()
        self.generation += 1

    def _drop(
        self,
        table: str,
        key: str,
        folder: StorePath,
        now: frozenset[str],
        ingested: dict[str, set[Key]] | None = None,
        count: str | None = None,
        also: str | None = None,
    ) -> int:
        """Delete from ``table`` the rows of ``folder``'s keys that none of the files it holds ``now`` covers (a
        file deleted for good, not merged into a part first); returns how many rows went (the sum of column
        ``count`` when given: the index counts rows per key). ``also``: the table of the index's points, whose rows of
        the keys deleted go too."""
        ingested = self._ingested[table] if ingested is None else ingested
        had = ingested.get(key)
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
            if also is not None:
                cur.execute(
                    f"DELETE FROM {also} WHERE k IN (SELECT t.k FROM {table} t JOIN _lost d "
                    "ON t._writer = d.w AND t._seq = d.s WHERE t.run = $run AND t.rank = $rank)",
                    {"run": run, "rank": rank},
                )
            res = cur.execute(
                f"DELETE FROM {table} t USING _lost d WHERE t.run = $run AND t.rank = $rank "
                f"AND t._writer = d.w AND t._seq = d.s{f' RETURNING t.{count}' if count else ''}",
                {"run": run, "rank": rank},
            ).fetchall()
            cur.unregister("_lost")
        finally:
            cur.close()
        if lost == had:
            del ingested[key]
        else:
            had -= lost
        if count:
            return sum(int(r[0]) for r in res)
        return int(res[0][0]) if res else 0

    def _ingest(self, table: str, sel: Any) -> int:
        """Copy the selected files into ``table`` in one transaction; returns the row count."""
        with self._files(table, sel) as (cur, src, values):
            cur.execute(f"CREATE TEMP TABLE _new AS {src}", values)
            have = {r[0] for r in cur.execute(f"DESCRIBE {table}").fetchall()}
            for name, dtype, *_ in cur.execute("DESCRIBE _new").fetchall():
                if name not in have:  # schema growth: a column that appeared in a later segment
                    cur.execute(f'ALTER TABLE {table} ADD COLUMN "{_ident(name)}" {dtype}')
            n = cur.execute("SELECT count(*) FROM _new").fetchone()[0]
            cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _new")
            cur.execute("DROP TABLE _new")
        return int(n)

    @contextlib.contextmanager
    def _files(self, table: str, sel: Any) -> Iterator[tuple[Any, str, dict[str, Any]]]:
        """``(cursor, src, values)`` for one block: a cursor on the mirror inside one transaction (committed when
        the block ends, rolled back when it raises), ``src`` the SQL reading the selected files of ``table`` (an
        empty relation of its columns when none) and ``values`` its parameters."""
        cur = self._con.cursor()
        try:
            binder = Binder("f", con=cur)
            cur.register("_empty", empty_table(table))
            src = source_sql(sel, "_empty", binder)
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur, src, binder.values
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            cur.close()


INDEX = "_scalar_keys"
"""Keep mode: one row per scalar segment key of every run (rows, newest step): :meth:`TailReader.versions`."""
INDEX_COLUMNS = "run VARCHAR, rank INTEGER, _writer VARCHAR, _seq BIGINT, n BIGINT, s BIGINT, t DOUBLE, k BIGINT"
POINTS = "_spark_points"
"""Keep mode with ``sparks``: every run's rows of those names (``i``: which), by index row ``k``: a sparkline's read."""
POINTS_COLUMNS = "k BIGINT, i SMALLINT, step BIGINT, value DOUBLE, wall_time DOUBLE"
RESUMES = "_resumes"
"""Keep mode with ``sparks``: every run's ``resume`` events (the rule of what a resume replaced, for sparklines)."""
RESUMES_COLUMNS = "run VARCHAR, rank INTEGER, _writer VARCHAR, _seq BIGINT, step BIGINT, wall_time DOUBLE"
INDEXED_TABLE = "scalars"
SPARK_BATCH_RUNS = 2
"""Keep mode: runs whose sparklines one query reads from their files (its memory grows with their rows)."""
SPARK_POINTS_BATCH_RUNS = 8
"""Keep mode: runs whose sparklines one query makes from the index's points (its memory grows with their points)."""
SPARK_REFRESH_S = 10.0
"""Keep mode: a run's sparkline is read again from its files at most this often while its data moves."""

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
