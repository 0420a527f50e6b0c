"""W&B CSV exports, and splitting any tabular log that holds several runs.

A W&B chart export ("Download CSV") has a ``Step`` column and one column per run and metric, named
``<run> - <metric>``, plus ``<run> - <metric>__MIN`` / ``__MAX`` when W&B bucketed the points. One file may hold many
runs; each becomes its own :class:`ImportedRun` named after the W&B run. ``__MIN``/``__MAX`` columns are kept as
extra series under their source names (``<metric>__MIN``), never mapped to a canonical metric.

A generic CSV/JSONL with a ``run_name`` (or ``run``, ``run_id``) text column holding several values is split the
same way; with a single value it stays one run and the value is recorded as ``meta["source_run_name"]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from entropy_watch import aliases as A
from entropy_watch.importers.base import Frame
from entropy_watch.importers.columns import head, is_arrow, parse_cell

_SUFFIX = re.compile(r"^(.*?)(__MIN|__MAX)$")
RUN_COLUMNS = ("run_name", "run", "run_id")


def split_wandb_column(column: str) -> tuple[str, str] | None:
    """``"grpo-s0 - actor/entropy__MIN"`` -> ``("grpo-s0", "actor/entropy__MIN")``; None if not ``<run> - <metric>``."""
    if " - " not in column:
        return None
    run, metric = column.rsplit(" - ", 1)
    run, metric = run.strip(), metric.strip()
    return (run, metric) if run and metric else None


def is_wandb_header(columns: list[str]) -> bool:
    """True when every column but the step (and W&B's ``_runtime``-style columns) reads ``<run> - <metric>``."""
    step = A.find_step_column(columns)
    rest = [c for c in columns if c != step and not c.startswith("_")]
    return bool(rest) and all(split_wandb_column(c) is not None for c in rest)


def split_wandb_frame(frame: Frame) -> dict[str, Frame]:
    """One frame per W&B run, columns renamed to the metric names (the step column is shared)."""
    step = A.find_step_column(frame.cells)
    runs: dict[str, Frame] = {}
    for column, cells in frame.cells.items():
        if column == step:
            continue
        parts = split_wandb_column(column)
        if parts is None:
            continue
        run, metric = parts
        sub = runs.get(run)
        if sub is None:
            sub = runs[run] = Frame(source=frame.source, n_rows=frame.n_rows, locations=frame.locations)
            if step is not None:
                sub.cells[step] = frame.cells[step]
        sub.cells[metric] = cells
    return runs


def run_column(frame: Frame) -> str | None:
    """The run-name column of a generic log (``run_name``, ``run``, ``run_id``) holding text, or None."""
    for name in RUN_COLUMNS:
        if name in frame.cells:
            _, raw = frame.cells[name]
            texts = 0
            for v in head(raw, 50):
                try:
                    parse_cell(v)
                except (ValueError, TypeError):
                    texts += 1
            if texts:
                return name
    return None


def split_by_run_column(frame: Frame, column: str) -> dict[str, Frame]:
    """One frame per distinct value of ``column``, rows renumbered (rows without a value go to the first run)."""
    rows, raw = frame.cells[column]
    if is_arrow(raw):
        return _split_columnar(frame, column)
    run_of_row: dict[int, str] = {r: str(v).strip() for r, v in zip(rows, raw, strict=True) if str(v).strip()}
    names = list(dict.fromkeys(run_of_row.values()))
    if len(names) <= 1:
        return {names[0] if names else "": frame}
    out = {name: Frame(source=frame.source) for name in names}
    local: list[int] = []  # global row -> row index inside its run's frame
    for r in range(frame.n_rows):
        sub = out[run_of_row.get(r, names[0])]
        local.append(sub.n_rows)
        sub.locations.append(frame.where(r))
        sub.n_rows += 1
    for col, (crow, cval) in frame.cells.items():
        if col == column:
            continue
        for r, v in zip(crow, cval, strict=True):
            sub = out[run_of_row.get(r, names[0])]
            cell = sub.cells.get(col)
            if cell is None:
                cell = sub.cells[col] = ([], [])
            cell[0].append(local[r])
            cell[1].append(v)
    return out


def _split_columnar(frame: Frame, column: str) -> dict[str, Frame]:
    """:func:`split_by_run_column` for Arrow-backed frames, with array operations (rows keep their order)."""
    rows, raw = frame.cells[column]
    labels = np.full(frame.n_rows, "", dtype=object)
    labels[np.asarray(rows, dtype=np.int64)] = [str(v).strip() if v is not None else "" for v in raw.to_pylist()]
    names = list(dict.fromkeys(x for x in labels if x))
    if len(names) <= 1:
        return {names[0] if names else "": frame}
    labels[labels == ""] = names[0]  # rows without a value go to the first run
    out: dict[str, Frame] = {}
    for name in names:
        picked = np.flatnonzero(labels == name)  # global rows of this run, in order
        local = np.full(frame.n_rows, -1, dtype=np.int64)
        local[picked] = np.arange(len(picked))
        sub = Frame(frame.source, len(picked), null_is_nan=frame.null_is_nan, locate=_shifted(frame, picked))
        for col, (crow, cval) in frame.cells.items():
            if col == column:
                continue
            crow = np.asarray(crow, dtype=np.int64)
            keep = np.flatnonzero(labels[crow] == name)
            values = cval.take(pa.array(keep)) if is_arrow(cval) else [cval[k] for k in keep]
            sub.cells[col] = (local[crow[keep]], values)
        out[name] = sub
    return out


def _shifted(frame: Frame, picked: np.ndarray) -> Callable[[int], str]:
    return lambda row: frame.where(int(picked[row]))


def file_stem(path: Path) -> str:
    """The run name a single-run file gets by default: its name without the extension."""
    name = path.name
    for ext in (".jsonl", ".json", ".csv", ".tsv", ".log", ".txt"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem or name
