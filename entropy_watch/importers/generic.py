"""Generic tabular logs: CSV (or TSV), JSON lines and a JSON list of row objects, read into a :class:`Frame`.

Errors name the file and the line: a row with more fields than the header, invalid JSON, a JSON value that is not
an object. Nested JSON objects are flattened to ``a/b`` column names. An unfinished *last* JSONL line (no trailing
newline: the writer is still busy) is skipped with a note; an invalid line anywhere else is an error. A JSON list
file must parse as a whole (a truncated one is an error).

Usage: ``read_csv(path)`` / ``read_jsonl(path)`` / ``read_json_list(path)`` -> ``Frame``; the caller turns it into
series with :func:`entropy_watch.importers.base.frame_to_series`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers.base import Frame, Progress, flatten


class _Counting(io.TextIOBase):
    """Text reader that reports the bytes it has consumed to a progress callback (roughly: UTF-8 length)."""

    def __init__(self, handle: io.TextIOBase, progress: Progress | None) -> None:
        self._h = handle
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> str:
        line = self._h.readline(-1 if size is None else size)
        if self._progress is not None and line:
            self._progress(len(line.encode("utf-8", "surrogatepass")))
        return line

    def __iter__(self) -> Iterator[str]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


def open_text(path: Path, progress: Progress | None = None) -> _Counting:
    """Open ``path`` as UTF-8 text (a BOM is dropped), counting bytes for ``progress``."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by the caller via .close()
    except OSError as e:
        raise ImportFormatError(f"cannot read {path}: {e.strerror or e}") from None
    return _Counting(handle, progress)


def _decode_guard(path: Path, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except UnicodeDecodeError as e:
        raise ImportFormatError(
            f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); export it as UTF-8"
        ) from None


def sniff_delimiter(header: str) -> str:
    """``,`` unless the header line has more tabs or semicolons than commas."""
    counts = {d: header.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def read_csv(path: Path, progress: Progress | None = None) -> Frame:
    """A CSV/TSV file with a header row. Short rows are padded (missing cells); long rows are an error."""
    return _decode_guard(path, _read_csv, path, progress)


def _read_csv(path: Path, progress: Progress | None) -> Frame:
    frame = Frame(source=str(path))
    handle = open_text(path, progress)
    try:
        first = handle.readline()
        if not first.strip():
            raise ImportFormatError(f"{path} is empty; nothing to import")
        delimiter = sniff_delimiter(first)
        header = next(csv.reader([first], delimiter=delimiter))
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            dup = sorted({h for h in header if header.count(h) > 1})
            raise ImportFormatError(f"{path} line 1: duplicate column name(s) {', '.join(dup)}; rename them")
        reader = csv.reader(handle, delimiter=delimiter)
        rows: list[list[str]] = []
        width = len(header)
        for fields in reader:
            line = reader.line_num + 1
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != width:
                if len(fields) > width:
                    raise ImportFormatError(
                        f"{path} line {line}: {len(fields)} fields but the header has {width}; "
                        f"fix the row or re-export the file"
                    )
                fields = fields + [""] * (width - len(fields))  # a short row: the missing cells are empty
            rows.append(fields)
            frame.locations.append(f"line {line}")
    except csv.Error as e:
        raise ImportFormatError(f"{path}: malformed CSV ({e}); re-export the file") from None
    finally:
        handle._h.close()
    frame.n_rows = len(rows)
    index = list(range(len(rows)))
    for name, column in zip(header, zip(*rows, strict=True), strict=False):  # transpose at C speed
        frame.cells[name] = (index, list(column))
    if frame.n_rows == 0:
        raise ImportFormatError(f"{path} has a header but no data rows; nothing to import")
    return frame


def read_json_lines(path: Path, progress: Progress | None = None) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """``[(line number, object)]`` per non-empty line, and notes; ImportFormatError on invalid JSON or a non-object."""
    handle = open_text(path, progress)
    try:
        lines = _decode_guard(path, list, handle)
    finally:
        handle._h.close()
    out: list[tuple[int, dict[str, Any]]] = []
    notes: list[str] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines) and not line.endswith("\n"):
                notes.append(f"last line ({lineno}) is unfinished (file still being written?); skipped it")
                continue
            raise ImportFormatError(f"{path} line {lineno}: invalid JSON ({e.msg}); fix or remove that line") from None
        if not isinstance(obj, dict):
            raise ImportFormatError(
                f"{path} line {lineno}: expected a JSON object per line, found {type(obj).__name__}"
            )
        out.append((lineno, obj))
    if not out:
        raise ImportFormatError(f"{path} is empty; nothing to import")
    return out, notes


def read_jsonl(path: Path, progress: Progress | None = None) -> tuple[Frame, list[str]]:
    """A JSON-lines file of flat (or nested) metric objects; returns the frame and notes."""
    frame = Frame(source=str(path))
    rows, notes = read_json_lines(path, progress)
    for lineno, obj in rows:
        frame.add_row(flatten(obj), f"line {lineno}")
    return frame, notes


def load_json(path: Path, progress: Progress | None = None) -> Any:
    """A whole JSON document; ImportFormatError naming the line for truncated or invalid JSON."""
    handle = open_text(path, progress)
    try:
        text = _decode_guard(path, handle._h.read)
    finally:
        handle._h.close()
    if progress is not None:
        progress(len(text.encode("utf-8", "surrogatepass")))
    if not text.strip():
        raise ImportFormatError(f"{path} is empty; nothing to import")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        hint = "the file looks truncated" if e.pos >= len(text.rstrip()) - 1 else "fix the file"
        raise ImportFormatError(f"{path} line {e.lineno}: invalid JSON ({e.msg}); {hint}") from None


def frame_from_records(path: Path, records: list[Any], what: str = "entry", null_is_nan: bool = False) -> Frame:
    """A frame from a list of row objects (JSON list, TRL log_history); non-objects are an error."""
    frame = Frame(source=str(path), null_is_nan=null_is_nan)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ImportFormatError(f"{path} {what} {i + 1}: expected a JSON object, found {type(rec).__name__}")
        frame.add_row(flatten(rec), f"{what} {i + 1}")
    return frame


def read_json_list(path: Path, progress: Progress | None = None) -> Frame:
    """A JSON file holding a list of row objects (or ``{"rows"|"data"|"history": [...]}``)."""
    doc = load_json(path, progress)
    if isinstance(doc, dict):
        for key in ("rows", "data", "history", "log_history", "records"):
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
    if not isinstance(doc, list):
        raise ImportFormatError(f"{path}: expected a JSON list of row objects; pass --format to pick another format")
    if not doc:
        raise ImportFormatError(f"{path} holds an empty list; nothing to import")
    return frame_from_records(path, doc)
