"""The store's one read interface: every query the app, the CLI, the monitor and the analysis make, written once.

:class:`RunReader` is the protocol; :class:`~entropy_watch.store.Store` (one-shot: lists and reads the run's Parquet
files on each call) and :class:`~entropy_watch.store.TailReader` (incremental: an in-memory mirror that ingests only
new files) both implement it by inheriting :class:`SqlReads`, which holds the SQL. They differ only in
``_read(runs, tables, sql, params)``: how the relations ``scalars``, ``hist``, ``tokens``, ``alerts`` and ``events``
(data columns plus ``run``, ``rank``, ``_writer``, ``_seq``) are bound before ``sql`` runs. Callers never see the
private columns and never write SQL of their own against the store.

**The de-duplication rule** (:data:`LATEST_FIRST`, the one place it is written): a step logged more than once (a
resumed run re-logging steps, several ranks, a name logged twice) keeps one value per (run, name, step): the lowest
rank (rank 0 holds all-reduced values when ranks reduce before logging), then the latest ``wall_time``, then the
latest writer session, then the latest segment. Null values read as NaN. Two rows of one step in one segment (a
step logged twice within one flush) are repeats too: ``series_many``, ``downsampled``... returned both, and the
analysis read the step twice.

**A step's histogram and token sample** (:data:`LATEST_WRITE`, :func:`keep_latest_write`): within one rank they come
from one write, the latest segment holding the step (the latest writer session, then its latest segment: the write
whose scalars the rule above keeps, as a rank's sessions and segments follow its clock); across ranks histograms add
up (ranks see different tokens). A step logged twice by one writer (micro-batches logged one by one, a hook firing
twice) read a histogram of both writes, twice the step's tokens, beside the last write's ``entropy/mean``. Rows of
``hist`` or ``tokens`` carry no time of their own, so two writes of one step published in *one* segment cannot be
told apart here and are read together (the writer keeps one write per step in a segment).

**What a resume replaced** (:func:`replaced_sql`, the one place it is written): a ``resume`` event says the run went
on from a checkpoint at its step, so the rows an earlier writer session logged at that step or later belong to a
trajectory the run no longer has. They are left out of every read of ``scalars``, ``hist`` and ``tokens``, and so
are the alerts raised on them (:meth:`SqlReads.alerts`): a session that crashed at step 100 and was resumed at step
60 read 60–80 resumed, then 81–100 from before, until the resumed training passed step 100 (its entropy jumping
back, its histograms counted twice, a critical alert at step 95 beside a chart ending at 80). An earlier session is
one whose last scalar row was written before the event, by another writer session that logs scalars itself (a
concurrent evaluation process that goes on writing after the resume keeps its rows; an event added afterwards by a
process that logs nothing replaces nothing; an import, one session, writes its own resume events and leaves out what
they replaced itself). TensorBoard hides such points the same way (``purge_orphaned_data``).

Downsampled reads (:meth:`SqlReads.downsampled`, :meth:`SqlReads.heatmap`) leave DuckDB already reduced: the steps of
the window are cut into equal-width buckets and each gives its mean, min and max (a min/max band keeps the spikes
that point-picking would hide in noisy RL metrics; STORE_AND_APP §5).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from entropy_watch.store.files import CoverageCache, select_files
from entropy_watch.store.query import (
    Binder,
    Cursors,
    listable_runs,
    read_locked,
    source_sql,
    table_dirs,
    table_files,
    with_retry,
)
from entropy_watch.store.schema import empty_table

if TYPE_CHECKING:
    from entropy_watch.store.reader import RunInfo

BIG = int(np.iinfo(np.int64).max)
ALL_STEPS: tuple[int, int] = (-BIG, BIG)
"""A window covering every step (inclusive bounds)."""
MAX_POINTS = 2000
"""Points per downsampled trace (100k raw points are 2.2 MB of Plotly JSON per chart; 2k are 50 kB)."""
MAX_COLS = 1000
"""Step columns of a bucketed histogram matrix."""
CONTEXT_TOKENS = 12
"""Sampled neighbours on each side shown around a token in :meth:`SqlReads.top_tokens`."""

TOKEN_ORDER = "entropy DESC, step, rank, seq, pos"
"""Order of sampled tokens in :meth:`SqlReads.top_tokens`: highest entropy first, ties the same way every time."""

LATEST_FIRST = "rank ASC, wall_time DESC NULLS LAST, _writer DESC, _seq DESC"
"""Order of the rows of one (run, name, step): the first one is the value kept (see the module docstring)."""


LATEST_WRITE = "_writer DESC, _seq DESC"
"""Order of the segments of one rank holding rows of a step in ``hist`` or ``tokens``: the first is the write kept."""


def keep_latest(partition: str = "run, name, step") -> str:
    """The ``QUALIFY`` clause that applies the de-duplication rule to ``scalars`` rows."""
    return f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {LATEST_FIRST}) = 1"


def keep_latest_write(partition: str = "run, rank, step") -> str:
    """The ``QUALIFY`` clause that keeps, of ``hist`` or ``tokens`` rows, those of each rank's latest write of a step
    (every row of its segment: :data:`LATEST_WRITE`)."""
    return f"QUALIFY dense_rank() OVER (PARTITION BY {partition} ORDER BY {LATEST_WRITE}) = 1"


def replaced_sql(runs: str) -> str:
    """Common table expressions ending in ``gone(run, _writer, s)``: the writer sessions whose rows at step ``s`` or
    later a later ``resume`` replaced (see the module docstring), among the runs the predicate ``runs`` selects.
    ``went``: the resumes that count, those of a session that logged scalars itself (the resumed training; an event
    written afterwards by a process that logs nothing, annotating the run, replaces nothing)."""
    return f"""res AS (SELECT run, step, wall_time, _writer FROM events
                    WHERE {runs} AND kind = 'resume' AND isfinite(wall_time)),
           ends AS (SELECT run, _writer, max(wall_time) AS t FROM scalars
                    WHERE {runs} AND run IN (SELECT run FROM res) GROUP BY ALL),
           went AS (SELECT res.* FROM res JOIN ends USING (run, _writer)),
           gone AS (SELECT ends.run, ends._writer, min(went.step) AS s FROM ends JOIN went
                    ON went.run = ends.run AND went._writer <> ends._writer AND coalesce(ends.t, 0) < went.wall_time
                    GROUP BY ALL)"""


@dataclass(frozen=True)
class RowRules:
    """How a read of one run's rows applies the store's rules: ``where`` (an SQL predicate on ``step`` and
    ``_writer``, with ``params``) leaves out what a resume replaced; ``qualify`` (a ``QUALIFY`` clause, or "" when no
    step of any name can repeat) keeps one row per (name, step)."""

    where: str = "TRUE"
    qualify: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trace:
    """One downsampled series. ``steps`` (n,) float64 (bucket mean step), ``mean`` (n,) the bucket mean (the value
    itself when not aggregated), ``lo``/``hi`` (n,) the bucket min/max; ``width`` steps per bucket (1 = raw)."""

    name: str
    steps: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    width: int = 1

    @property
    def aggregated(self) -> bool:
        return self.width > 1

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    def last(self) -> float | None:
        """The newest finite value, or None."""
        ok = np.flatnonzero(np.isfinite(self.mean))
        return float(self.mean[ok[-1]]) if ok.size else None


@dataclass
class Heatmap:
    """Token-entropy histogram over steps: ``steps`` (m,) bucket start steps, ``counts`` (m, n_bins) token counts
    summed over ranks and the bucket's steps, ``width`` steps per column."""

    steps: np.ndarray
    counts: np.ndarray
    width: int = 1


class RunReader(Protocol):
    """What every reader of the store offers (``Store`` and ``TailReader``). Steps are int64, values float64 nats
    where entropy; windows are inclusive ``(lo, hi)`` step bounds (:data:`ALL_STEPS` for everything)."""

    root: Path

    def runs(self) -> list[RunInfo]: ...
    def run_info(self, run: str) -> RunInfo: ...
    def run_meta(self, run: str) -> dict[str, Any]: ...
    def versions(self) -> dict[str, tuple[int, int]]: ...
    def scalar_names(self, run: str) -> list[str]: ...
    def series(self, run: str, name: str, *, rank: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def series_many(self, run: str, names: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]: ...
    def ends(self, run: str, names: Sequence[str]) -> dict[str, tuple[tuple[float, int], tuple[float, int]]]: ...
    def downsampled(
        self, run: str, names: Sequence[str], window: tuple[int, int] = ALL_STEPS, max_points: int = MAX_POINTS
    ) -> dict[str, Trace]: ...
    def paired(
        self, run: str, x: str, y: str, window: tuple[int, int] = ALL_STEPS, max_points: int = MAX_POINTS
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def delta(
        self, run: str, name: str, window: tuple[int, int] = ALL_STEPS, max_points: int = MAX_POINTS
    ) -> Trace | None: ...
    def hist_matrix(self, run: str, n_bins: int) -> tuple[np.ndarray, np.ndarray] | None: ...
    def heatmap(
        self, run: str, n_bins: int, window: tuple[int, int] = ALL_STEPS, max_cols: int = MAX_COLS
    ) -> Heatmap: ...
    def events(self, run: str) -> list[dict[str, Any]]: ...
    def alerts(self, run: str) -> list[dict[str, Any]]: ...
    def top_tokens(
        self,
        run: str,
        window: tuple[int, int] = ALL_STEPS,
        *,
        min_entropy: float = 0.0,
        text: str = "",
        limit: int = 25,
        spread: bool = True,
    ) -> pa.Table: ...
    def sparklines(self, name: str, points: int = 60) -> dict[str, list[float]]: ...


def _np(tbl: pa.Table, col: str, dtype: Any = np.float64) -> np.ndarray:
    arr = tbl.column(col)
    if pa.types.is_floating(arr.type):
        arr = arr.fill_null(np.nan)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def bucket_counts(tbl: pa.Table, n_bins: int, max_cols: int) -> Heatmap:
    """Sum the ``hist`` rows ``tbl`` (``step``, ``bin`` in ``[0, n_bins)``, ``c``) into a :class:`Heatmap`: columns
    of ``w`` steps from the first step (``w`` = 1 when ``max_cols`` ≤ 0, else the fewest steps that make ≤
    ``max_cols`` columns), only those holding rows, ascending. A cell whose rows all have a null count reads NaN (as
    SQL's ``sum`` reads it), nulls are left out of the others; the sums are exact and then rounded to float64."""
    if tbl.num_rows == 0:
        return Heatmap(np.zeros(0, np.int64), np.zeros((0, n_bins)), 1)
    steps = np.asarray(tbl.column("step").to_numpy(), dtype=np.int64)
    raw = tbl.column("c")
    valid = None if raw.null_count == 0 else np.asarray(raw.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    counts = np.asarray(raw.fill_null(0).to_numpy(), dtype=np.int64)
    s0, s1 = int(steps.min()), int(steps.max())
    w = 1 if max_cols <= 0 else max(1, int(np.ceil(float(s1 - s0 + 1) / float(max_cols))))
    idx = steps - s0  # each row's column from the first; the arrays of every row are changed in place from here on
    if w > 1:
        idx //= w
    span = (s1 - s0) // w + 1
    if span <= 8 * idx.size + 4096:  # dense column ids: no sort
        held = np.zeros(span, dtype=bool)
        held[idx] = True
        cols = np.flatnonzero(held)
        flat = (np.cumsum(held) - 1)[idx]
    else:  # steps far apart (a span of a billion steps): sort them
        cols, flat = np.unique(idx, return_inverse=True)
    flat *= n_bins
    flat += tbl.column("bin").to_numpy()
    size = cols.size * n_bins
    big = max(-int(counts.min()), int(counts.max())) * counts.size
    if big < 2**52 or float(np.abs(counts.astype(np.float64)).sum()) < 2.0**52:  # every partial sum is exact
        out = np.bincount(flat, weights=counts, minlength=size)
    else:
        exact = np.zeros(size, dtype=object)
        np.add.at(exact, flat, counts.astype(object))
        out = exact.astype(np.float64)
    if valid is not None:
        out[(np.bincount(flat, minlength=size) > 0) & (np.bincount(flat[valid], minlength=size) == 0)] = np.nan
    return Heatmap(s0 + cols.astype(np.int64) * w, out.reshape(cols.size, n_bins), w)


def query_files(
    con: Cursors,
    lock: threading.Lock,
    root: Path,
    names: Callable[[], list[str]],
    tables: Sequence[str],
    coverage: CoverageCache,
    sql: str,
    params: dict[str, Any] | None,
) -> pa.Table:
    """Run ``sql`` with each of ``tables`` bound to its selected files (each segment once) for the runs ``names()``
    lists. Files are listed afresh on each attempt, under the shared read lock, and retried when one vanished."""

    def attempt() -> pa.Table:
        runs = names()
        try:
            return read(runs)
        except PermissionError:  # a run private to its writer: the others are read, it is named (warning)
            readable = listable_runs(root, runs, tables)
            if not readable or readable == runs:  # nothing else to read: the error itself
                raise
            return read(readable)

    def read(runs: list[str]) -> pa.Table:
        with lock:
            cur = con.cursor()
        try:
            with read_locked(d for t in tables for d in table_dirs(root, runs, t)):
                binder = Binder("f", con=cur)
                ctes = []
                for table in tables:
                    sel = select_files(table_files(root, runs, table, coverage))
                    cur.register(f"_empty_{table}", empty_table(table))
                    ctes.append(f"{table} AS ({source_sql(sel, f'_empty_{table}', binder)})")
                sql_all = with_ctes(", ".join(ctes), sql)
                return cur.sql(sql_all, params={**binder.values, **(params or {})}).to_arrow_table()
        finally:
            cur.close()

    return with_retry(attempt)


def with_ctes(ctes: str, sql: str) -> str:
    """Prefix ``sql`` (which may itself start with ``WITH``) with the common table expressions ``ctes``."""
    if not ctes:
        return sql
    body = sql.lstrip()
    if body[:4].upper() == "WITH":
        return f"WITH {ctes}, {body[4:].lstrip()}"
    return f"WITH {ctes} {body}"


class SqlReads:
    """The queries of :class:`RunReader`, over relations bound by the subclass's ``_read``."""

    root: Path

    def _read(
        self, runs: Sequence[str] | None, tables: Sequence[str], sql: str, params: dict[str, Any] | None = None
    ) -> pa.Table:
        """Run ``sql`` with the relations ``tables`` holding the rows of ``runs`` (None: every run)."""
        raise NotImplementedError

    # -- change tokens and names ---------------------------------------------------------------------------------
    def versions(self) -> dict[str, tuple[int, int]]:
        """``run -> (scalar rows, newest step)`` for every run with scalars: a cheap per-run change token."""
        tbl = self._read(None, ["scalars"], "SELECT run, count(*) AS n, max(step) AS s FROM scalars GROUP BY run")
        cols = (tbl.column(c).to_pylist() for c in ("run", "n", "s"))
        return {str(r): (int(n), int(s)) for r, n, s in zip(*cols, strict=True) if s is not None}

    def scalar_names(self, run: str) -> list[str]:
        """Distinct scalar names logged by ``run``, sorted."""
        sql = "SELECT DISTINCT name FROM scalars WHERE run = $run ORDER BY name"
        return [str(n) for n in self._read([run], ["scalars"], sql, {"run": run}).column("name").to_pylist()]

    # -- full-resolution series ----------------------------------------------------------------------------------
    def series(self, run: str, name: str, *, rank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One value per step of scalar ``name`` (the de-duplication rule): ``(steps int64, values float64)``,
        ascending. ``rank`` restricts to one rank's rows."""
        where = "AND rank = $rank" if rank is not None else ""
        rules = self._rules(run, dedupe=False)
        sql = f"""SELECT step, value FROM scalars WHERE run = $run AND name = $name {where} AND {rules.where}
                  {keep_latest("step")} ORDER BY step"""
        params: dict[str, Any] = {"run": run, "name": name, **({"rank": int(rank)} if rank is not None else {})}
        params.update(rules.params)
        tbl = self._read([run], ["scalars"], sql, params)
        return _np(tbl, "step", np.int64), _np(tbl, "value")

    def series_many(self, run: str, names: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Full-resolution ``name -> (steps int64, values float64)`` of each logged name among ``names``."""
        if not names:
            return {}
        rules = self._rules(run)
        # each row's name as its position in ``names`` (1-based): 1.3M names as Python strings, and one comparison
        # of them per name, cost 0.4 s of the read at 100k steps
        sql = f"""SELECT list_position($names, name) AS k, step, value FROM scalars
                  WHERE run = $run AND list_contains($names, name) AND {rules.where} {rules.qualify} ORDER BY k, step"""
        tbl = self._read([run], ["scalars"], sql, {"run": run, "names": list(names), **rules.params})
        if tbl.num_rows == 0:
            return {}
        keys = _np(tbl, "k", np.int64)
        steps, values = _np(tbl, "step", np.int64), _np(tbl, "value")
        cuts = np.searchsorted(keys, np.arange(len(names) + 2))  # rows of names[k - 1]: cuts[k]:cuts[k + 1]
        first: dict[str, int] = {}
        for k, n in enumerate(names, start=1):
            first.setdefault(n, k)
        return {
            n: (steps[cuts[k] : cuts[k + 1]].copy(), values[cuts[k] : cuts[k + 1]].copy())
            for n, k in first.items()
            if cuts[k + 1] > cuts[k]
        }

    def ends(self, run: str, names: Sequence[str]) -> dict[str, tuple[tuple[float, int], tuple[float, int]]]:
        """``name -> ((value, step) at its first step, (value, step) at its last)`` of each logged name among
        ``names`` (the store's rules applied, as :meth:`series` reads them), without reading the whole series."""
        if not names:
            return {}
        rules = self._rules(run)
        sql = f"""
            WITH s AS (SELECT run, name, step, value, rank, wall_time, _writer, _seq FROM scalars
                       WHERE run = $run AND list_contains($names, name) AND {rules.where} {rules.qualify})
            SELECT name, arg_min(value, step) AS v0, min(step) AS s0, arg_max(value, step) AS v1, max(step) AS s1
            FROM s GROUP BY name ORDER BY name
        """
        tbl = self._read([run], ["scalars"], sql, {"run": run, "names": list(names), **rules.params})
        return {r["name"]: ((r["v0"], r["s0"]), (r["v1"], r["s1"])) for r in tbl.to_pylist()}

    def _rules(self, run: str, *, dedupe: bool = True, table: str = "scalars") -> RowRules:
        """:class:`RowRules` of ``run``'s rows of ``table``: what its resumes replaced (:func:`replaced_sql`), and with
        ``dedupe`` the clause that keeps one row per step when some step can repeat (:func:`keep_latest` in
        ``scalars``, :func:`keep_latest_write` in ``hist`` and ``tokens``). Memoised while the data cannot have changed.

        Each part costs a query only when it can matter: the replaced rows are looked for only in a run with a resume
        event (a look at the small events table first, ~2 ms), and repeats are looked for only when ``dedupe``
        (:meth:`_repeats`: one aggregate per segment, while the window costs ~1 s per million rows, so it runs only
        when needed).
        """
        token = self._cache_token()
        memo: dict[tuple[str, bool, str], tuple[Any, RowRules]] = self.__dict__.setdefault("_rules_memo", {})
        key = (run, dedupe, table)
        if token is not None and key in memo and memo[key][0] == token:
            return memo[key][1]
        rules = RowRules()
        if dedupe and self._repeats(run, table):
            rules = RowRules(qualify=keep_latest() if table == "scalars" else keep_latest_write())
        if self._resumed(run):
            sql = f"""WITH {replaced_sql("run = $run")}
                      SELECT list(_writer ORDER BY _writer) AS writers, list(s ORDER BY _writer) AS steps FROM gone"""
            gone = self._read([run], ["scalars", "events"], sql, {"run": run}).to_pylist()[0]
            if gone["writers"]:  # step < the step the writer's rows were replaced from (none: BIG)
                where = "step < coalesce($gone_steps[list_position($gone_writers, _writer)], $gone_none)"
                params = {"gone_writers": gone["writers"], "gone_steps": gone["steps"], "gone_none": BIG}
                rules = RowRules(where, rules.qualify, params)
        if token is not None:
            memo[key] = (token, rules)
        return rules

    def _resumed(self, run: str) -> bool:
        """Whether ``run`` has a ``resume`` event (one look at the small events table)."""
        sql = "SELECT count(*) AS n FROM events WHERE run = $run AND kind = 'resume'"
        return bool(self._read([run], ["events"], sql, {"run": run}).column("n")[0].as_py())

    def _repeats(self, run: str, table: str = "scalars") -> bool:
        """Whether some step of ``run`` may be held twice in ``table`` (:meth:`_rules`): in ``scalars``, two segments
        whose step ranges of a name overlap, whatever their ranks, or one segment holding more rows of a name than its
        step range has steps (a step logged twice within one flush, as a live writer's segments hold consecutive
        steps); in ``hist`` and ``tokens``, two segments of one rank whose step ranges overlap (ranks' rows of a step
        add up). One aggregate per segment (72 ms at 2.5M scalar rows): an exact count of distinct steps per segment
        cost 540 ms, more than most reads it would spare. So a name logged twice for one step inside one segment
        that also skips steps (``{10, 20, 20}``) is not detected; :meth:`series` applies the rule always."""
        if table == "scalars":
            sql = """
                WITH seg AS (SELECT name, _writer, _seq, rank, min(step) AS lo, max(step) AS hi,
                                    count(step) > max(step) - min(step) + 1 AS twice
                             FROM scalars WHERE run = $run GROUP BY ALL)
                SELECT (SELECT count(*) FROM seg WHERE twice) + (SELECT count(*) FROM seg a JOIN seg b
                         ON a.name = b.name AND a.lo <= b.hi AND b.lo <= a.hi
                        AND (a._writer, a._seq, a.rank) < (b._writer, b._seq, b.rank)) AS n
            """
        else:
            sql = f"""
                WITH seg AS (SELECT _writer, _seq, rank, min(step) AS lo, max(step) AS hi
                             FROM {table} WHERE run = $run GROUP BY ALL)
                SELECT count(*) AS n FROM seg a JOIN seg b ON a.rank = b.rank AND a.lo <= b.hi AND b.lo <= a.hi
                 AND (a._writer, a._seq) < (b._writer, b._seq)
            """
        return bool(self._read([run], [table], sql, {"run": run}).column("n")[0].as_py())

    def _cache_token(self) -> Any:
        """A value that changes whenever the data may have (None: no such value, nothing is memoised)."""
        return None

    # -- downsampled series --------------------------------------------------------------------------------------
    def downsampled(
        self, run: str, names: Sequence[str], window: tuple[int, int] = ALL_STEPS, max_points: int = MAX_POINTS
    ) -> dict[str, Trace]:
        """Series ``names`` of ``run`` within ``window``, each ≤ ``max_points`` bucket means with min/max bands.
        Names without data are absent. Non-finite values are left out of the bucket statistics."""
        if not names:
            return {}
        rules = self._rules(run)
        sql = f"""
            WITH s AS (
                SELECT run, name, step, value, rank, wall_time, _writer, _seq FROM scalars
                WHERE run = $run AND list_contains($names, name) AND step BETWEEN $lo AND $hi AND {rules.where}
                {rules.qualify}
            ), span AS (
                SELECT name, min(step) AS s0,
                       greatest(1, CAST(ceil((max(step) - min(step) + 1) / $maxp) AS BIGINT)) AS w
                FROM s GROUP BY name
            )
            SELECT s.name, any_value(span.w) AS w, avg(s.step) AS step,
                   avg(s.value) FILTER (WHERE isfinite(s.value)) AS mean,
                   min(s.value) FILTER (WHERE isfinite(s.value)) AS lo,
                   max(s.value) FILTER (WHERE isfinite(s.value)) AS hi
            FROM s JOIN span USING (name)
            GROUP BY s.name, (s.step - span.s0) // span.w
            ORDER BY s.name, step
        """
        params = {"run": run, "names": list(names), "lo": window[0], "hi": window[1], "maxp": float(max_points)}
        tbl = self._read([run], ["scalars"], sql, {**params, **rules.params})
        out: dict[str, Trace] = {}
        if tbl.num_rows == 0:
            return out
        col = np.asarray(tbl.column("name").to_pylist(), dtype=object)
        steps, mean, lo, hi = (_np(tbl, c) for c in ("step", "mean", "lo", "hi"))
        widths = _np(tbl, "w", np.int64)
        for name in names:
            sel = col == name
            if sel.any():
                out[name] = Trace(name, steps[sel], mean[sel], lo[sel], hi[sel], int(widths[sel][0]))
        return out

    def paired(
        self, run: str, x: str, y: str, window: tuple[int, int] = ALL_STEPS, max_points: int = MAX_POINTS
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, x, y)`` at the steps where both scalars are finite; bucket means of consecutive pairs when there
        are more than ``max_points`` (for scatter plots such as reward vs entropy)."""
        rules = self._rules(run)
        sql = f"""
            WITH s AS (
                SELECT run, name, step, value, rank, wall_time, _writer, _seq FROM scalars
                WHERE run = $run AND name IN ($x, $y) AND step BETWEEN $lo AND $hi AND isfinite(value)
                  AND {rules.where} {rules.qualify}
            ), j AS (
                SELECT step, max(value) FILTER (WHERE name = $x) AS x, max(value) FILTER (WHERE name = $y) AS y
                FROM s GROUP BY step HAVING count(*) = 2
            ), span AS (SELECT greatest(1, CAST(ceil(count(*) / $maxp) AS BIGINT)) AS k FROM j),
            r AS (SELECT j.*, row_number() OVER (ORDER BY step) - 1 AS i FROM j)
            SELECT avg(step) AS step, avg(x) AS x, avg(y) AS y FROM r, span GROUP BY i // span.k ORDER BY step
        """
        params = {"run": run, "x": x, "y": y, "lo": window[0], "hi": window[1], "maxp": float(max_points)}
        tbl = self._read([run], ["scalars"], sql, {**params, **rules.params})
        return _np(tbl, "step"), _np(tbl, "x"), _np(tbl, "y")

    def delta(
        self, run: str, name: str, window: tuple[int, int] = ALL_STEPS, max_points: int = MAX_POINTS
    ) -> Trace | None:
        """Observed change of scalar ``name`` per step: ``(value[next] − value[step]) / (next − step)`` at ``step``,
        ``next`` being the next logged step (the change the updates from ``step`` on caused; a log every 5 steps, as
        TRL's, reads per step like the predicted ΔH, not per 5 steps), bucketed like :meth:`downsampled`. None
        without two finite points."""
        rules = self._rules(run)
        sql = f"""
            WITH s AS (
                SELECT run, name, step, value, rank, wall_time, _writer, _seq FROM scalars
                WHERE run = $run AND name = $name AND isfinite(value) AND {rules.where} {rules.qualify}
            ), d AS (SELECT step, (lead(value) OVER w - value) / (lead(step) OVER w - step) AS dv
                     FROM s WINDOW w AS (ORDER BY step)),
            win AS (SELECT * FROM d WHERE dv IS NOT NULL AND step BETWEEN $lo AND $hi),
            span AS (SELECT min(step) AS s0,
                            greatest(1, CAST(ceil((max(step) - min(step) + 1) / $maxp) AS BIGINT)) AS w FROM win)
            SELECT any_value(span.w) AS w, avg(win.step) AS step, avg(dv) AS mean, min(dv) AS lo, max(dv) AS hi
            FROM win, span GROUP BY (win.step - span.s0) // span.w ORDER BY step
        """
        params = {"run": run, "name": name, "lo": window[0], "hi": window[1], "maxp": float(max_points)}
        tbl = self._read([run], ["scalars"], sql, {**params, **rules.params})
        if tbl.num_rows == 0:
            return None
        cols = (_np(tbl, c) for c in ("step", "mean", "lo", "hi"))
        return Trace(f"d({name})", *cols, int(_np(tbl, "w", np.int64)[0]))

    def sparklines(self, name: str, points: int = 60) -> dict[str, list[float]]:
        """``run -> bucket means`` of scalar ``name`` over each run's whole history (≤ ``points`` values)."""
        sql = f"""
            WITH {replaced_sql("TRUE")},
            s AS (SELECT x.run, x.name, x.step, x.value FROM scalars x LEFT JOIN gone USING (run, _writer)
                  WHERE x.name = $name AND isfinite(x.value) AND x.step < coalesce(gone.s, $none)
                  QUALIFY row_number() OVER (PARTITION BY x.run, x.name, x.step ORDER BY {LATEST_FIRST}) = 1),
            span AS (SELECT run, min(step) AS s0,
                            greatest(1, CAST(ceil((max(step) - min(step) + 1) / $p) AS BIGINT)) AS w
                     FROM s GROUP BY run)
            SELECT s.run, (s.step - span.s0) // span.w AS b, avg(s.value) AS v
            FROM s JOIN span USING (run) GROUP BY s.run, b ORDER BY s.run, b
        """
        tbl = self._read(None, ["scalars", "events"], sql, {"name": name, "p": float(points), "none": BIG})
        out: dict[str, list[float]] = {}
        for run, v in zip(tbl.column("run").to_pylist(), tbl.column("v").to_pylist(), strict=True):
            out.setdefault(str(run), []).append(float(v))
        return out

    # -- histograms ----------------------------------------------------------------------------------------------
    def hist_matrix(self, run: str, n_bins: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Full resolution ``(steps (m,), counts (m, n_bins))`` summed over ranks; None without histogram rows."""
        hm = self.heatmap(run, n_bins, ALL_STEPS, max_cols=0)
        return (hm.steps, hm.counts) if hm.steps.size else None

    def heatmap(self, run: str, n_bins: int, window: tuple[int, int] = ALL_STEPS, max_cols: int = MAX_COLS) -> Heatmap:
        """The ``hist`` rows of ``run`` as a (columns, n_bins) count matrix with ≤ ``max_cols`` step columns (0: one
        column per logged step), counts summed over ranks and each column's steps. Bins outside ``n_bins`` are
        dropped.

        DuckDB applies the store's rules and leaves the rows as they are; :func:`bucket_counts` sums them. A
        ``GROUP BY col, bin`` in SQL cost 0.5–0.7 s at 4.5M rows (100k steps × 50 bins; the rows are already one per
        (step, bin) in a one-rank run) against 0.05 s for the scan, and its ``sum`` of BIGINT is a HUGEINT that reached
        numpy as Arrow decimals, one Python ``Decimal`` per cell (0.9 s more)."""
        rules = self._rules(run, table="hist")
        sql = f"""SELECT step, bin, "count" AS c FROM hist
                  WHERE run = $run AND step BETWEEN $lo AND $hi AND bin >= 0 AND bin < $nb AND {rules.where}
                  {rules.qualify}"""
        params = {"run": run, "lo": window[0], "hi": window[1], "nb": int(n_bins)}
        tbl = self._read([run], ["hist"], sql, {**params, **rules.params})
        return bucket_counts(tbl, n_bins, max_cols)

    # -- events, alerts, tokens ----------------------------------------------------------------------------------
    def events(self, run: str) -> list[dict[str, Any]]:
        """Rows ``step, kind, payload`` (JSON text) of ``run``'s known change points, by step. As in :meth:`alerts`,
        an event written before a resume at its step or later is left out: it marked the trajectory the resume
        replaced (a resume at step 200 that a later resume from step 100 replaced drew a line, and explained a jump,
        at step 200 of the new trajectory)."""
        if not self._resumed(run):
            sql = "SELECT step, kind, payload FROM events WHERE run = $run ORDER BY step, kind"
            return self._read([run], ["events"], sql, {"run": run}).to_pylist()
        sql = f"""WITH {replaced_sql("run = $run")}
                  SELECT step, kind, payload FROM events e WHERE run = $run AND NOT EXISTS
                    (SELECT 1 FROM went WHERE went.step <= e.step AND coalesce(e.wall_time, 0) < went.wall_time)
                  ORDER BY step, kind"""
        return self._read([run], ["events", "scalars"], sql, {"run": run}).to_pylist()

    def alerts(self, run: str) -> list[dict[str, Any]]:
        """Stored alert rows ``step, detector, kind, severity, message, evidence`` (JSON text) of ``run``, by step.
        An alert written before a resume (:func:`replaced_sql`'s ``went``) at its step or later is left out: it was
        raised on the trajectory the resume replaced (by the process that died, or by ``alerts --write`` reading it)
        at a step the run now reads otherwise.

        An alert is listed once per identity (:func:`~entropy_watch.analysis.alert.alert_key`), as first written:
        writers that raced (two ``alerts --write`` on an object store, which has no lock to order them) each stored
        it, and the app listed it twice."""
        cols = "step, detector, kind, severity, message, evidence"
        once = "QUALIFY row_number() OVER (PARTITION BY step, detector, kind, severity ORDER BY wall_time NULLS LAST)"
        once += " = 1"
        if not self._resumed(run):
            sql = f"SELECT {cols} FROM alerts WHERE run = $run {once} ORDER BY step, detector"
            return self._read([run], ["alerts"], sql, {"run": run}).to_pylist()
        sql = f"""WITH {replaced_sql("run = $run")}
                  SELECT {cols} FROM alerts a WHERE run = $run AND NOT EXISTS
                    (SELECT 1 FROM went WHERE went.step <= a.step AND coalesce(a.wall_time, 0) < went.wall_time)
                  {once} ORDER BY step, detector"""
        return self._read([run], ["alerts", "scalars", "events"], sql, {"run": run}).to_pylist()

    def top_tokens(
        self,
        run: str,
        window: tuple[int, int] = ALL_STEPS,
        *,
        min_entropy: float = 0.0,
        text: str = "",
        limit: int = 25,
        spread: bool = True,
    ) -> pa.Table:
        """Sampled tokens of ``run`` within ``window`` with entropy ≥ ``min_entropy`` and ``text`` (case-insensitive)
        in the token, each with a ``context`` string: the other sampled tokens of the same sequence within
        ±CONTEXT_TOKENS positions, the token in ⟦ ⟧, gaps as "…".

        ``spread=True`` (what the run's tokens look like as it trains): ``limit`` tokens (fewer only when fewer
        match) shared evenly over the matching steps, each step's highest-entropy ones: taken round by round (every
        step's highest, then every step's second highest, …; a step that runs out leaves its share to the others),
        and where a round has more steps than tokens left, one from each of that many equal parts of its steps (the
        part's highest): 25 of a run sampled at 3 steps are 8 or 9 of each; 25 of 1,000 steps are one from
        each 40 steps. Ordered by step, then entropy (highest first). ``spread=False``: the ``limit``
        highest-entropy tokens overall, highest first. Ties (equal entropy: ranks of one step, …) go by step, rank,
        sequence, position, so a read is the same every time. A token without text shows its id as ``#id`` (``?``
        without an id). Columns: step, rank, seq, pos, token, token_id, entropy, logp, advantage, clipped, context.
        """
        pick = (
            f"""rr AS (SELECT *, row_number() OVER (PARTITION BY step ORDER BY {TOKEN_ORDER}) - 1 AS r FROM cand
                       QUALIFY r < $limit),
               rounds AS (SELECT r, count(*) AS n, sum(count(*)) OVER (ORDER BY r) - count(*) AS before
                          FROM rr GROUP BY r),
               idx AS (SELECT rr.*, n, before, row_number() OVER (PARTITION BY rr.r ORDER BY step) - 1 AS j
                       FROM rr JOIN rounds USING (r) WHERE before < $limit),
               top AS (SELECT * EXCLUDE (r, n, before, j) FROM idx
                       QUALIFY before + n <= $limit OR row_number() OVER (
                           PARTITION BY r, (j * ($limit - before)) // n ORDER BY {TOKEN_ORDER}) = 1)"""
            if spread
            else f"top AS (SELECT * FROM cand ORDER BY {TOKEN_ORDER} LIMIT $limit)"
        )
        rules = self._rules(run, table="tokens")
        sql = f"""
            WITH tt AS (
                SELECT step, rank, seq, pos, token_id, entropy, logp, advantage, clipped,
                       CASE WHEN token_text IS NOT NULL AND token_text <> '' THEN token_text
                            WHEN token_id >= 0 THEN '#' || CAST(token_id AS VARCHAR) ELSE '?' END AS txt
                FROM tokens WHERE run = $run AND step BETWEEN $lo AND $hi AND {rules.where} {rules.qualify}
            ), cand AS (
                SELECT * FROM tt WHERE isfinite(entropy) AND entropy >= $min
                  AND ($text = '' OR contains(lower(txt), lower($text)))
            ), {pick},
            near AS (
                SELECT top.step, top.rank, top.seq, top.pos AS hit, tt.pos,
                       CASE WHEN tt.pos = top.pos THEN '⟦' || tt.txt || '⟧' ELSE tt.txt END AS piece,
                       tt.pos - lag(tt.pos) OVER (PARTITION BY top.step, top.rank, top.seq, top.pos
                                                  ORDER BY tt.pos) AS gap
                FROM top JOIN tt ON tt.step = top.step AND tt.rank = top.rank AND tt.seq = top.seq
                 AND abs(tt.pos - top.pos) <= $k
            ), ctx AS (
                SELECT step, rank, seq, hit,
                       string_agg(CASE WHEN gap > 1 THEN '…' ELSE '' END || piece, '' ORDER BY pos) AS context
                FROM near GROUP BY step, rank, seq, hit
            )
            SELECT top.step, top.rank, top.seq, top.pos, top.txt AS token, top.token_id, top.entropy, top.logp,
                   top.advantage, top.clipped, ctx.context
            FROM top JOIN ctx ON ctx.step = top.step AND ctx.rank = top.rank AND ctx.seq = top.seq AND ctx.hit = top.pos
            ORDER BY {"step, " if spread else ""}{TOKEN_ORDER}
        """
        params = {"run": run, "lo": int(window[0]), "hi": int(window[1]), "min": float(min_entropy),
                  "text": str(text), "limit": int(limit), "k": CONTEXT_TOKENS, **rules.params}  # fmt: skip
        return self._read([run], ["tokens"], sql, params)
