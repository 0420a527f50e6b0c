"""Arrow-backed columns of a :class:`~entropy_watch.importers.base.Frame`: read in C++, parsed with array operations.

A 3.85M-step CSV (200 MB) held as Python lists of cells took about 5.8 KB per step (21 GB, killed; issue 11). The
readers here keep each column as one Arrow array instead (about the file's size in all) and parse it with vectorised
kernels, with exactly the cell rules of :func:`parse_cell`:

* numbers (and numeric strings, ``nan``/``inf`` included, surrounding white space ignored) are values;
* empty cells and ``null``/``none``/``na``/``n/a``/``<na>``/``nat`` (any case) are missing; a JSON ``null`` is
  missing, or NaN where the format says null means a logged non-finite value (``null_is_nan``);
* anything else is a bad (text) cell. Cells the fast numeric pattern does not match (``1_000``, other scripts'
  digits) go through ``parse_cell`` one by one, so the result never depends on the path taken.

:func:`read_csv_arrow` and :func:`read_jsonl_arrow` return ``None`` when the file needs the line-by-line readers
of :mod:`entropy_watch.importers.generic` (ragged rows, invalid UTF-8, mixed JSON types, an unfinished last line),
which also produce the exact one-line errors. Row locations (``line N``) are computed only when a message needs one.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MISSING = ("", "null", "none", "na", "n/a", "<na>", "nat")
MAX_FIELD = 64 * 2**20  # characters per CSV field (the csv module's default, 128 KiB, refuses long text cells)
_NUMBER = r"(?i)^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|nan|inf|infinity)$"
BLOCK_BYTES = 16 * 2**20


_MISSING_LOWER = frozenset(MISSING)


def parse_cell(value: Any, null_is_nan: bool = False) -> float | None:
    """A raw cell as a float, None when missing; raises ValueError for text that is not a number."""
    if value is None:
        return math.nan if null_is_nan else None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        s = value.strip()
        if s.lower() in _MISSING_LOWER:
            return None
        return float(s)  # accepts nan, inf, -Infinity, 1e-3, " 2 "
    raise ValueError(f"{type(value).__name__} value")


@functools.cache
def _missing_set() -> pa.Array:
    return pa.array(MISSING, pa.string())


def is_arrow(raw: Any) -> bool:
    return isinstance(raw, pa.Array | pa.ChunkedArray)


def head(raw: Any, n: int) -> list[Any]:
    """The first ``n`` raw cells as Python values (lists and Arrow columns alike)."""
    return raw[:n].to_pylist() if is_arrow(raw) else list(raw[:n])


def parse_numeric(
    raw: pa.Array | pa.ChunkedArray, null_is_nan: bool = False
) -> tuple[np.ndarray, np.ndarray, int, tuple[int, str] | None]:
    """Parse an Arrow column: ``(positions of value cells, their float64 values, bad cells, (first bad, its text))``.

    Positions index ``raw``; missing cells are left out (see the module docstring for the rules).
    """
    arr = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
    n = len(arr)
    typ = arr.type
    null = _bool(arr.is_null())
    if pa.types.is_null(typ):
        pos = np.arange(n, dtype=np.int64) if null_is_nan else np.empty(0, np.int64)
        return pos, np.full(len(pos), np.nan), 0, None
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ) or pa.types.is_decimal(typ):
        values = arr.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        keep = ~null if not null_is_nan else np.ones(n, dtype=bool)
        values = np.where(null, np.nan, values)
        pos = np.flatnonzero(keep)
        return pos, values[pos].astype(np.float64), 0, None
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):  # lists, structs, binary: cell by cell
        return _python_cells(arr.to_pylist(), np.arange(n), null_is_nan)
    trimmed = pc.utf8_trim_whitespace(arr)
    missing = _bool(pc.is_in(pc.utf8_lower(trimmed), value_set=_missing_set()))
    number = _bool(pc.match_substring_regex(trimmed, _NUMBER)) & ~missing & ~null
    values = np.full(n, np.nan)
    if number.any():
        values[number] = pc.cast(trimmed.filter(pa.array(number)), pa.float64()).to_numpy(zero_copy_only=False)
    present = number | (null & null_is_nan)
    other = ~number & ~missing & ~null
    bad, first = 0, None
    if other.any():
        idx = np.flatnonzero(other)
        p_pos, p_val, bad, first = _python_cells(trimmed.filter(pa.array(other)).to_pylist(), idx, False)
        values[p_pos] = p_val
        present[p_pos] = True
    pos = np.flatnonzero(present)
    return pos, values[pos], bad, first


def _python_cells(
    cells: list[Any], positions: np.ndarray, null_is_nan: bool
) -> tuple[np.ndarray, np.ndarray, int, tuple[int, str] | None]:
    out_pos, out_val = [], []
    bad, first = 0, None
    for p, v in zip(positions.tolist(), cells, strict=True):
        try:
            x = parse_cell(v, null_is_nan)
        except (ValueError, TypeError, OverflowError):
            bad += 1
            if first is None:
                first = (p, str(v)[:40])
            continue
        if x is not None:
            out_pos.append(p)
            out_val.append(x)
    return np.asarray(out_pos, dtype=np.int64), np.asarray(out_val, dtype=np.float64), bad, first


def _bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def raw_stream(path: Path) -> pa.NativeFile:
    """``path`` opened for Arrow's readers as the bytes it holds: given a path, Arrow decompresses by the file's
    extension, so a ``.csv.gz`` whose gzip header is damaged (not taken for gzip by :mod:`compressed`) escaped as
    "OSError: zlib inflate failed" instead of the line reader's one-line error."""
    return pa.input_stream(str(path), compression=None)


# ---- readers -------------------------------------------------------------------------------------------------------
def read_csv_arrow(path: Path, header: list[str], delimiter: str) -> tuple[dict[str, pa.Array], np.ndarray] | None:
    """Columns of a CSV whose header was already read, and the kept row indices; None: use the line reader.

    A column whose every cell is a plain number comes back as float64 (parsed once, in C++); the others as raw
    strings for :func:`parse_numeric`. Whitespace-only rows are dropped (as the line reader does); ``kept`` maps
    frame rows to data rows. Without a quote character in the file no value can hold a newline, and Arrow parses
    the blocks in parallel; a file in which one does is left to the line reader.

    The header row is read as the table's first row and dropped: Arrow's ``skip_rows`` counts lines, not rows, so a
    header whose quoted column name holds a line break (``"reward\nmean"``) left its second line to be read as data.
    """
    import pyarrow.csv as pcsv

    names = [f"c{i}" for i in range(len(header))]
    quoted = _has_quote(path)
    try:
        with raw_stream(path) as stream:
            table = pcsv.read_csv(
                stream,
                read_options=pcsv.ReadOptions(column_names=names, block_size=BLOCK_BYTES),
                parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=quoted),
                convert_options=pcsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, check_utf8=True
                ),
            ).slice(1)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    cols: list[pa.Array] = []
    for name in names:
        col = table.column(name).combine_chunks()
        try:
            cols.append(pc.cast(col, pa.float64()))  # the common case: every cell a plain number
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            cols.append(col)
    kept = np.arange(table.num_rows, dtype=np.int64)
    text = [c for c in cols if not pa.types.is_floating(c.type)]
    if quoted and any(pc.any(pc.match_substring(c, "\n")).as_py() for c in text):
        return None  # a value across lines: a quote never closed may have swallowed rows (the line reader says)
    if text:  # only cells that are not numbers can be blank
        blank = np.ones(table.num_rows, dtype=bool)
        for col in text:
            blank &= _bool(pc.equal(pc.utf8_trim_whitespace(col), ""))
        if len(text) < len(cols):
            blank[:] = False  # a numeric column has a number in every row: no row is blank
        if blank.any():
            kept = np.flatnonzero(~blank)
            mask = pa.array(~blank)
            cols = [c.filter(mask) for c in cols]
    return dict(zip(header, cols, strict=True)), kept


def _has_quote(path: Path) -> bool:
    with open(path, "rb") as fh:
        while chunk := fh.read(BLOCK_BYTES):
            if b'"' in chunk:
                return True
    return False


ARROW_JSON_DEPTH = 64  # brackets deeper than this go to the line reader: Arrow's JSON parser recurses in C++
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _nested_deeper(path: Path, limit: int) -> bool:
    """Whether ``[``/``{`` nest deeper than ``limit`` anywhere in the file (counted over the raw bytes, so brackets
    inside strings count too: an upper bound, which only costs such a file the line reader). Arrow's JSON reader
    overflows its native stack on a line nested ~10^5 levels deep — the process dies (SIGSEGV), no exception — so
    such a file must never reach it. One vectorised pass over the bytes."""
    depth = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(BLOCK_BYTES):
            b = np.frombuffer(chunk.translate(None, _NOT_BRACKETS), dtype=np.uint8)  # the brackets alone, in C
            if not b.size:
                continue
            level = np.cumsum(np.where((b == 0x5B) | (b == 0x7B), 1, -1), dtype=np.int64) + depth  # [{ up, ]} down
            if int(level.max()) > limit:
                return True
            depth = int(level[-1])
    return False


def read_jsonl_arrow(path: Path) -> dict[str, pa.Array] | None:
    """Flattened columns (``a/b`` for nested objects) of a JSON-lines file; None when it needs the line reader."""
    import pyarrow.json as pjson

    if _nested_deeper(path, ARROW_JSON_DEPTH):
        return None
    try:
        with raw_stream(path) as stream:
            table = pjson.read_json(stream, read_options=pjson.ReadOptions(block_size=BLOCK_BYTES))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError, RecursionError):
        return None
    out: dict[str, pa.Array] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if not _flatten_into(out, name, col.combine_chunks(), depth=0):
            return None
    return out


def _flatten_into(out: dict[str, pa.Array], name: str, arr: pa.Array, depth: int) -> bool:
    """Struct columns become ``name/child`` (like :func:`~entropy_watch.importers.base.flatten`); False: too deep."""
    if not pa.types.is_struct(arr.type):
        out[name] = arr
        return True
    if depth >= 64 or arr.null_count:  # a null object where others are objects: the line reader says what it is
        return False
    for i in range(arr.type.num_fields):
        child = arr.field(i)
        if not _flatten_into(out, f"{name}/{arr.type.field(i).name}", child, depth + 1):
            return False
    return True


def csv_locator(path: Path, delimiter: str, kept: np.ndarray) -> Callable[[int], str]:
    """``row -> "line N"`` for a CSV read by :func:`read_csv_arrow` (one scan of the file, on first use)."""

    @functools.cache
    def lines() -> list[int]:
        out: list[int] = []
        with open(path, encoding="utf-8-sig", newline="", errors="replace") as fh, csv_field_limit():
            reader = csv.reader(fh, delimiter=delimiter)
            next(reader, None)  # the header row, on one line or more
            for fields in reader:
                if fields:  # Arrow skips empty lines too
                    out.append(reader.line_num)
        return out

    def where(row: int) -> str:
        data_row = int(kept[row]) if row < len(kept) else row
        found = lines()
        return f"line {found[data_row]}" if data_row < len(found) else f"row {row + 1}"

    return where


@contextlib.contextmanager
def csv_field_limit(limit: int = MAX_FIELD) -> Iterator[None]:
    """Raise the csv module's (process-wide) field size limit to ``limit`` for the block, then restore it."""
    old = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def jsonl_locator(path: Path) -> Callable[[int], str]:
    """``row -> "line N"`` for a JSON-lines file (blank lines skipped; one scan of the file, on first use)."""

    @functools.cache
    def lines() -> list[int]:
        with open(path, "rb") as fh:
            return [i for i, line in enumerate(fh, start=1) if line.strip()]

    def where(row: int) -> str:
        found = lines()
        return f"line {found[row]}" if row < len(found) else f"row {row + 1}"

    return where
