"""Per-run summaries: the last step and the latest value of each canonical metric, without querying every run.

Listing runs must not cost a query per run: with one query per run over a store-wide view, ``entropy-watch ls`` grew
quadratically (100 runs: 12 s; 612 runs: over 120 s; issue 11). So the summary is written where it is known:

* a live writer (:class:`~entropy_watch.store.RunWriter`) tracks, per rank, the highest step and, for each canonical
  metric (:data:`~entropy_watch.store.writer.SUMMARY_NAMES`), the value at its highest step, over the segments it
  published, and puts them in every heartbeat (``_status/rank=<r>.json``: ``last_step``, ``latest``, and ``covers``:
  which segments they include, below). The recorder refreshes the heartbeat after each publish round;
* an import writes them into ``run.json`` as ``summary`` (imported runs have no heartbeat).

Reading is then one small JSON file per rank. Runs that carry neither (written by an older version or a foreign
tool) are summarised by *one* query over all of them together (:func:`query_summaries`), never one per run.

``latest`` maps a metric name to ``(value, step)``; across ranks the highest step wins, the lowest rank on ties.

**After a kill** (:func:`catch_up`). The heartbeat is written *after* the segments it summarises are published, so a
writer killed between a publish and its next heartbeat leaves a summary older than its rows, and nothing refreshed it:
the audit saw ``ls`` report step 1806 (entropy N/A after an earlier kill) of a run whose rows reached step 3178, still
so once the run was ``stalled``, while the docs promise a kill loses at most the last ``flush_secs`` of rows. Two
designs were weighed:

* **the summary inside the segment** (its Parquet footer): as durable as the rows by construction, both published by
  one rename (or one PUT). But listing would have to find and open each run's newest files in every table, on every
  run including finished ones: the per-run cost ``ls`` was rid of;
* **the heartbeat says what it covers** (chosen): ``covers`` maps a table to ``[next, open]``: the summary includes
  every segment of the heartbeat's ``session`` numbered below ``next`` except the numbers in ``open`` (reserved for
  a batch not yet published, which a retry may still publish). Any other segment of that session was published
  after the heartbeat, and is *known by its file name* (``seg-<session>-<seq>.parquet``).

So the reader corrects only ranks whose heartbeat says ``running`` (live, or a dead writer's ``stalled`` one); a rank
that closed wrote its last heartbeat after its last segment. For each such rank it lists the ``rank=<r>`` folder of
each table by name (segments are judged by their name, no footer read; parts, which may have merged uncovered
segments, cost one cached footer read each), and only when something is uncovered reads it, with ONE query over all
such ranks of the listing together: ``max(step)`` per table and, in ``scalars``, the value at the highest step per
name. With the heartbeat refreshed after each publish round that is at most one round's few small segments, and
usually nothing (no query at all).

Cost of listing: about two ``stat``/``read`` calls per run and rank, plus five folder listings per rank that never
closed (one LIST each on an object store; measured 0.07 ms a rank locally). Finished, failed, terminated,
interrupted and imported runs, and runs taken from ``_runs.parquet``, cost nothing more. A stalled run pays its
listings at every ``ls`` (readers never write the store, so the correction is not saved); once compaction merged its
uncovered segments into a part, that part is read filtered to their keys. A running heartbeat written before
``covers`` existed covers none of its session's segments (they are all read); one without ``latest`` (before
summaries) is summarised by :func:`query_summaries`, whose last step counts when it is higher. A restarted rank's new
session covers only its own segments, and starts its summary from its previous session's last heartbeat
(``RunWriter._continue_summary``): a resumed run is summarised over both.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from entropy_watch.store import fs, layout
from entropy_watch.store.files import PART_RE, SEG_RE, CoverageCache, FileRef, Key, Selection, file_ref, select_files
from entropy_watch.store.fs import StorePath
from entropy_watch.store.listing import is_plain_file
from entropy_watch.store.query import Binder, Cursors, read_locked, source_sql, with_retry
from entropy_watch.store.reads import keep_latest, replaced_sql
from entropy_watch.store.schema import TABLE_SCHEMAS, empty_table

Latest = dict[str, tuple[float, int]]  # name -> (value, step)


@dataclass
class RunInfo:
    """A run as listed by :meth:`~entropy_watch.store.Store.runs`. ``updated_at`` is Unix seconds (latest heartbeat,
    else run.json); ``latest`` maps a canonical metric to ``(value, step)`` (see the module docstring)."""

    name: str
    meta: dict[str, Any]
    state: str
    last_step: int | None
    ranks: list[int] = field(default_factory=list)
    updated_at: float | None = None
    latest: Latest = field(default_factory=dict)
    error: str | None = None
    """Why the run could not be read (state :data:`UNREADABLE`), else None."""


UNREADABLE = "unreadable"
"""The state of a run whose folder this user may not read (another user's private run in a shared store): listed, with
the reason in :attr:`RunInfo.error`, beside the runs that can be read; a read of the run itself raises the error."""


def unreadable_info(run: str, exc: OSError) -> RunInfo:
    """The :class:`RunInfo` of ``run``, whose folders refused this user (``exc``)."""
    where = f": {exc.filename}" if exc.filename else ""
    return RunInfo(run, {}, UNREADABLE, None, error=f"permission denied{where}")


def merge_statuses(statuses: Iterable[tuple[int, Mapping[str, Any]]]) -> Latest | None:
    """``latest`` over the ranks' heartbeats, or None when some rank's heartbeat predates summaries."""
    out: Latest = {}
    for _, st in sorted(statuses, key=lambda rs: rs[0], reverse=True):  # lower ranks last: they win ties
        latest = st.get("latest")
        if not isinstance(latest, Mapping):
            return None
        merge_latest(out, latest)
    return out


def from_meta(meta: Mapping[str, Any]) -> tuple[int | None, Latest] | None:
    """``(last_step, latest)`` from an imported run's ``run.json`` ``summary``, or None when it has none."""
    summary = meta.get("summary")
    if not isinstance(summary, Mapping) or not isinstance(summary.get("latest"), Mapping):
        return None
    last = summary.get("last_step")
    out: Latest = {}
    merge_latest(out, summary["latest"])
    return (int(last) if isinstance(last, int) else None), out


_SUMMARY_SQL = f"""
    WITH {replaced_sql("TRUE")},
    kept AS (SELECT s.* FROM scalars s LEFT JOIN gone g ON g.run = s.run AND g._writer = s._writer
             WHERE s.step IS NOT NULL AND (g.s IS NULL OR s.step < g.s)),
    latest AS (SELECT * FROM kept {keep_latest()})
    SELECT run, name, max(step) AS step, arg_max(value, step) AS value FROM latest GROUP BY run, name
    ORDER BY run, name
"""
"""Per run and scalar name, the highest step and the value there, by the readers' rules: rows a resume replaced left
out (:func:`~.reads.replaced_sql`), and of the rows of one step the one :func:`~.reads.keep_latest` keeps."""


def query_summaries(reader: Any, runs: list[str], names: Iterable[str]) -> dict[str, tuple[int | None, Latest]]:
    """``run -> (last_step, latest)`` for ``runs`` by one query over their scalars (runs without summaries), by the
    rules every read applies (:data:`_SUMMARY_SQL`): ``ls`` listed the entropy a resume had replaced, and across
    ranks whichever value DuckDB met first (another after a compaction), where ``show`` read the kept one.

    ``reader`` is a :class:`~entropy_watch.store.Store` (its ``_read(runs, tables, sql, params)``); ``names`` are the
    metrics kept in ``latest``.
    """
    if not runs:
        return {}
    tbl = reader._read(runs, ["scalars", "events"], _SUMMARY_SQL)
    wanted = set(names)
    out: dict[str, tuple[int | None, Latest]] = {run: (None, {}) for run in runs}
    cols = [tbl.column(c).to_pylist() for c in ("run", "name", "value", "step")]
    for run, name, value, step in zip(*cols, strict=True):
        if step is None:
            continue
        last, latest = out[run]
        last = step if last is None else max(last, step)
        if name in wanted:
            latest[name] = (float("nan") if value is None else float(value), int(step))
        out[run] = (last, latest)
    return out


def merge_latest(out: Latest, latest: Mapping[str, Any]) -> None:
    """Fold ``{name: [step, value]}`` (the on-disk form) into ``out``; the higher step wins, later calls win ties."""
    for name, pair in latest.items():
        try:
            step, value = int(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        old = out.get(name)
        if old is None or step >= old[1]:
            out[str(name)] = (value, step)


# -- catching up after a kill (module docstring) ------------------------------------------------------------------
TABLES = layout.TABLES
# (max step, {scalar name: (step, value at that step)}, the latest row's wall_time or None)
Tail = tuple[int | None, dict[str, tuple[int, float]], float | None]
LAST_WALL = "last_wall_time"
"""Key :func:`fold_tail` sets in a heartbeat: the latest ``wall_time`` of the rows published after it (a restarted
rank's clock floor: ``RunWriter._continue_clock``)."""


@dataclass(frozen=True)
class Pending:
    """One rank whose heartbeat may not cover all its session's segments: ``covers`` maps a table to ``(next,
    open)`` (module docstring); a table missing from it covers nothing."""

    run: str
    rank: int
    session: str
    covers: Mapping[str, tuple[int, frozenset[int]]]

    def uncovered(self, table: str, key: Key) -> bool:
        """Whether the segment ``key`` of ``table`` holds rows the heartbeat's summary does not include."""
        writer, seq = key
        if writer != self.session:
            return False
        nxt, open_ = self.covers.get(table, (0, frozenset()))
        return seq >= nxt or seq in open_


def pending(run: str, rank: int, status: Mapping[str, Any]) -> Pending | None:
    """The :class:`Pending` of a rank from its heartbeat; None when it closed or predates summaries.

    A heartbeat with a summary but no ``covers`` (written by a version before ``covers`` existed) says nothing of
    what it includes: it covers none of its session's segments, which are all read. Trusted as it was, ``ls`` and
    ``show`` read "last step N/A" for good of a run such a version wrote for a few seconds before it was killed.
    """
    session, covers = status.get("session"), status.get("covers")
    if status.get("state", "running") != "running" or not isinstance(session, str):
        return None
    if covers is None and isinstance(status.get("latest"), Mapping):
        covers = {}  # before ``covers``: nothing is known to be included
    if not isinstance(covers, Mapping):
        return None
    parsed: dict[str, tuple[int, frozenset[int]]] = {}
    for table, entry in covers.items():
        try:
            nxt, open_ = entry
            parsed[str(table)] = (int(nxt), frozenset(int(s) for s in open_))
        except (TypeError, ValueError):
            return None  # unreadable: trust the summary as it is rather than guess
    return Pending(run, int(rank), session, parsed)


def catch_up(
    con: Cursors,
    lock: threading.Lock,
    root: StorePath,
    ranks: list[Pending],
    coverage: CoverageCache,
    names: Iterable[str],
) -> dict[tuple[str, int], Tail]:
    """``(run, rank) -> (max step, {name: (step, value)}, latest wall_time)`` over the segments ``ranks`` do not
    cover, for the ranks that have any; ``names`` are the scalars whose latest value is kept. One query at most,
    retried when a file vanished under it (compaction)."""
    if not ranks:
        return {}
    wanted = frozenset(names)

    folders = [(p, t, _folder(root, p, t)) for p in ranks for t in TABLES]

    def attempt() -> dict[tuple[str, int], Tail]:
        # listed without any lock first: in the usual case nothing is uncovered, and there is no query
        behind = [(p, t, folder) for p, t, folder in folders if not _uncovered(p, t, folder, coverage).empty]
        if not behind:
            return {}
        local = [] if fs.is_object(root) else [Path(folder) for _, _, folder in behind]
        with read_locked(local):  # listed again under the readers' lock: compaction deletes nothing until the end
            selections: dict[str, Selection] = {}
            for p, t, folder in behind:
                sel, found = selections.setdefault(t, Selection()), _uncovered(p, t, folder, coverage)
                sel.whole += found.whole
                sel.partial += found.partial
            selections = {t: sel for t, sel in selections.items() if not sel.empty}
            if not selections:
                return {}
            with lock:
                cur = con.cursor()
            try:
                return _tails(_query(cur, selections), wanted)
            finally:
                cur.close()

    return with_retry(attempt)


def fold_tail(status: dict[str, Any], tail: Tail) -> None:
    """Fold a rank's :data:`Tail` into its heartbeat ``status`` (in place): the higher step wins, the tail (published
    later) wins ties; its latest row time is :data:`LAST_WALL`."""
    last, latest, wall = tail
    if wall is not None:
        status[LAST_WALL] = wall
    old = status.get("last_step")
    if last is not None and (not isinstance(old, int) or last > old):
        status["last_step"] = last
    merged = dict(status["latest"]) if isinstance(status.get("latest"), Mapping) else {}
    for name, (step, value) in latest.items():
        try:
            old_step = int(merged[name][0]) if name in merged else None
        except (TypeError, ValueError, IndexError):
            old_step = None
        if old_step is None or step >= old_step:
            merged[name] = [step, value]
    status["latest"] = merged


def _folder(root: StorePath, p: Pending, table: str) -> StorePath | str:
    """The ``rank=<r>`` folder of ``table`` for ``p``: a plain string for a local root (building ``Path`` objects
    cost more than listing the folder: five per rank, at every listing)."""
    if fs.is_object(root):
        return layout.table_dir(root, p.run, table, p.rank)
    return f"{root}{os.sep}run={p.run}{os.sep}table={table}{os.sep}rank={p.rank}"


def _uncovered(p: Pending, table: str, folder: StorePath | str, coverage: CoverageCache) -> Selection:
    """The files in ``folder`` holding segments of ``table`` that ``p`` does not cover, each such key read once
    (parts win over segments, as in every read) and only those keys."""
    refs: list[FileRef] = []
    for name in _names(folder):
        seg = SEG_RE.match(name)
        if seg is not None and not p.uncovered(table, (seg.group(1), int(seg.group(2)))):
            continue  # covered (or another session's): decided by the name alone, nothing is opened
        if seg is None and PART_RE.match(name) is None:
            continue
        path = Path(folder) / name if isinstance(folder, str) else folder / name
        if is_plain_file(path) and (ref := file_ref(path, coverage)) is not None:  # no link, FIFO (fs.listdir)
            refs.append(ref)
    out = Selection()
    if not refs:
        return out
    sel = select_files(refs)
    for ref, keys in [(ref, ref.keys) for ref in sel.whole] + sel.partial:
        want = frozenset(k for k in keys if p.uncovered(table, k))
        if want == ref.keys:
            out.whole.append(ref)
        elif want:
            out.partial.append((ref, want))
    return out


def _names(folder: StorePath | str) -> list[str]:
    """File names in a folder, names only (a local ``os.listdir`` runs in C); [] when it does not exist."""
    try:
        if not isinstance(folder, str) and fs.is_object(folder):
            return [e.name for e in fs.listdir(folder) if not e.is_dir]
        rank_dir = Path(folder)
        if any(fs.is_link(d) for d in (rank_dir, rank_dir.parent, rank_dir.parent.parent)):  # run=/table=/rank=
            return []  # a link inside the store is not followed (fs.listdir)
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _query(cur: duckdb.DuckDBPyConnection, selections: dict[str, Selection]) -> pa.Table:
    """``run, rank, name, step, value, wall_time``: per scalar name its highest step and the value there, of the rows
    of that step the one the readers keep (:data:`~.reads.LATEST_FIRST` within a rank: the latest ``wall_time``, then
    segment; a step logged twice within one flush sits twice in one segment, and ``ls`` listed whichever row DuckDB
    met first while ``show`` read the later one), per other table its highest step (``name`` null); each with its
    latest ``wall_time`` (null in a table without one)."""
    binder = Binder("c", con=cur)
    ctes, parts = [], []
    for table, sel in selections.items():
        cur.register(f"_empty_{table}", empty_table(table))
        ctes.append(f"{table} AS ({source_sql(sel, f'_empty_{table}', binder)})")
        wall = "max(wall_time)" if "wall_time" in TABLE_SCHEMAS[table].names else "CAST(NULL AS DOUBLE)"
        if table == "scalars":
            parts.append(
                "SELECT run, rank, name, max(step) AS step, arg_max(value, (step, wall_time IS NOT NULL, "
                "coalesce(wall_time, 0), _writer, _seq)) AS value, "
                f"{wall} AS wall_time FROM scalars WHERE step IS NOT NULL GROUP BY run, rank, name"
            )
        else:
            parts.append(
                "SELECT run, rank, CAST(NULL AS VARCHAR) AS name, max(step) AS step, CAST(NULL AS DOUBLE) AS value, "
                f"{wall} AS wall_time FROM {table} WHERE step IS NOT NULL GROUP BY run, rank"
            )
    sql = f"WITH {', '.join(ctes)} {' UNION ALL '.join(parts)}"
    return cur.sql(sql, params=binder.values).to_arrow_table()


def _tails(tbl: pa.Table, wanted: frozenset[str]) -> dict[tuple[str, int], Tail]:
    out: dict[tuple[str, int], Tail] = {}
    cols = [tbl.column(c).to_pylist() for c in ("run", "rank", "name", "step", "value", "wall_time")]
    for run, rank, name, step, value, wall_time in zip(*cols, strict=True):
        if step is None:
            continue
        last, latest, wall = out.get((run, rank), (None, {}, None))
        last = int(step) if last is None else max(last, int(step))
        if name in wanted:
            latest[name] = (int(step), float("nan") if value is None else float(value))
        if wall_time is not None and math.isfinite(wall_time):
            wall = float(wall_time) if wall is None else max(wall, float(wall_time))
        out[(run, rank)] = (last, latest, wall)
    return out
