"""The app's read queries: SQL over a :class:`~entropy_watch.store.TailReader`, downsampled on the server side.

Pure functions (no Streamlit): ``app/data.py`` wraps them in caches, ``benchmarks/bench_app.py`` times them, and the
HTML report may call them directly. Every series leaves DuckDB already reduced to at most ``max_points`` points per
trace: the steps of the window are cut into equal-width buckets and each bucket gives its mean, min and max
(a min/max band keeps the spikes that LTTB-style point picking would hide in noisy RL metrics; STORE_AND_APP §5).
Heatmaps are bucketed the same way to at most ``max_cols`` step columns (counts summed per bucket).

A step logged more than once (a resumed run re-logging steps) keeps one value: the lowest rank, then the latest
``wall_time``, then the latest writer session and segment — the rule :meth:`Store.series` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from entropy_watch import metrics as M

MAX_POINTS = 2000
"""Points per trace sent to the browser (100k raw points are 2.2 MB per chart per refresh; 2k are 50 kB)."""
MAX_COLS = 1000
"""Step columns of a heatmap."""
SPARK_POINTS = 60
"""Points in a runs-table sparkline."""

# One value per (run, name, step), as Store.series picks it.
_DEDUPED = (
    "QUALIFY row_number() OVER (PARTITION BY run, name, step "
    "ORDER BY rank ASC, wall_time DESC NULLS LAST, _writer DESC, _seq DESC) = 1"
)


def _dedupe_clause(reader: Queryable, run: str) -> str:
    """The de-duplicating QUALIFY for ``run``'s scalars, or "" when no step of any name can repeat.

    A step is logged twice when a resumed run re-logs it, when several ranks write, or when a trainer logs a name
    twice; the rows then sit in different segments whose step ranges (per name) overlap. Checking that costs one
    aggregate per segment; the window itself costs ~1 s per million rows (benchmarks/bench_app.py), so it runs only
    when needed. (A name logged twice for one step inside one segment is not detected.)
    """
    sql = """
        WITH seg AS (SELECT name, _writer, _seq, rank, min(step) AS lo, max(step) AS hi
                     FROM scalars WHERE run = $run GROUP BY ALL)
        SELECT count(*) AS n FROM seg a JOIN seg b ON a.name = b.name AND a.lo <= b.hi AND b.lo <= a.hi
         AND (a._writer, a._seq, a.rank) < (b._writer, b._seq, b.rank)
    """
    return _DEDUPED if int(reader.query(sql, {"run": run}).column("n")[0].as_py() or 0) else ""


class Queryable(Protocol):
    """What the queries need: :class:`~entropy_watch.store.TailReader` (tables scalars, hist, alerts, events)."""

    def query(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> pa.Table: ...


@dataclass(frozen=True)
class Window:
    """The step range the user picked: ``lo..hi`` inclusive (None = open end), or the ``last`` N steps of a run."""

    lo: int | None = None
    hi: int | None = None
    last: int | None = None

    def bounds(self, last_step: int | None) -> tuple[int, int]:
        """Concrete inclusive bounds for a run whose newest step is ``last_step``."""
        big = np.iinfo(np.int64).max
        if self.last is not None and last_step is not None:
            return max(0, int(last_step) - int(self.last) + 1), big
        return (int(self.lo) if self.lo is not None else -big), (int(self.hi) if self.hi is not None else big)


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


def _np(tbl: pa.Table, col: str, dtype: Any = np.float64) -> np.ndarray:
    arr = tbl.column(col)
    if pa.types.is_floating(arr.type):
        arr = arr.fill_null(np.nan)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def run_versions(reader: Queryable) -> dict[str, tuple[int, int]]:
    """``run -> (scalar rows, newest step)``: a cheap per-run change token for cache keys."""
    tbl = reader.query("SELECT run, count(*) AS n, max(step) AS s FROM scalars GROUP BY run")
    cols = (tbl.column(c).to_pylist() for c in ("run", "n", "s"))
    return {r: (int(n), int(s)) for r, n, s in zip(*cols, strict=True)}


def scalar_names(reader: Queryable, run: str) -> list[str]:
    """Distinct scalar names logged by ``run``, sorted."""
    tbl = reader.query("SELECT DISTINCT name FROM scalars WHERE run = $run ORDER BY name", {"run": run})
    return [str(n) for n in tbl.column("name").to_pylist()]


def traces(
    reader: Queryable,
    run: str,
    names: list[str],
    window: tuple[int, int],
    max_points: int = MAX_POINTS,
) -> dict[str, Trace]:
    """Series ``names`` of ``run`` within ``window`` (inclusive step bounds), each ≤ ``max_points`` points.

    Names without data are absent from the result. Non-finite values are left out of the bucket statistics (a bucket
    of only NaN gives NaN).
    """
    if not names:
        return {}
    dedupe = _dedupe_clause(reader, run)
    sql = f"""
        WITH s AS (
            SELECT name, step, value FROM scalars
            WHERE run = $run AND list_contains($names, name) AND step BETWEEN $lo AND $hi
            {dedupe}
        ), span AS (
            SELECT name, min(step) AS s0, greatest(1, CAST(ceil((max(step) - min(step) + 1) / $maxp) AS BIGINT)) AS w
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
    tbl = reader.query(sql, params)
    out: dict[str, Trace] = {}
    if tbl.num_rows == 0:
        return out
    name_col = np.asarray(tbl.column("name").to_pylist(), dtype=object)
    steps, mean, lo, hi = (_np(tbl, c) for c in ("step", "mean", "lo", "hi"))
    widths = _np(tbl, "w", np.int64)
    for name in names:
        sel = name_col == name
        if sel.any():
            out[name] = Trace(name, steps[sel], mean[sel], lo[sel], hi[sel], int(widths[sel][0]))
    return out


def paired(
    reader: Queryable, run: str, x_name: str, y_name: str, window: tuple[int, int], max_points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, x, y)`` at the steps where both scalars are finite, bucket means when there are more than
    ``max_points`` such steps (for scatter plots such as reward vs entropy)."""
    dedupe = _dedupe_clause(reader, run)
    sql = f"""
        WITH s AS (
            SELECT name, step, value FROM scalars
            WHERE run = $run AND name IN ($x, $y) AND step BETWEEN $lo AND $hi AND isfinite(value)
            {dedupe}
        ), j AS (
            SELECT step, max(value) FILTER (WHERE name = $x) AS x, max(value) FILTER (WHERE name = $y) AS y
            FROM s GROUP BY step HAVING count(*) = 2
        ), span AS (SELECT min(step) AS s0, greatest(1, CAST(ceil(count(*) / $maxp) AS BIGINT)) AS k FROM j),
        r AS (SELECT j.*, row_number() OVER (ORDER BY step) - 1 AS i FROM j)
        SELECT avg(step) AS step, avg(x) AS x, avg(y) AS y FROM r, span GROUP BY i // span.k ORDER BY step
    """
    params = {"run": run, "x": x_name, "y": y_name, "lo": window[0], "hi": window[1], "maxp": float(max_points)}
    tbl = reader.query(sql, params)
    return _np(tbl, "step"), _np(tbl, "x"), _np(tbl, "y")


def heatmap(reader: Queryable, run: str, n_bins: int, window: tuple[int, int], max_cols: int = MAX_COLS) -> Heatmap:
    """The ``hist`` table of ``run`` as a (columns, n_bins) count matrix, ≤ ``max_cols`` step columns."""
    sql = """
        WITH h AS (
            SELECT step, bin, "count" AS c FROM hist
            WHERE run = $run AND step BETWEEN $lo AND $hi AND bin >= 0 AND bin < $nb
        ), span AS (
            SELECT min(step) AS s0, greatest(1, CAST(ceil((max(step) - min(step) + 1) / $maxc) AS BIGINT)) AS w FROM h
        )
        SELECT span.s0 + ((h.step - span.s0) // span.w) * span.w AS col, any_value(span.w) AS w, h.bin,
               sum(h.c) AS c
        FROM h, span GROUP BY col, h.bin ORDER BY col, h.bin
    """
    tbl = reader.query(sql, {"run": run, "lo": window[0], "hi": window[1], "nb": n_bins, "maxc": float(max_cols)})
    if tbl.num_rows == 0:
        return Heatmap(np.zeros(0, np.int64), np.zeros((0, n_bins)), 1)
    col = _np(tbl, "col", np.int64)
    cols, inv = np.unique(col, return_inverse=True)
    counts = np.zeros((cols.size, n_bins), dtype=np.float64)
    np.add.at(counts, (inv, _np(tbl, "bin", np.int64)), _np(tbl, "c"))
    return Heatmap(cols, counts, int(_np(tbl, "w", np.int64)[0]))


def sparklines(reader: Queryable, name: str = M.ENTROPY_MEAN, points: int = SPARK_POINTS) -> dict[str, list[float]]:
    """``run -> bucket means`` of scalar ``name`` over each run's whole history (≤ ``points`` values)."""
    sql = f"""
        WITH s AS (SELECT run, name, step, value FROM scalars WHERE name = $name AND isfinite(value) {_DEDUPED}),
        span AS (SELECT run, min(step) AS s0, greatest(1, CAST(ceil((max(step) - min(step) + 1) / $p) AS BIGINT)) AS w
                 FROM s GROUP BY run)
        SELECT s.run, (s.step - span.s0) // span.w AS b, avg(s.value) AS v
        FROM s JOIN span USING (run) GROUP BY s.run, b ORDER BY s.run, b
    """
    tbl = reader.query(sql, {"name": name, "p": float(points)})
    out: dict[str, list[float]] = {}
    for run, v in zip(tbl.column("run").to_pylist(), tbl.column("v").to_pylist(), strict=True):
        out.setdefault(str(run), []).append(float(v))
    return out


def entropy_levels(reader: Queryable, ref_versions: int) -> dict[str, tuple[float | None, float | None]]:
    """``run -> (latest entropy/mean, H0)`` where H0 is the median of the first ``ref_versions`` finite values (the
    detector's H_ref, DetectorConfig.ref_versions)."""
    sql = f"""
        WITH s AS (SELECT run, name, step, value FROM scalars WHERE name = $name AND isfinite(value) {_DEDUPED}),
        r AS (SELECT run, step, value, row_number() OVER (PARTITION BY run ORDER BY step) AS i FROM s)
        SELECT run, arg_max(value, step) AS last, median(value) FILTER (WHERE i <= $k) AS h0 FROM r GROUP BY run
    """
    tbl = reader.query(sql, {"name": M.ENTROPY_MEAN, "k": int(ref_versions)})
    return {
        str(r): (last, h0)
        for r, last, h0 in zip(*(tbl.column(c).to_pylist() for c in ("run", "last", "h0")), strict=True)
    }


def stored_alerts(reader: Queryable, run: str) -> list[dict[str, Any]]:
    """Rows of the ``alerts`` table for ``run`` (written by ``entropy-watch watch`` or the trainer), by step."""
    tbl = reader.query(
        "SELECT step, detector, kind, severity, message, evidence FROM alerts WHERE run = $run ORDER BY step",
        {"run": run},
    )
    return tbl.to_pylist()


def events(reader: Queryable, run: str) -> list[dict[str, Any]]:
    """Rows ``step, kind, payload`` of the ``events`` table for ``run`` (resumes, LR changes, config edits)."""
    tbl = reader.query("SELECT step, kind, payload FROM events WHERE run = $run ORDER BY step", {"run": run})
    return tbl.to_pylist()


def full_series(reader: Queryable, run: str, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Full-resolution ``name -> (steps int64, values float64)`` for analysis (not for plotting)."""
    dedupe = _dedupe_clause(reader, run)
    sql = f"""SELECT name, step, value FROM scalars WHERE run = $run AND list_contains($names, name) {dedupe}
              ORDER BY name, step"""
    tbl = reader.query(sql, {"run": run, "names": list(names)})
    if tbl.num_rows == 0:
        return {}
    name_col = np.asarray(tbl.column("name").to_pylist(), dtype=object)
    steps, values = _np(tbl, "step", np.int64), _np(tbl, "value")
    return {n: (steps[name_col == n], values[name_col == n]) for n in names if (name_col == n).any()}


def hist_matrix(reader: Queryable, run: str, n_bins: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Full-resolution ``(steps (m,), counts (m, n_bins))`` summed over ranks, or None without histogram rows."""
    tbl = reader.query(
        'SELECT step, bin, sum("count") AS c FROM hist WHERE run = $run GROUP BY step, bin ORDER BY step',
        {"run": run},
    )
    if tbl.num_rows == 0:
        return None
    steps, inv = np.unique(_np(tbl, "step", np.int64), return_inverse=True)
    counts = np.zeros((steps.size, n_bins))
    b = _np(tbl, "bin", np.int64)
    ok = (b >= 0) & (b < n_bins)
    np.add.at(counts, (inv[ok], b[ok]), _np(tbl, "c")[ok])
    return steps, counts


def delta_trace(
    reader: Queryable, run: str, name: str, window: tuple[int, int], max_points: int = MAX_POINTS
) -> Trace | None:
    """Observed per-step change of scalar ``name``: ``value[next step] − value[step]`` assigned to ``step`` (the
    change the update at ``step`` caused), bucketed like :func:`traces`. None without two finite points."""
    dedupe = _dedupe_clause(reader, run)
    sql = f"""
        WITH s AS (
            SELECT name, step, value FROM scalars
            WHERE run = $run AND name = $name AND isfinite(value) {dedupe}
        ), d AS (
            SELECT step, lead(value) OVER (ORDER BY step) - value AS dv FROM s
        ), win AS (SELECT * FROM d WHERE dv IS NOT NULL AND step BETWEEN $lo AND $hi),
        span AS (SELECT min(step) AS s0,
                        greatest(1, CAST(ceil((max(step) - min(step) + 1) / $maxp) AS BIGINT)) AS w FROM win)
        SELECT any_value(span.w) AS w, avg(win.step) AS step, avg(dv) AS mean, min(dv) AS lo, max(dv) AS hi
        FROM win, span GROUP BY (win.step - span.s0) // span.w ORDER BY step
    """
    tbl = reader.query(sql, {"run": run, "name": name, "lo": window[0], "hi": window[1], "maxp": float(max_points)})
    if tbl.num_rows == 0:
        return None
    return Trace(f"d({name})", *(_np(tbl, c) for c in ("step", "mean", "lo", "hi")), int(_np(tbl, "w", np.int64)[0]))


CONTEXT_TOKENS = 12
"""Sampled neighbours on each side shown around a high-entropy token."""


def top_tokens(store: Any, run: str, lo: int, hi: int, min_entropy: float, text: str, limit: int) -> pa.Table:
    """The ``limit`` highest-entropy sampled tokens of ``run`` with ``lo <= step <= hi``, ``entropy >= min_entropy``
    and ``text`` (case-insensitive) in the token text, each with a ``context`` string: the other sampled tokens of
    the same sequence within ±CONTEXT_TOKENS positions, the token itself in ⟦ ⟧ and gaps shown as "…".

    ``store`` is a :class:`~entropy_watch.store.Store` (tokens are read on demand, never tailed).
    """
    import duckdb

    tbl = store.table(run, "tokens", since_step=int(lo))
    if tbl.num_rows == 0:
        return tbl
    con = duckdb.connect(":memory:")
    try:
        con.register("t", tbl)
        sql = """
            WITH tt AS (SELECT *, coalesce(token_text, '#' || CAST(token_id AS VARCHAR)) AS txt FROM t),
            top AS (
                SELECT * FROM tt WHERE step <= $hi AND isfinite(entropy) AND entropy >= $min
                  AND ($text = '' OR contains(lower(txt), lower($text)))
                ORDER BY entropy DESC LIMIT $limit
            ), near AS (
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
            ORDER BY top.entropy DESC
        """
        params = {"hi": int(hi), "min": float(min_entropy), "text": str(text), "limit": int(limit), "k": CONTEXT_TOKENS}
        return con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()
