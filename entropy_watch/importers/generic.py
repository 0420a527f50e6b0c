"""Generic tabular logs: CSV (or TSV), JSON lines and a JSON list of row objects, read into a :class:`Frame`.

Errors name the file and the line: a row with more fields than the header, invalid JSON, a JSON value that is not
an object, a field or column name beyond the limits, JSON nested deeper than :data:`~.base.MAX_DEPTH` levels.
Nested JSON objects are flattened to ``a/b`` column names. An unfinished *last* line (no trailing newline: the writer
is still busy) is skipped with a note: in JSONL one that is not valid JSON, in CSV one with fewer fields than the row
before it (:func:`_unfinished` says why a complete-looking one is kept); an invalid line anywhere else is an error. A
JSON list file must parse as a whole (a truncated one is an error).

Large files: CSV and JSONL are read by Arrow's C++ readers into one Arrow column per source column
(:mod:`entropy_watch.importers.columns`); files those readers refuse (ragged rows, mixed JSON types, bad UTF-8) are
read line by line here, the CSV in chunks of :data:`CHUNK_ROWS` rows turned into Arrow columns as they come, so
memory stays about the file's size either way.

A file separated by ``;`` or tabs may write numbers with a decimal comma (``0,532``: a spreadsheet or
``to_csv(sep=";", decimal=",")`` in a locale that writes them so): a column in which some cells read so and none
has a decimal point is read with the comma as the decimal point, and the frame's notes say which columns.

Usage: ``read_csv(path)`` / ``read_jsonl(path)`` / ``read_json_list(path)`` -> ``Frame``; the caller turns it into
series with :func:`entropy_watch.importers.base.frame_to_series`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from entropy_watch.errors import ImportFormatError, listed
from entropy_watch.importers.base import Frame, Progress, Skipped, flatten
from entropy_watch.importers.columns import (
    csv_field_limit,
    csv_locator,
    jsonl_locator,
    read_csv_arrow,
    read_jsonl_arrow,
)

CHUNK_ROWS = 100_000
MAX_COLUMN_NAME = 1024  # characters; a longer "name" is data in the wrong place, not a metric name


class _Counting(io.TextIOBase):
    """Text reader that reports the bytes it has consumed to a progress callback (roughly: UTF-8 length).

    A line without a line end is the file's last: the reader ends there. A log still being written may have grown by
    the next read, and what was appended continues that line: read on, one row cut in two read as two (``21`` and
    ``56,0.3,...``: a step 56 among steps 2100, or two lines of invalid JSON where one unfinished last line is)."""

    def __init__(self, handle: io.TextIOBase, progress: Progress | None) -> None:
        self._h = handle
        self._progress = progress
        self._ended = False  # a line without a line end was read: the end of the file as it was then

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> str:
        if self._ended:
            return ""
        line = self._h.readline(-1 if size is None else size)
        if size in (None, -1) and line and not line.endswith(("\n", "\r")):
            self._ended = True
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


SNIFF_ROWS = 5  # data rows read ahead to check a delimiter against the header


def sniff_delimiter(header: str, rows: list[str] | tuple[str, ...] = ()) -> str:
    """The field delimiter of a delimited text file: among ``,``, tab and ``;``, the one that splits the header and
    each of ``rows`` (the next few lines) into the same number (> 1) of fields, most frequent in the header first;
    without such agreement, ``,`` unless the header line has more tabs or semicolons than commas. (A header cell
    that contains tabs, ``<\t\t<``, must not turn a CSV into a TSV.)"""
    counts = {d: header.count(d) for d in (",", "\t", ";")}
    rows = [r for r in rows if r.strip()]
    if rows:
        for d in sorted((d for d in counts if counts[d]), key=lambda d: -counts[d]):
            with csv_field_limit():
                widths = {len(f) for f in csv.reader([header, *rows], delimiter=d)}
            if len(widths) == 1 and widths.pop() > 1:
                return d
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _peek_rows(path: Path, n: int = SNIFF_ROWS, skip: int = 1) -> list[str]:
    """The data lines after the header's ``skip`` lines (at most ``n``), for :func:`sniff_delimiter`; [] if they
    cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            for _ in range(skip):
                fh.readline()
            return [line for _, line in zip(range(n), fh, strict=False)]
    except OSError:
        return []


HEADER_LINES = 8  # physical lines one header row may take: column names with line breaks in quotes ("reward\nmean")


def _header_record(path: Path, handle: _Counting, first: str) -> tuple[str, int]:
    """The header row's text and the number of lines it takes: ``first``, and the lines after it while a quoted
    column name goes on across line breaks (``"reward\nmean"``: a wrapped header cell as pandas or Excel write it).
    Read as one line, the rest of such a name was read as a row and every row after it had one field too many: each
    was skipped and the import failed, or, with the name last, a bogus row was left out and the name cut short."""
    if '"' not in first:
        return first, 1
    lines = [first]
    unclosed = False

    def feed() -> Iterator[str]:
        nonlocal unclosed
        yield first
        while len(lines) < HEADER_LINES and (line := handle.readline()):
            lines.append(line)
            yield line
        unclosed = True  # the csv reader asked for more: the quote did not close

    with csv_field_limit():
        try:
            next(csv.reader(feed(), delimiter=sniff_delimiter(first)))
        except csv.Error as e:
            raise ImportFormatError(f"{path} line 1: malformed CSV header ({e}); re-export the file") from None
    if unclosed:
        raise ImportFormatError(
            f"{path} line 1: a quote in the header row is not closed within {len(lines)} line(s); fix the header or "
            "re-export the file"
        )
    return "".join(lines), len(lines)


def read_csv(path: Path, progress: Progress | None = None) -> Frame:
    """A CSV/TSV file with a header row. Short rows are padded (missing cells); long rows are skipped (a note)."""
    return _decode_guard(path, _read_csv, path, progress)


def _read_csv(path: Path, progress: Progress | None) -> Frame:
    handle = open_text(path, progress)
    try:
        first = handle.readline()
        if not first.strip():
            raise ImportFormatError(f"{path} is empty; nothing to read")
        first, header_lines = _header_record(path, handle, first)
        delimiter = sniff_delimiter(first, _peek_rows(path, skip=header_lines))
        cells = _header(path, first, delimiter)
        header = _one_line_names(path, cells)
        fast = read_csv_arrow(path, header, delimiter)
        if fast is not None:
            if progress is not None:
                progress(max(0, path.stat().st_size - len(first.encode("utf-8"))))
            columns, kept = fast
            frame = Frame.columnar(str(path), columns, csv_locator(path, delimiter, kept))
        else:
            frame = _read_csv_lines(path, handle, header, delimiter, first_line=header_lines + 1)
    finally:
        handle._h.close()
    _drop_repeated_headers(frame, header, cells)
    wrapped = [name for name, cell in zip(header, cells, strict=True) if name != cell]
    if wrapped:
        frame.notes.append(f"column name(s) {listed(map(repr, wrapped), 3)} held line breaks; read with spaces")
    if frame.n_rows == 0:
        raise ImportFormatError(f"{path} has a header but no data rows; nothing to read")
    _drop_index_columns(frame)
    if delimiter != ",":
        _decimal_commas(frame)
    return frame


def _drop_repeated_headers(frame: Frame, header: list[str], cells: list[str]) -> None:
    """Leave out the rows that repeat the header, cell for cell (two CSV logs joined one after the other, a logger
    that writes its header again when the run resumes): not data. Read as a row, such a line's ``run_name`` cell made
    a run of its own whose one row had no step, which failed the whole import; a note counts them. ``cells`` are the
    header's cells as written (a name with a line break in it repeats so), ``header`` the column names."""
    import pyarrow.compute as pc

    repeat = np.ones(frame.n_rows, dtype=bool)
    for name, cell in zip(header, cells, strict=True):
        raw = frame.cells[name][1]
        col = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
        if not repeat.any() or not pa.types.is_string(col.type):
            return  # a column read as numbers holds no header cell
        same = pc.equal(pc.utf8_trim_whitespace(col), cell).fill_null(False)
        repeat &= np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
    if not repeat.any():
        return
    first = frame.where(int(np.argmax(repeat)))
    keep = np.flatnonzero(~repeat)
    mask = pa.array(~repeat)
    frame.cells = {k: (np.arange(len(keep), dtype=np.int64), raw.filter(mask)) for k, (_, raw) in frame.cells.items()}
    locate = frame.locate or (lambda row: f"row {row + 1}")  # the CSV readers' frames are columnar: never None
    frame.locate = lambda row: locate(int(keep[row]))
    frame.n_rows = len(keep)
    frame.notes.append(
        f"skipped {int(repeat.sum())} row(s) that repeat the header (first at {first}): logs joined one after another?"
    )


_UNNAMED = re.compile(r"(?:Unnamed: \d+)?")  # pandas' to_csv names its index column ""; read_csv calls it "Unnamed: 0"


def _drop_index_columns(frame: Frame) -> None:
    """Leave out the columns without a name (a pandas DataFrame saved with its index, such as W&B's
    ``run.history().to_csv(path)``): row labels, never a metric; a note names them."""
    unnamed = [name for name in frame.cells if _UNNAMED.fullmatch(name)]
    empty = [name for name in unnamed if _blank(frame.cells[name][1])]
    for name in unnamed:
        del frame.cells[name]
    if empty:
        frame.notes.append(f"left out {len(empty)} empty column(s) without a name (a spreadsheet's export)")
    unnamed = [name for name in unnamed if name not in empty]
    if unnamed:
        frame.notes.append(
            f"left out the unnamed column(s) {listed(map(repr, unnamed), 3)}: the index of a pandas DataFrame saved "
            f"with it (to_csv without index=False), not a metric"
        )


def _blank(raw: Any) -> bool:
    """Whether a column's cells (an Arrow column or a list) are all empty or whitespace."""
    import pyarrow.compute as pc

    if not isinstance(raw, pa.Array | pa.ChunkedArray):
        return all(v is None or not str(v).strip() for v in raw)
    if not pa.types.is_string(raw.type):
        return raw.null_count == len(raw)
    return not pc.any(pc.not_equal(pc.utf8_trim_whitespace(raw), "")).as_py()


_DECIMAL_COMMA = r"^[+-]?\d+,\d+(?:[eE][+-]?\d+)?$"
_DECIMAL_POINT = r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$"


def _decimal_commas(frame: Frame) -> None:
    """Read ``0,532`` as 0.532 in each text column of ``frame`` that has such cells and no ``0.532``-style one (a
    column mixing both is left as it is, and its text cells are reported as usual); a note names the columns."""
    import pyarrow.compute as pc

    fixed = []
    for name, (rows, raw) in frame.cells.items():
        col = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
        if not isinstance(col, pa.Array) or not pa.types.is_string(col.type):
            continue
        trimmed = pc.utf8_trim_whitespace(col)
        comma = pc.match_substring_regex(trimmed, _DECIMAL_COMMA)
        if not pc.any(comma).as_py() or pc.any(pc.match_substring_regex(trimmed, _DECIMAL_POINT)).as_py():
            continue
        frame.cells[name] = (rows, pc.if_else(comma, pc.replace_substring(trimmed, ",", "."), col))
        fixed.append(name)
    if fixed:
        frame.notes.append(f"decimal commas read as decimal points in {listed(map(repr, fixed), 3)}")


def _header(path: Path, first: str, delimiter: str) -> list[str]:
    try:
        with csv_field_limit():
            header = [h.strip() for h in next(csv.reader([first], delimiter=delimiter))]
    except csv.Error as e:
        raise ImportFormatError(f"{path} line 1: malformed CSV header ({e}); re-export the file") from None
    long = next((i for i, h in enumerate(header) if len(h) > MAX_COLUMN_NAME), None)
    if long is not None:
        raise ImportFormatError(
            f"{path} line 1: column {long + 1} has a name of {len(header[long]):,} characters (at most "
            f"{MAX_COLUMN_NAME:,}); is the header row missing?"
        )
    blank = [i for i, h in enumerate(header) if not h]
    for i in blank[1:]:  # a spreadsheet's export ends each line in separators (";;"): columns without a name
        header[i] = f"Unnamed: {i}"  # as pandas calls them; left out with the index (_drop_index_columns)
    return header


_LINE_BREAK = re.compile(r"\s*[\r\n]+\s*")


def _one_line_names(path: Path, cells: list[str]) -> list[str]:
    """The column names of the header ``cells``: a line break in a quoted name (and the blanks around it) read as one
    space, so that ``"reward\nmean"`` is the column ``reward mean``; an error for names that repeat."""
    header = [_LINE_BREAK.sub(" ", c) if "\n" in c or "\r" in c else c for c in cells]
    if len(set(header)) != len(header):
        dup = sorted(h for h, n in Counter(header).items() if n > 1)  # one pass: a 10 MB first line has 10^6 cells
        raise ImportFormatError(f"{path} line 1: duplicate column name(s) {', '.join(dup)}; rename them")
    return header


class _Lines:
    """The physical lines of a CSV for :class:`csv.reader`, numbered, with push-back: the lines a row took are
    :attr:`taken`, and :meth:`again` hands some of them to the reader once more (a quote never closed swallowed
    them)."""

    def __init__(self, handle: _Counting, first_line: int) -> None:
        self._it = iter(handle)
        self._back: deque[tuple[int, str]] = deque()
        self._n = first_line - 1
        self.taken: list[tuple[int, str]] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._back:
            item = self._back.popleft()
        else:
            item = (self._n + 1, next(self._it))
            self._n += 1
        self.taken.append(item)
        return item[1]

    def again(self, items: list[tuple[int, str]]) -> None:
        self._back.extendleft(reversed(items))


def _swallowed(rest: list[tuple[int, str]], delimiter: str, width: int) -> bool:
    """Whether a quoted field ran across ``rest`` (the row's lines after its first) that read as rows of their own:
    a quote opened and never closed, not a note that holds a line break."""
    return any(line.count(delimiter) >= max(1, width - 1) for _, line in rest)


def _read_csv_lines(path: Path, handle: _Counting, header: list[str], delimiter: str, first_line: int = 2) -> Frame:
    """The line-by-line reader (exact errors, ragged rows), building Arrow columns chunk by chunk, from the line
    numbered ``first_line`` on (the one after the header). A row whose quote is never closed is skipped and the lines
    its field swallowed are read again as rows (a note says so)."""
    source = _Lines(handle, first_line=first_line)
    reader = csv.reader(source, delimiter=delimiter)
    width = len(header)
    chunks: list[list[pa.Array]] = [[] for _ in header]
    lines: list[int] = []
    rows: list[list[str]] = []
    skipped = Skipped("row(s) with more fields than the header")
    unclosed = Skipped("row(s) with a quote that is never closed")
    notes: list[str] = []
    prev_width = width  # fields of the row before (a file of short rows pads them all)

    def spill() -> None:
        for i, column in enumerate(zip(*rows, strict=True) if rows else ()):  # transpose at C speed
            chunks[i].append(pa.array(column, pa.string()))
        rows.clear()

    def unclosed_quote() -> bool:
        start, first = source.taken[0]
        if len(source.taken) < 2 or '"' not in first or not _swallowed(source.taken[1:], delimiter, width):
            return False
        unclosed.add(f"line {start}", "a quote opens a field there and is not closed; the lines after it were read on")
        source.again(source.taken[1:])
        return True

    with csv_field_limit():
        while True:
            source.taken = []
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:  # e.g. a field past the size limit: what an unclosed quote in a big file gives
                if source.taken and unclosed_quote():
                    continue
                where = f" line {source.taken[-1][0]}" if source.taken else ""
                raise ImportFormatError(f"{path}{where}: malformed CSV ({e}); re-export the file") from None
            line = source.taken[0][0]
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(source.taken) > 1 and unclosed_quote():
                continue
            if len(fields) != width:
                if len(fields) > width:
                    skipped.add(
                        f"line {line}", f"{len(fields)} fields but the header has {width}; fix the row or re-export"
                    )
                    continue
                if _unfinished(source.taken[-1][1], len(fields), prev_width):
                    notes.append(unfinished_note(line, f"{len(fields)} of {width} fields and no line end"))
                    continue
                prev_width = len(fields)
                fields = fields + [""] * (width - len(fields))  # a short row: the missing cells are empty
            else:
                prev_width = width
            rows.append(fields)
            lines.append(line)
            if len(rows) >= CHUNK_ROWS:
                spill()
    spill()
    notes += unclosed.settle(str(path), len(lines)) + skipped.settle(str(path), len(lines))
    line_of = np.asarray(lines, dtype=np.int64)
    columns = {name: pa.chunked_array(parts, pa.string()) for name, parts in zip(header, chunks, strict=True)}
    frame = Frame.columnar(str(path), columns, lambda row: f"line {int(line_of[row])}")
    frame.notes += notes
    return frame


def unfinished_note(lineno: int, why: str = "") -> str:
    """The note for an unfinished last line that was skipped (JSONL and CSV alike)."""
    return f"last line ({lineno}) is unfinished ({why + ': ' if why else ''}file still being written?); skipped it"


def _unfinished(last_line: str, n_fields: int, prev_width: int) -> bool:
    """Whether a CSV row whose last physical line is ``last_line`` is the unfinished end of a file still being written.

    Only the last line of a file can lack a line end, so a row without one is the file's last. It is unfinished when
    it also has fewer fields than the row before it (the header's count, or the count of the short rows before it):
    the writer was cut inside the row. A last row without a line end that has every field is kept: many writers never
    end the file with a newline (six of the real CSVs in shared/real_runs do not), and nothing in the row tells it
    from one cut inside its last field, so such a cut (``2`` for ``23.188117``) cannot be seen.
    """
    return not last_line.endswith(("\n", "\r")) and n_fields < prev_width


def read_json_lines(
    path: Path, progress: Progress | None = None
) -> tuple[list[tuple[int, dict[str, Any]]], Skipped, list[str]]:
    """``[(line number, object)]`` per non-empty line, the lines skipped so far (invalid JSON, not an object: the
    caller adds its own and settles them, :class:`~entropy_watch.importers.base.Skipped`), and notes."""
    handle = open_text(path, progress)
    try:
        lines = _decode_guard(path, list, handle)
    finally:
        handle._h.close()
    out: list[tuple[int, dict[str, Any]]] = []
    notes: list[str] = []
    skipped = Skipped("line(s) that could not be read")
    for lineno, line in enumerate(lines, start=1):
        if lineno == 1 and line.startswith("\0"):  # the hole a truncation under its writer leaves: no data
            hole, line = len(line), line.lstrip("\0")
            notes.append(hole_note(hole - len(line)))
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines) and not line.endswith("\n"):
                notes.append(unfinished_note(lineno))
                continue
            if lineno < len(lines) and not out and not skipped.count and not line.lstrip().startswith("{"):
                notes.append(CUT_FIRST_LINE)
                continue
            skipped.add(f"line {lineno}", f"invalid JSON ({e.msg}); fix or remove that line")
            continue
        except RecursionError:
            skipped.add(f"line {lineno}", TOO_DEEP)
            continue
        if not isinstance(obj, dict):
            skipped.add(f"line {lineno}", f"expected a JSON object per line, found {type(obj).__name__}")
            continue
        out.append((lineno, obj))
    if not out and not skipped.count:
        raise ImportFormatError(f"{path} is empty; nothing to read")
    return out, skipped, notes


CUT_FIRST_LINE = (
    "skipped line 1, the end of a record whose start is not in the file (a log truncated while it was written, as "
    "logrotate's copytruncate does); read on from line 2"
)


def hole_note(n_bytes: int) -> str:
    """The note for a text log that starts with ``n_bytes`` NUL bytes."""
    return (
        f"the file starts with {n_bytes:,} zero bytes: it was truncated while its writer went on at its old offset "
        "(logrotate's copytruncate); what it held before is not in it, read on after them"
    )


TOO_DEEP = "JSON nested too deeply to be a metrics log; flatten it or fix the file"


def _too_deep(path: Path, where: str) -> ImportFormatError:
    return ImportFormatError(f"{path} {where}: {TOO_DEEP}")


def read_jsonl(path: Path, progress: Progress | None = None) -> Frame:
    """A JSON-lines file of flat (or nested) metric objects (what reading decided in ``frame.notes``)."""
    columns = read_jsonl_arrow(path)
    if columns:
        if progress is not None:
            progress(path.stat().st_size)
        return Frame.columnar(str(path), columns, jsonl_locator(path))
    frame = Frame(source=str(path))
    rows, skipped, frame.notes = read_json_lines(path, progress)
    for lineno, obj in rows:
        try:
            frame.add_row(flatten(obj), f"line {lineno}")
        except ValueError as e:
            skipped.add(f"line {lineno}", f"{e}; flatten it or fix the file")
    frame.notes += skipped.settle(str(path), frame.n_rows)
    return frame


def load_json(path: Path, progress: Progress | None = None) -> Any:
    """A whole JSON document; ImportFormatError naming the line for truncated, invalid or too deeply nested JSON."""
    handle = open_text(path, progress)
    try:
        text = _decode_guard(path, handle._h.read)
    finally:
        handle._h.close()
    if progress is not None:
        progress(len(text.encode("utf-8", "surrogatepass")))
    if not text.strip():
        raise ImportFormatError(f"{path} is empty; nothing to read")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        hint = "the file looks truncated" if e.pos >= len(text.rstrip()) - 1 else "fix the file"
        raise ImportFormatError(f"{path} line {e.lineno}: invalid JSON ({e.msg}); {hint}") from None
    except RecursionError:
        raise _too_deep(path, "line 1") from None


def frame_from_records(path: Path, records: list[Any], what: str = "entry", null_is_nan: bool = False) -> Frame:
    """A frame from a list of row objects (JSON list, TRL log_history); an entry that is not an object (or nests too
    deeply) is skipped with a note, or is the error when such entries are as many as the good ones."""
    frame = Frame(source=str(path), null_is_nan=null_is_nan)
    skipped = Skipped(f"{what}(s) that could not be read")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            skipped.add(f"{what} {i + 1}", f"expected a JSON object, found {type(rec).__name__}")
            continue
        try:
            frame.add_row(flatten(rec), f"{what} {i + 1}")
        except ValueError as e:
            skipped.add(f"{what} {i + 1}", f"{e}; flatten it or fix the file")
    frame.notes += skipped.settle(str(path), frame.n_rows)
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
        raise ImportFormatError(f"{path} holds an empty list; nothing to read")
    return frame_from_records(path, doc)
