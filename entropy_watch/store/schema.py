"""Column schemas of the store's tables and the coercion of writer input onto them.

Each table has a declared core schema (docs/CONTRACTS.md); columns are never renamed, more may be added later
(readers use ``union_by_name``). Three kinds of columns never appear in a writer's input:

* Hive partition columns ``run``, ``table`` and ``rank`` come from the path, never from the file (a file column of
  the same name would clash with the partition value);
* ``_writer`` (the writer session, ``"<time_ns>-<pid>"``) and ``_seq`` (the segment's number within that session and
  table) are added by :class:`~entropy_watch.store.writer.RunWriter`. Every row of a segment carries the same pair,
  and a compacted ``part-`` file keeps them, which is what lets readers de-duplicate a segment that a part covers.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

MAX_STEP = 2**63 - 1  # steps are int64 in every table
_EXACT_FLOAT = 2**53  # floats at or above it cannot say which integer they mean

WRITER_COL = "_writer"
SEQ_COL = "_seq"
INTERNAL_COLUMNS: tuple[str, ...] = (WRITER_COL, SEQ_COL)
HIVE_COLUMNS: tuple[str, ...] = ("run", "table", "rank")
RESERVED_COLUMNS: frozenset[str] = frozenset(INTERNAL_COLUMNS + HIVE_COLUMNS)

# Arguments every DuckDB read of the store passes to read_parquet. Hive values are typed explicitly: without it a run
# named "2024-01-01" or "123" would be auto-cast to DATE or BIGINT.
READ_PARQUET_OPTIONS = (
    "hive_partitioning=true, union_by_name=true, hive_types={'run': 'VARCHAR', 'rank': 'INTEGER'}, "
    "hive_types_autocast=false"
)

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "scalars": pa.schema(
        [("step", pa.int64()), ("name", pa.string()), ("value", pa.float64()), ("wall_time", pa.float64())]
    ),
    "hist": pa.schema([("step", pa.int64()), ("bin", pa.int32()), ("count", pa.int64())]),
    "tokens": pa.schema(
        [
            ("step", pa.int64()),
            ("seq", pa.int32()),
            ("pos", pa.int32()),
            ("token_id", pa.int64()),
            ("token_text", pa.string()),
            ("entropy", pa.float64()),
            ("logp", pa.float64()),
            ("advantage", pa.float64()),
            ("clipped", pa.string()),
        ]
    ),
    "alerts": pa.schema(
        [
            ("step", pa.int64()),
            ("detector", pa.string()),
            ("kind", pa.string()),
            ("severity", pa.string()),
            ("message", pa.string()),
            ("evidence", pa.string()),
            ("wall_time", pa.float64()),
        ]
    ),
    "events": pa.schema(
        [("step", pa.int64()), ("kind", pa.string()), ("payload", pa.string()), ("wall_time", pa.float64())]
    ),
}

# Columns a writer must supply; the others of the core schema are filled with nulls (wall_time with "now").
REQUIRED: dict[str, tuple[str, ...]] = {
    "scalars": ("step", "name", "value"),
    "hist": ("step", "bin", "count"),
    "tokens": ("step",),
    "alerts": ("step", "detector", "severity", "message"),
    "events": ("step", "kind"),
}


def core_schema(table: str) -> pa.Schema:
    """The declared schema of ``table`` (without hive or internal columns)."""
    try:
        return TABLE_SCHEMAS[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLE_SCHEMAS)}") from None


def read_schema(table: str) -> pa.Schema:
    """What a reader returns for ``table`` before any file exists: core columns, ``run``, ``rank``, internals."""
    extra = [("run", pa.string()), ("rank", pa.int32()), (WRITER_COL, pa.string()), (SEQ_COL, pa.int64())]
    return pa.schema(list(core_schema(table)) + [pa.field(n, t) for n, t in extra])


def empty_table(table: str) -> pa.Table:
    """A zero-row table with :func:`read_schema` columns."""
    return read_schema(table).empty_table()


def coerce_rows(table: str, rows: pa.Table | Mapping[str, Any]) -> pa.Table:
    """Turn writer input into a ``pa.Table`` whose core columns have their declared types.

    ``rows`` is a ``pa.Table`` or a mapping ``{column: sequence}`` of equal lengths. Known columns are cast to the
    declared type (ints to float64 for ``value``, NaN and ±inf kept, None -> null); unknown columns are kept as given
    (schema evolution); missing optional core columns become nulls, a missing ``wall_time`` becomes the current Unix
    time in seconds. Raises ``ValueError`` naming the column for missing required or reserved columns.
    """
    schema = core_schema(table)
    if isinstance(rows, pa.Table):
        tbl = rows
    elif isinstance(rows, Mapping):
        lengths = {len(v) for v in rows.values()}
        if len(lengths) > 1:
            raise ValueError(f"{table}: columns have different lengths {sorted(lengths)}")
        arrays = {}
        for col, values in rows.items():
            field_type = schema.field(col).type if col in schema.names else None
            try:
                arrays[col] = pa.array(values, type=field_type, from_pandas=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ValueError(f"{table}.{col}: cannot convert values ({exc})") from None
        tbl = pa.table(arrays) if arrays else pa.table({})
    else:
        raise TypeError(f"{table}: rows must be a pyarrow.Table or a mapping of column -> list, not {type(rows)}")
    reserved = sorted(RESERVED_COLUMNS.intersection(tbl.column_names))
    if reserved:
        raise ValueError(f"{table}: column {reserved[0]!r} is reserved (set by the store from the path or writer)")
    if tbl.num_rows == 0:
        return tbl
    missing = [c for c in REQUIRED[table] if c not in tbl.column_names]
    if missing:
        raise ValueError(f"{table}: required column {missing[0]!r} is missing (needs {', '.join(REQUIRED[table])})")
    columns: list[pa.Array | pa.ChunkedArray] = []
    names: list[str] = []
    for field in schema:
        if field.name in tbl.column_names:
            col = tbl.column(field.name)
            if col.type != field.type:
                try:
                    col = col.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ValueError(f"{table}.{field.name}: cannot cast {col.type} to {field.type} ({exc})") from None
        elif field.name == "wall_time":
            col = pa.array([time.time()] * tbl.num_rows, type=pa.float64())
        else:
            col = pa.nulls(tbl.num_rows, type=field.type)
        columns.append(col)
        names.append(field.name)
    for name in tbl.column_names:
        if name not in schema.names:
            columns.append(tbl.column(name))
            names.append(name)
    return pa.table(columns, names=names)


def encode_rows(table: str, rows: list[dict[str, Any]]) -> tuple[pa.Table | None, list[tuple[dict[str, Any], str]]]:
    """Row dicts -> one table of ``table``'s schema, isolating rows that cannot be encoded.

    Returns ``(table or None when no row survives, [(bad row, why), ...])``. The whole batch is encoded at once;
    only when that fails is each row tried alone, so one bad row costs its own loss, never its batch's.
    """
    if not rows:
        return None, []
    try:
        return coerce_rows(table, _columns(rows)), []
    except (ValueError, TypeError, OverflowError, pa.ArrowException):
        pass
    good: list[pa.Table] = []
    bad: list[tuple[dict[str, Any], str]] = []
    for row in rows:
        try:
            good.append(coerce_rows(table, _columns([row])))
        except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
            bad.append((row, f"{type(exc).__name__}: {exc}"))
    if not good:
        return None, bad
    return pa.concat_tables(good, promote_options="permissive"), bad


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row dicts -> column lists (union of keys, missing cells None)."""
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return {k: [r.get(k) for r in rows] for k in keys}


def check_step(step: Any) -> int:
    """``step`` as a Python int in ``[0, 2**63 - 1]``, else ``ValueError`` saying what is wrong with it.

    Accepted: ints and integer scalars (numpy, one-element torch tensors: anything with ``__index__``), and floats
    holding an exact integer below 2**53 (``10.0``). Refused: bools, strings, NaN/inf, fractions (``2.5``), negative
    steps and steps beyond int64 (``2**70``, ``np.uint64(2**64 - 1)``). Every row the store writes goes through this
    at the call, so one bad step can never reach a buffer that other rows share.
    """
    if isinstance(step, bool) or type(step).__name__ == "bool_":
        raise ValueError(f"step must be an integer, got {step!r} (bool)")
    try:
        s = operator.index(step)
    except TypeError:
        s = _integral_float(step)
    if not 0 <= s <= MAX_STEP:
        raise ValueError(f"step {_short_repr(s)} is out of range: steps are integers in [0, 2**63 - 1]")
    return s


def _integral_float(step: Any) -> int:
    what = f"{_short_repr(step)} ({type(step).__name__})"
    if isinstance(step, str | bytes):
        raise ValueError(f"step must be an integer, got {what}")
    try:
        f = float(step)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"step must be an integer, got {what}") from None
    if not math.isfinite(f) or not f.is_integer():
        raise ValueError(f"step must be an integer, got {what}")
    if abs(f) >= _EXACT_FLOAT:
        raise ValueError(f"step {what} is a float too large to be exact; pass an int")
    return int(f)


def check_value(value: Any) -> float:
    """``value`` as a float64, else ``ValueError``: numbers and one-element numeric scalars only.

    NaN and +-inf are values (a diverged loss is data the detectors read), kept as they are. Refused: strings (even
    numeric ones), complex numbers, arrays of several elements, and ints too large for float64.
    """
    if isinstance(value, str | bytes):
        raise ValueError(f"must be a number, got {type(value).__name__} {_short_repr(value)}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{_short_repr(value)} is too large for float64") from None
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, got {type(value).__name__} {_short_repr(value)}") from None


def _short_repr(x: Any, limit: int = 40) -> str:
    try:
        r = repr(x)
    except Exception:  # noqa: BLE001 - a hostile __repr__
        r = f"<{type(x).__name__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."
