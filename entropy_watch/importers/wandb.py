"""W&B CSV exports, and splitting any tabular log that holds several runs.

A W&B chart export ("Download CSV") has a ``Step`` column and one column per run and metric, named
``<run> - <metric>``, plus ``<run> - <metric>__MIN`` / ``__MAX`` when W&B bucketed the points. One file may hold many
runs; each becomes its own :class:`ImportedRun` named after the W&B run. ``__MIN``/``__MAX`` columns are kept as
extra series under their source names (``<metric>__MIN``), never mapped to a canonical metric. A chart drawn against
another x axis (``Wall Time``, ``Relative Time (Process)``, ``train/epoch``) is exported with that axis as its first
column: still one run per W&B run, its steps the row order (a note says so).

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


def x_axis(columns: list[str]) -> str | None:
    """The x-axis column of a W&B chart export: the step column when there is one, else the first column (a chart
    drawn against ``Wall Time`` or an epoch), ``""`` when there is none; None when the other columns (W&B's
    ``_runtime``-style ones aside) do not all read ``<run> - <metric>``: no W&B export."""
    x = A.find_step_column(columns)
    if x is None and columns and split_wandb_column(columns[0]) is None:
        x = columns[0]
    rest = [c for c in columns if c != x and not c.startswith("_")]
    return (x or "") if rest and all(split_wandb_column(c) is not None for c in rest) else None


def is_wandb_header(columns: list[str]) -> bool:
    """True when every column but the x axis (the step, or a first column such as ``Wall Time``) and W&B's
    ``_runtime``-style columns reads ``<run> - <metric>``."""
    return x_axis(columns) is not None


def split_wandb_frame(frame: Frame) -> dict[str, Frame]:
    """One frame per W&B run, columns renamed to the metric names (the step column is shared; an x axis that is no
    step is left out, and the runs' steps are the row order, with a note)."""
    columns = list(frame.cells)
    step = A.find_step_column(columns)
    x = x_axis(columns)
    off_axis = x if x and x != step else None  # Wall Time, an epoch: no step
    runs: dict[str, Frame] = {}
    for column, cells in frame.cells.items():
        if column == step or column == off_axis:
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
            if off_axis is not None:
                sub.notes.append(
                    f"the export's x axis is {off_axis!r}, not the step: steps are the row order; export the chart "
                    "with the x axis 'Step' for the run's own steps"
                )
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


SUMMARY_FILE = "wandb-summary.json"


def summary_error(path: Path, frame: Frame) -> str | None:
    """Why ``path`` cannot be read as a run's history when it is a W&B run summary (``files/wandb-summary.json``:
    each metric's last value, and W&B's own ``_wandb`` entry), else None. Read as a log, it made a run of one point."""
    if path.name != SUMMARY_FILE and not (frame.n_rows == 1 and any(c.startswith("_wandb/") for c in frame.cells)):
        return None
    run_dir = path.parent.parent if path.parent.name == "files" else path.parent
    offline = sorted(run_dir.glob("run-*.wandb"))
    history = path.parent / "wandb-history.jsonl"  # what W&B wrote beside the summary before its .wandb files
    if offline:
        where = f"import the run folder {run_dir} (its {offline[0].name} holds every logged step)"
    elif history.is_file():
        where = f"import {history}"
    else:
        where = "import the run's run-<id>.wandb file, or a chart exported from the W&B UI as CSV"
    return f"{path} is a W&B run summary (each metric's last value), not the run's history; {where}"


def file_stem(path: Path) -> str:
    """The run name a single-run file gets by default: its name without the extension."""
    name = path.name
    for ext in (".jsonl", ".json", ".csv", ".tsv", ".log", ".txt"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem or name
