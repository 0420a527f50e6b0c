"""A table of metrics saved as Parquet: one row per logged step, one column per metric.

What users keep when they pull a run's history out of a tracker into a DataFrame and save it
(``wandb.Api().run(...).history().to_parquet(...)``, ``df.to_parquet`` of any trainer's log): columns such as
``_step``, ``train/entropy``, ``train/reward``. Read by pyarrow into the same :class:`Frame` as a CSV (step and column
aliases, ``--map``, gaps and notes alike). Struct columns become ``a/b`` like nested JSON; dictionary-encoded columns
(a pandas category) are decoded; list, map, binary and date columns hold no scalar metric and are left out with a
note. A DataFrame's index is read from the pandas metadata ``to_parquet`` writes (:func:`_pandas_index`).
TRL's ``completions_*.parquet`` (one row per sample) is not a metrics table: it is read with its TRL output folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from entropy_watch.errors import ImportFormatError, first_line, listed
from entropy_watch.importers.base import MAX_DEPTH, Frame, Progress

TRL_COMPLETION_COLUMNS = frozenset({"prompt", "completion", "advantage"})


def is_trl_completions(path: Path) -> bool:
    """True for a TRL ``completions_*.parquet`` (its schema holds prompt, completion and advantage)."""
    return TRL_COMPLETION_COLUMNS <= set(_schema(path).names)


def _schema(path: Path) -> pa.Schema:
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...: one line, whatever it is
        raise ImportFormatError(f"{path}: not a readable parquet file ({first_line(e)}); re-export it") from None


def read_parquet(path: Path, progress: Progress | None = None) -> Frame:
    """The columns of a Parquet metrics table as a columnar :class:`Frame` (rows located as ``row N``)."""
    import pyarrow.parquet as pq

    if is_trl_completions(path):
        raise ImportFormatError(
            f"{path} is a TRL completions file (one row per sample); pass the TRL output folder, which reads it "
            "next to trainer_state.json"
        )
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt file: one line naming it
        raise ImportFormatError(f"{path}: not a readable parquet file ({first_line(e)}); re-export it") from None
    if progress is not None:
        progress(path.stat().st_size)
    if table.num_rows == 0:
        raise ImportFormatError(f"{path} has columns but no rows; nothing to read")
    table, index_notes = _pandas_index(table)
    columns: dict[str, pa.Array] = {}
    left_out: list[str] = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        for flat, arr in _flatten(str(name), col.combine_chunks(), 0, path):
            if pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_decode()
            if _scalar(arr.type):
                columns[flat] = arr
            else:
                left_out.append(flat)
    if not columns:
        raise ImportFormatError(f"{path} holds no column of numbers or text; nothing to read")
    frame = Frame.columnar(str(path), columns, lambda row: f"row {row + 1}")
    frame.notes += index_notes
    if left_out:
        shown = listed(map(repr, left_out), 3)
        frame.notes.append(f"left out {len(left_out)} column(s) of lists, maps, bytes or dates: {shown}")
    return frame


_UNNAMED_INDEX = re.compile(r"__index_level_\d+__")


def _pandas_index(table: pa.Table) -> tuple[pa.Table, list[str]]:
    """The table as the DataFrame saved in it had it (``df.to_parquet``: its index is in the file's pandas metadata):
    a named RangeIndex (``df.set_index("_step")`` of evenly spaced steps) is stored as start/stop/step only, not as a
    column, and becomes its column again (without it the steps were the row numbers); an unnamed index that is not a
    range (rows filtered out) is stored as ``__index_level_0__``, row labels and never a metric: left out with a
    note, as the unnamed index column of a CSV is."""
    meta = table.schema.pandas_metadata or {}
    notes: list[str] = []
    for index in meta.get("index_columns") or []:
        if isinstance(index, str) and _UNNAMED_INDEX.fullmatch(index) and index in table.column_names:
            table = table.drop_columns([index])
            notes.append(
                f"left out the column {index!r}: the unnamed index of the pandas DataFrame saved in the file, not a "
                "metric"
            )
        elif isinstance(index, dict) and index.get("kind") == "range" and isinstance(index.get("name"), str):
            name, start, stop, step = index["name"], index.get("start"), index.get("stop"), index.get("step")
            if name in table.column_names or not all(isinstance(v, int) for v in (start, stop, step)) or step == 0:
                continue
            values = np.arange(start, stop, step, dtype=np.int64)
            if values.size == table.num_rows:
                table = table.append_column(name, pa.array(values))
    return table, notes


def _flatten(name: str, arr: pa.Array, depth: int, path: Path) -> Iterator[tuple[str, pa.Array]]:
    if not pa.types.is_struct(arr.type):
        yield name, arr
        return
    if depth >= MAX_DEPTH:
        raise ImportFormatError(f"{path}: column {name!r} nests deeper than {MAX_DEPTH} levels")
    import pyarrow.compute as pc

    for i in range(arr.type.num_fields):
        yield from _flatten(f"{name}/{arr.type.field(i).name}", pc.struct_field(arr, [i]), depth + 1, path)


def _scalar(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_null(t)
    )
