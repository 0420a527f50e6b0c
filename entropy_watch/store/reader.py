"""Store: one-shot reads of a store (CLI, analysis, app queries), never holding a lock on anything in it.

Each query lists the files it needs, picks each segment once (a ``part-`` that covers segments wins over them, see
:mod:`entropy_watch.store.files`) and reads them with DuckDB ``read_parquet`` in an in-memory connection. A file that
vanishes between listing and reading (compaction deleting merged segments) makes DuckDB raise an IO error; the
query is then listed and run again (:func:`entropy_watch.store.query.with_retry`).

Run state (:class:`RunInfo.state`): ``running``; ``finished``; ``failed`` (any rank failed); ``terminated`` (a rank
got SIGTERM, e.g. preemption); ``interrupted`` (a rank stopped on Ctrl-C: KeyboardInterrupt); ``stalled`` (some
rank's heartbeat is older than three of its intervals and it never said finished: crashed, hung or killed);
``imported`` (no heartbeat file at all: logs imported from other tools or written by a foreign process). Across ranks
the first of :data:`STATE_PRECEDENCE` that any rank is in wins, ``finished`` only when every rank finished.

**A rank a resume left behind** (:func:`superseded`) does not count: a run resumed on fewer ranks (3 -> 2) keeps the
heartbeat of the rank the resumed session does not have, and its ``failed`` (or a killed rank's ``stalled``) decided
the run's state for good after the resumed session finished cleanly on its two ranks. A rank's heartbeat is left out
of the state when its session had ended (its last heartbeat) before another rank's session started, and a ``resume``
event was written after it by another session: the run went on without it. Its last step and latest values count
only below the resume's step (the rows the resume replaced are left out of every read, :func:`~.reads.replaced_sql`).
A rank of the resumed session itself is never left out, running, stalled or failed: it started with the others.
Only a run whose heartbeats span two launches pays for it: one query over the ``events`` of those runs together.

**Memory and spilling** (:func:`~entropy_watch.store.query.read_connection`, also the
:class:`~entropy_watch.store.TailReader`'s and the writer's catch-up's, inside the trainer): DuckDB's defaults are
80% of the machine's memory, beside a trainer, and a spill folder ``.tmp`` in the *working directory*: a sort bigger
than memory wrote there (the app server's folder, a cron job's), and failed where it is read-only. The
store's own connections keep :func:`~entropy_watch.store.query.sql_memory_limit` (25%, or
``$ENTROPY_WATCH_SQL_MEMORY``) and spill past it into a private folder of the system's temporary directory
(``$TMPDIR``), which DuckDB makes only when it spills and removes when the connection closes (the tail reader's
in-memory tables spill there too). Unlike the SQL sandbox (no spill folder: a user query bigger than its limit fails),
the store's own reads are not refused for size.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from entropy_watch.errors import RunNotFound, run_not_found
from entropy_watch.store import fs, layout, manifest, summary
from entropy_watch.store import meta as run_meta
from entropy_watch.store.files import CoverageCache, select_files
from entropy_watch.store.fs import StorePath
from entropy_watch.store.query import (
    RUNS_COLUMNS,
    SHOW_TABLES,
    Binder,
    create_sandbox_view,
    fetch_interruptible,
    listable_runs,
    out_of_memory,
    read_connection,
    read_locked,
    run_names,
    sandbox,
    source_sql,
    table_dirs,
    table_files,
    views_listing,
    with_retry,
)
from entropy_watch.store.reads import SqlReads, query_files
from entropy_watch.store.schema import empty_table
from entropy_watch.store.summary import RunInfo, unreadable_info
from entropy_watch.store.writer import DEFAULT_HEARTBEAT_S, SUMMARY_NAMES, RunWriter

T = TypeVar("T")

STALL_FACTOR = 3.0
# Runs whose small objects an object-store listing reads at once: each run costs ~12 requests (its run.json, the
# ranks' meta and heartbeat objects, its five table prefixes), one after another a round trip each; `ls` of 300 runs
# made 3,600 requests in a row (14 s against a local server, minutes against a remote bucket).
OBJECT_READERS = 16
# A run's state across its ranks: the first of these any rank is in (none: finished). A failure outranks a stop from
# outside (SIGTERM, then Ctrl-C), which outranks a rank gone quiet or still running.
STATE_PRECEDENCE = ("failed", "terminated", "interrupted", "stalled", "running")
LEFT_BEHIND = "_left_behind_at"
"""Key :func:`_left_behind` adds to the heartbeat of a rank a resume left behind: the resume's step."""


class LazyConnection:
    """A :func:`read_connection` opened at its first use. Opening a DuckDB database costs ~25 ms of CPU, and many a
    :class:`Store` never queries: a listing of finished runs reads their heartbeats and ``_runs.parquet``, a
    ``show`` of a missing run stops at its folder. Thread-safe; closed with the object (garbage collection)."""

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The connection, opened now if it is not yet (a bad ``$ENTROPY_WATCH_SQL_MEMORY`` raises here)."""
        with self._lock:
            if self._con is None:
                self._con = read_connection()
            return self._con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor (DuckDB connection) on it."""
        return self.connection().cursor()


class Store(SqlReads):
    """Read access to a store root; see the module docstring. Thread-safe. The queries of
    :class:`~entropy_watch.store.reads.RunReader` (series, histograms, events, alerts, tokens, downsampled series)
    come from :class:`~entropy_watch.store.reads.SqlReads`; this class binds them to the files on disk.

    Args:
        root: store root; None resolves ``$ENTROPY_WATCH_DIR`` or ``./ew_runs`` now (not at import).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = layout.default_root(root)
        self._coverage = CoverageCache()
        self._db = LazyConnection()
        self._lock = threading.Lock()

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        """The store's DuckDB connection (opened now if no query opened it yet)."""
        return self._db.connection()

    # -- runs -----------------------------------------------------------------------------------------------------
    def runs(self) -> list[RunInfo]:
        """All runs under the root, sorted by name; cost linear in runs (summaries, see :mod:`.summary`)."""
        return self._summarised(run_names(self.root))

    def run_infos(self, names: list[str]) -> list[RunInfo]:
        """The :class:`RunInfo` of ``names`` (runs that exist), in that order, read as :meth:`runs` reads them (one
        pass: at most one query over all of them). A poller that knows which runs changed lists only those
        (:meth:`~entropy_watch.store.TailReader.runs`)."""
        return self._summarised(list(names))

    def run_info(self, run: str) -> RunInfo:
        """One run's :class:`RunInfo`; raises :class:`RunNotFound`."""
        self._require(run)
        return self._run_info(run)

    def run_meta(self, run: str) -> dict[str, Any]:
        """The run's ``run.json`` ({} if it has none); raises :class:`RunNotFound` if the run does not exist."""
        self._require(run)
        return self._load_meta(run)

    def writer(self, run: str, rank: int = 0, **kwargs: Any) -> RunWriter:
        """A :class:`RunWriter` on this store."""
        return RunWriter(self.root, run, rank, **kwargs)

    # -- tables ---------------------------------------------------------------------------------------------------
    def scalars(
        self, run: str, names: list[str] | None = None, *, rank: int | None = None, since_step: int | None = None
    ) -> pa.Table:
        """Scalar rows ``step, rank, name, value, wall_time`` ordered by step, rank, name (repeats kept)."""
        where, params = self._filters(names=names, rank=rank, since_step=since_step)
        sql = f"SELECT step, rank, name, value, wall_time FROM src {where} ORDER BY step, rank, name, wall_time"
        return self._query_run(run, "scalars", sql, params)

    def table(self, run: str, table: str, *, since_step: int | None = None) -> pa.Table:
        """All rows of ``table`` for ``run``: its columns plus ``rank``, ordered by step and rank."""
        layout.validate_table(table)
        where, params = self._filters(names=None, rank=None, since_step=since_step)
        sql = f"SELECT * EXCLUDE (run, _writer, _seq) FROM src {where} ORDER BY step, rank"
        return self._query_run(run, table, sql, params)

    def sql(self, query: str, params: dict[str, Any] | list[Any] | None = None, limit: int | None = None) -> pa.Table:
        """Run ``query`` over views ``scalars``, ``hist``, ``tokens``, ``alerts``, ``events`` (all runs, with ``run``
        and ``rank`` columns) and ``runs`` (run, state, last_step, updated_at). Only referenced views are built.
        ``limit``: at most that many rows are fetched (the rest never held in memory: a ``--limit 2`` over 300
        million rows peaked at 2.5 GB when the whole result was fetched and cut after).

        The query runs in a :func:`~entropy_watch.store.query.sandbox`: it can read the store's rows through these
        views and nothing else; any statement that would read or write a file, attach a database, install or load
        an extension or change a setting fails with a DuckDB ``PermissionException`` / ``InvalidInputException``.
        Its memory is bounded (:func:`~entropy_watch.store.query.sql_memory_limit`): a query that needs more raises
        :class:`~entropy_watch.store.query.SqlOutOfMemory`.
        """

        if SHOW_TABLES.fullmatch(query):  # the views, not DuckDB's list of the ones this query built (none)
            return views_listing()
        tables = [t for t in layout.TABLES if re.search(rf"\b{t}\b", query)]

        def run(names: list[str]) -> pa.Table:
            con = sandbox()
            try:
                if re.search(r"\bruns\b", query):
                    con.register("runs", _runs_table(self._summarised(names)))
                with read_locked(d for t in tables for d in table_dirs(self.root, names, t)):
                    for table in tables:
                        sel = select_files(table_files(self.root, names, table, self._coverage))
                        create_sandbox_view(con, self.root, table, sel)
                    rel = con.sql(query, params=params or None)
                    return fetch_interruptible(con, rel if limit is None else rel.limit(limit))
            except duckdb.OutOfMemoryException:
                raise out_of_memory(con) from None
            finally:
                con.close()

        def attempt() -> pa.Table:
            names = run_names(self.root)
            try:
                return run(names)
            except PermissionError:  # a run private to its writer: the others are read, it is named (warning)
                readable = listable_runs(self.root, names, tables)
                if not readable or readable == names:  # nothing else to read: the error itself
                    raise
                return run(readable)

        return with_retry(attempt)

    # -- internals ------------------------------------------------------------------------------------------------
    def _read(
        self, runs: list[str] | None, tables: list[str], sql: str, params: dict[str, Any] | None = None
    ) -> pa.Table:
        """Run ``sql`` over the relations ``tables`` read from the files of ``runs`` (None: every run)."""
        for run in runs or ():
            self._require(run)

        def names() -> list[str]:
            return run_names(self.root) if runs is None else list(runs)

        return query_files(self._db, self._lock, self.root, names, tables, self._coverage, sql, params)

    def _require(self, run: str) -> None:
        if not fs.is_dir(layout.run_dir(self.root, run)):
            raise RunNotFound(run_not_found(run, self.root, run_names(self.root)))

    @staticmethod
    def _filters(*, names: list[str] | None, rank: int | None, since_step: int | None) -> tuple[str, dict[str, Any]]:
        clauses, params = [], {}
        if names is not None:
            clauses.append("list_contains($names, name)")
            params["names"] = [str(n) for n in names]
        if rank is not None:
            clauses.append("rank = $rank")
            params["rank"] = int(rank)
        if since_step is not None:
            clauses.append("step >= $since_step")
            params["since_step"] = int(since_step)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    def _query_run(self, run: str, table: str, sql: str, params: dict[str, Any]) -> pa.Table:
        """Run ``sql`` (which reads from ``src``) over one run's files of ``table``."""
        self._require(run)

        def attempt() -> pa.Table:
            with self._lock:
                cur = self._db.cursor()
            try:
                with read_locked(table_dirs(self.root, [run], table)):
                    sel = select_files(table_files(self.root, [run], table, self._coverage))
                    binder = Binder("f", con=cur)
                    cur.register(f"_empty_{table}", empty_table(table))
                    src = source_sql(sel, f"_empty_{table}", binder)
                    return cur.sql(f"WITH src AS ({src}) {sql}", params={**binder.values, **params}).to_arrow_table()
            finally:
                cur.close()

        return with_retry(attempt)

    def _run_info(self, run: str) -> RunInfo:
        return self._summarised([run])[0]

    def _summarised(self, names: list[str]) -> list[RunInfo]:
        """:class:`RunInfo` of ``names``; runs without summaries get theirs from ONE query over all of them. Settled
        runs recorded by the last compaction come from ``_runs.parquet`` while unchanged (:mod:`.manifest`). Ranks
        that never closed (running, stalled) get the segments published after their last heartbeat folded in, by at
        most one query over all of them (:func:`.summary.catch_up`)."""
        recorded = manifest.Manifest.load(self.root) if len(names) > 1 else manifest.Manifest(self.root, {})
        infos: dict[str, RunInfo] = {}
        states: dict[str, tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]] = {}
        unrecorded: list[str] = []
        for name in names:
            if (info := recorded.get(name)) is not None:
                infos[name] = info
            else:
                unrecorded.append(name)
        table_ranks: dict[str, set[int]] = {}
        if fs.is_object(self.root) and len(unrecorded) > 1:  # independent round trips: made concurrently

            def gather(name: str) -> tuple[tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]], set[int]]:
                return self._read_state(name), self._table_ranks(name)

            with ThreadPoolExecutor(min(OBJECT_READERS, len(unrecorded))) as pool:
                for name, (state, ranks) in zip(unrecorded, pool.map(gather, unrecorded), strict=True):
                    states[name], table_ranks[name] = state, ranks
        else:
            for name in unrecorded:
                try:
                    states[name] = self._read_state(name)
                    if not fs.is_object(self.root):
                        table_ranks[name] = self._table_ranks(name)
                except PermissionError as exc:  # another user's private run in a shared store: listed as such
                    infos[name] = unreadable_info(name, exc)
        gone = self._superseded({name: sts for name, (_, sts) in states.items()})
        behind = [p for name, (_, sts) in states.items() for rank, st in sts if (p := summary.pending(name, rank, st))]
        tails = summary.catch_up(self._db, self._lock, self.root, behind, self._coverage, SUMMARY_NAMES)
        scanned: list[tuple[RunInfo, bool]] = []
        for name in names:
            if name in infos:
                scanned.append((infos[name], True))
                continue
            meta, statuses = states[name]
            for rank, st in statuses:
                if (tail := tails.get((name, rank))) is not None:
                    summary.fold_tail(st, tail)
            scanned.append(self._info(name, meta, _left_behind(statuses, gone.get(name, {})), table_ranks.get(name)))
        found = summary.query_summaries(self, [i.name for i, known in scanned if not known], SUMMARY_NAMES)
        for info, known in scanned:
            if not known:  # a heartbeat without a summary may predate rows its writer published before it died
                last, info.latest = found.get(info.name, (None, {}))
                if last is not None and (info.last_step is None or last > info.last_step):
                    info.last_step = last
        return [info for info, _ in scanned]

    def _superseded(self, statuses: dict[str, list[tuple[int, dict[str, Any]]]]) -> dict[str, dict[int, int]]:
        """``run -> {rank: resume step}`` of the ranks a resume left behind (module docstring); one query over the
        ``events`` of the runs whose heartbeats span two launches, none when no run does."""
        candidates = {run: ranks for run, sts in statuses.items() if (ranks := _ended_before_another(sts))}
        if not candidates:
            return {}
        tbl = self._read(list(candidates), ["events"], _RESUMES_SQL)
        resumes: dict[str, list[tuple[str, int, float]]] = {}
        for run, writer, step, wall in zip(*(tbl.column(c).to_pylist() for c in tbl.column_names), strict=True):
            resumes.setdefault(run, []).append((writer, int(step), float(wall)))
        out: dict[str, dict[int, int]] = {}
        for run, ranks in candidates.items():
            for rank, (session, ended) in ranks.items():
                steps = [step for writer, step, wall in resumes.get(run, ()) if writer != session and wall > ended]
                if steps:
                    out.setdefault(run, {})[rank] = min(steps)
        return out

    def _read_state(self, run: str) -> tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]:
        """The run's ``run.json`` and its ranks' heartbeats ``(rank, status)``."""
        return self._load_meta(run), run_meta.statuses(self.root, run)

    def _load_meta(self, run: str) -> dict[str, Any]:
        """The run's ``run.json``; :class:`PermissionError` when it is there but this user may not read it."""
        meta = run_meta.load(self.root, run)
        if not meta:
            run_meta.check_run_json(self.root, run)
        return meta

    def _table_ranks(self, run: str) -> set[int]:
        """The ranks with a ``rank=<r>`` folder in any of the run's tables."""
        rdir = layout.run_dir(self.root, run)
        ranks: set[int] = set()
        for table in layout.TABLES:
            try:
                ranks |= {int(e.name[5:]) for e in fs.listdir(rdir / f"table={table}") if e.name[5:].isdigit()}
            except FileNotFoundError:
                continue
        return ranks

    def _info(
        self,
        run: str,
        meta: dict[str, Any],
        statuses: list[tuple[int, dict[str, Any]]],
        table_ranks: set[int] | None = None,
    ) -> tuple[RunInfo, bool]:
        """The run's info from run.json, the heartbeats and ``table_ranks`` (:meth:`_table_ranks`, listed now when
        None); False when it has no summary (``latest`` left empty)."""
        ranks = {r for r, _ in statuses} | (self._table_ranks(run) if table_ranks is None else table_ranks)
        state = _run_state([st for _, st in statuses], time.time())
        steps = [s for _, st in statuses if isinstance(s := st.get("last_step"), int) and 0 <= s < 2**63]
        last_step = max(steps) if steps else None
        latest = summary.merge_statuses(statuses) if statuses else None
        if not statuses and (imported := summary.from_meta(meta)) is not None:
            last_step, latest = imported
        stamps = [v for _, st in statuses if (v := _positive(st.get("updated_at"))) is not None]
        updated_at = max(stamps) if stamps else _mtime(layout.run_json_path(self.root, run))
        info = RunInfo(run, meta, state, last_step, sorted(ranks), updated_at, latest or {})
        return info, latest is not None


def rank_state(status: Mapping[str, Any], now: float) -> str:
    """One rank's state from its heartbeat: as written, but ``stalled`` for a ``running`` one not refreshed within
    ``STALL_FACTOR`` heartbeat intervals (its writer died, or hangs). When it was refreshed is the heartbeat file's
    modification time where :func:`.meta.statuses` found it (the storage's clock, shared by every writing host), else
    the writer's own ``updated_at`` (a skewed writer clock then shifts the verdict by the skew)."""
    state = str(status.get("state", "running"))
    if state == "running":
        interval = _positive(status.get("interval_s")) or DEFAULT_HEARTBEAT_S  # a heartbeat is data its writer chose
        stamped = _positive(status.get(run_meta.STAMPED_AT)) or _positive(status.get("updated_at")) or 0.0
        if now - stamped > STALL_FACTOR * interval:
            return "stalled"
    return state


def _positive(value: object) -> float | None:
    """``value`` when it is a finite positive number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= sys.float_info.max:
        return None  # an int past float's range (a hand-edited or hostile status file) too: float() would raise
    return float(value)


def _run_state(statuses: list[dict[str, Any]], now: float) -> str:
    """Aggregate per-rank heartbeats into one state (see the module docstring)."""
    if not statuses:
        return "imported"
    states = [rank_state(st, now) for st in statuses if LEFT_BEHIND not in st]
    for state in STATE_PRECEDENCE:
        if state in states:
            return state
    return "finished"


_RESUMES_SQL = (
    "SELECT run, _writer, step, wall_time FROM events "
    "WHERE kind = 'resume' AND step IS NOT NULL AND isfinite(wall_time) AND _writer IS NOT NULL"
)


def _ended_before_another(statuses: list[tuple[int, dict[str, Any]]]) -> dict[int, tuple[str | None, float]]:
    """``rank -> (session, last heartbeat time)`` of the ranks whose last heartbeat is older than the start of
    another rank's session (times of the writers' own clocks, as the resume event's): of an earlier launch."""
    starts = [(rank, t) for rank, st in statuses if (t := _positive(st.get("started_at"))) is not None]
    out: dict[int, tuple[str | None, float]] = {}
    for rank, st in statuses:
        ended = _positive(st.get("updated_at"))
        if ended is not None and any(t > ended for other, t in starts if other != rank):
            session = st.get("session")
            out[rank] = (session if isinstance(session, str) else None, ended)
    return out


def _left_behind(
    statuses: list[tuple[int, dict[str, Any]]], gone: Mapping[int, int]
) -> list[tuple[int, dict[str, Any]]]:
    """``statuses`` with each rank a resume left behind (``gone``: rank -> resume step) marked :data:`LEFT_BEHIND`,
    its last step and latest values cut below the resume's step (the rows there were replaced)."""
    if not gone:
        return statuses
    out = []
    for rank, st in statuses:
        if rank in gone:
            cut = gone[rank]
            st = {**st, LEFT_BEHIND: cut}
            last = st.get("last_step")
            if isinstance(last, int) and last >= cut:
                st["last_step"] = None
            if isinstance(st.get("latest"), Mapping):
                st["latest"] = {k: v for k, v in st["latest"].items() if _step_of(v) is not None and _step_of(v) < cut}
        out.append((rank, st))
    return out


def _step_of(pair: object) -> int | None:
    try:
        return int(pair[0])  # type: ignore[index]
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _mtime(path: StorePath) -> float | None:
    try:
        return fs.mtime(path)
    except OSError:
        return None


def _runs_table(infos: list[RunInfo]) -> pa.Table:
    """The ``runs`` view of user SQL (:data:`~entropy_watch.store.query.RUNS_COLUMNS`)."""
    values = ([i.name for i in infos], [i.state for i in infos], [i.last_step for i in infos],
              [i.updated_at for i in infos])  # fmt: skip
    types = (pa.string(), pa.string(), pa.int64(), pa.float64())
    return pa.table({c: pa.array(v, t) for c, v, t in zip(RUNS_COLUMNS, values, types, strict=True)})


STEADY_TRIES = 3  # reads of a run at most, should it be replaced during each


def read_steady(root: str | os.PathLike[str] | StorePath | None, run: str, read: Callable[[Store], T]) -> T:
    """``read(store)`` — several reads of ``run`` through a fresh :class:`Store` — as of one version of the run:
    done again (at most :data:`STEADY_TRIES` times in all) when the run's folder was swapped while it ran, as
    ``import --replace`` swaps it. Each read sees the old run or the new one; several reads spanning the swap mixed
    them (``show`` printed the old run's last step beside the new run's verdict in 11 of 50 reads during a loop of
    replacements). An object store has no folder to swap (its replacement is a delete after the PUTs): one try."""
    where = layout.default_root(root)
    for _ in range(STEADY_TRIES - 1):
        before = _generation(where, run)
        out = read(Store(root))
        if before is None or _generation(where, run) == before:
            return out
    return read(Store(root))


def _generation(root: StorePath, run: str) -> int | None:
    """The identity of ``run``'s folder (its inode): a replacement is a new folder. None on an object store."""
    if fs.is_object(root):
        return None
    try:
        return os.stat(layout.run_dir(root, run)).st_ino
    except OSError:
        return None
