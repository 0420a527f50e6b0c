"""Per-run summaries: the last step and the latest value of each canonical metric, without reading any segment.

Listing runs must not cost a query per run: with one query per run over a store-wide view, ``entropy-watch ls`` grew
quadratically (100 runs: 12 s; 612 runs: over 120 s; issue 11). So the summary is written where it is known:

* a live writer (:class:`~entropy_watch.store.RunWriter`) tracks, per rank, the highest step and, for each canonical
  metric (:data:`~entropy_watch.store.writer.SUMMARY_NAMES`), the value at its highest step, and puts them in every
  heartbeat (``status/rank=<r>.json``: ``last_step``, ``latest``). They lag the data by at most one heartbeat
  interval (5 s) while the run is live and are exact once it closes;
* an import writes them into ``run.json`` as ``summary`` (imported runs have no heartbeat).

Reading is then one small JSON file per rank. Runs that carry neither (written by an older version or a foreign
tool) are summarised by *one* query over all of them together (:func:`query_summaries`), never one per run. The
cost of listing is therefore linear in the number of runs, about two ``stat``/``read`` calls per run and rank.

``latest`` maps a metric name to ``(value, step)``; across ranks the highest step wins, the lowest rank on ties.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


def merge_statuses(statuses: Iterable[tuple[int, Mapping[str, Any]]]) -> Latest | None:
    """``latest`` over the ranks' heartbeats, or None when some rank's heartbeat predates summaries."""
    out: Latest = {}
    for _, st in sorted(statuses, key=lambda rs: rs[0], reverse=True):  # lower ranks last: they win ties
        latest = st.get("latest")
        if not isinstance(latest, Mapping):
            return None
        _merge(out, latest)
    return out


def from_meta(meta: Mapping[str, Any]) -> tuple[int | None, Latest] | None:
    """``(last_step, latest)`` from an imported run's ``run.json`` ``summary``, or None when it has none."""
    summary = meta.get("summary")
    if not isinstance(summary, Mapping) or not isinstance(summary.get("latest"), Mapping):
        return None
    last = summary.get("last_step")
    out: Latest = {}
    _merge(out, summary["latest"])
    return (int(last) if isinstance(last, int) else None), out


def query_summaries(reader: Any, runs: list[str], names: Iterable[str]) -> dict[str, tuple[int | None, Latest]]:
    """``run -> (last_step, latest)`` for ``runs`` by one query over their scalars (runs without summaries).

    ``reader`` is a :class:`~entropy_watch.store.Store` (its ``_read(runs, tables, sql, params)``); ``names`` are the
    metrics kept in ``latest``.
    """
    if not runs:
        return {}
    tbl = reader._read(
        runs,
        ["scalars"],
        "SELECT run, name, arg_max(value, step) AS value, max(step) AS step FROM scalars GROUP BY run, name "
        "ORDER BY run, name",
    )
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


def _merge(out: Latest, latest: Mapping[str, Any]) -> None:
    """Fold ``{name: [step, value]}`` (the on-disk form) into ``out``; the higher step wins, later calls win ties."""
    for name, pair in latest.items():
        try:
            step, value = int(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        old = out.get(name)
        if old is None or step >= old[1]:
            out[str(name)] = (value, step)
