"""The shape every importer produces (:class:`ImportedRun`) and the shared steps from parsed rows to it.

Two stages, shared by all formats:

1. :func:`frame_to_series` (row formats: CSV, JSONL, JSON list, TRL ``log_history``, verl) turns a :class:`Frame`
   (raw cells by column and row) into numeric series ``name -> (steps, values)``: it finds the step column, parses
   cells, de-duplicates steps (the *last* occurrence wins, per column: a resumed run repeats steps) and records each
   restart as a ``resume`` event.
2. :func:`assemble` (all formats, TensorBoard included) adds canonical names (``entropy/mean``, ``reward/mean``,
   ``clip/region_frac``, ...) next to the source names, using ``mapping`` overrides first and the alias tables of
   :mod:`entropy_watch.aliases` otherwise, and fills ``meta`` (source, format, mapping, entropy definition,
   importer version).

Cells: numbers and numeric strings (``nan``/``inf`` included) are values; empty cells, ``null``, ``None``, ``NA`` and
``N/A`` are *missing* (no point at that step), and so are non-finite cells between the values of a column logged every
k ≥ 2 steps in a table shared with metrics logged more often (:func:`off_cadence`; said in the run's notes). A column
whose non-missing cells are mostly text is a text column and is skipped (listed in ``meta["text_columns"]``; an
entropy column of text is an error). Other non-numeric cells in a numeric column, the entropy column included, are
skipped with a note that counts them and names the first: one bad value never blocks the rows around it. So is a row
whose step is not a non-negative integer (or is 2**53 or more, where floats merge steps), and (in the readers) a
line that is not JSON or a row with more fields than the header (:class:`Skipped`); when the bad rows are as many as
the good ones, the first one's error is raised.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from entropy_watch import aliases as A
from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError, listed
from entropy_watch.importers.columns import is_arrow, parse_cell, parse_numeric
from entropy_watch.importers.step_order import (
    orphaned,
    out_of_line,
    out_of_line_text,
    replaced_by,
    replaced_note,
    restarts,
    restarts_judged_on,
    step_backs,
    unordered,
)
from entropy_watch.store.schema import MAX_STEP

K = TypeVar("K")

IMPORTER_VERSION = "1.0"

Series = tuple[np.ndarray, np.ndarray]  # (steps int64, values float64), sorted by step, one value per step
Progress = Callable[[int], None]  # called with the number of bytes just consumed


@dataclass
class ImportedRun:
    """One run parsed from a log file: every numeric series under its source name and, when mapped, its canonical name.

    ``scalars[name] = (steps int64, values float64)``, sorted by step with one value per step. ``mapping`` maps each
    canonical name (and ``"step"``) to the source column it came from. ``meta`` goes into ``run.json``. ``notes`` are
    one-line remarks for the user (dropped rows, skipped cells, restarts). ``events`` are known change points
    (``{"step", "kind", "payload"}``, e.g. a ``resume``) for the store's ``events`` table.
    """

    name: str
    source: str
    fmt: str
    mapping: dict[str, str]
    scalars: dict[str, Series]
    meta: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def series(self, name: str) -> Series:
        """``(steps, values)`` of ``name`` (canonical or source name); KeyError if absent."""
        return self.scalars[name]

    @property
    def step_range(self) -> tuple[int, int] | None:
        """``(first, last)`` step over all series, or None for a run without points."""
        lo = [int(s[0]) for s, _ in self.scalars.values() if len(s)]
        hi = [int(s[-1]) for s, _ in self.scalars.values() if len(s)]
        return (min(lo), max(hi)) if lo else None


@dataclass
class Skipped:
    """Rows a reader could not use (a line that is not JSON, a row with more fields than the header, a step that is
    no step): each is skipped and counted and the first one named, so one bad row never blocks the rows around it.
    When they are at least as many as the good rows, the file is not what the reader takes it for and
    :meth:`settle` raises the first one's error instead."""

    what: str  # what a skipped row is, e.g. "line(s) that could not be read"
    count: int = 0
    first: tuple[str, str] | None = None  # (where, why) of the first

    def add(self, where: str, why: str, count: int = 1) -> None:
        """Count ``count`` bad rows, the first at ``where`` ("line 7"); ``why`` is the one-line reason with its fix."""
        self.count += count
        if self.first is None:
            self.first = (where, why)

    def settle(self, source: str, good: int) -> list[str]:
        """The note for the rows skipped (none: []); ImportFormatError when they are ``good`` or more."""
        if self.first is None:
            return []
        where, why = self.first
        if self.count >= good:
            raise ImportFormatError(f"{source} {where}: {why}")
        return [f"skipped {self.count} {self.what} (first at {where}: {why})"]


@dataclass
class Frame:
    """Raw cells of a row-oriented log: ``cells[column] = (row indices, raw values)``, only cells that are present.

    ``locations[i]`` says where row ``i`` came from for error messages (e.g. ``"line 17"``).
    """

    source: str
    n_rows: int = 0
    cells: dict[str, tuple[list[int], list[Any]]] = field(default_factory=dict)
    locations: list[str] = field(default_factory=list)
    null_is_nan: bool = False  # JSON null means a logged non-finite value (verl, TRL), not a missing one
    locate: Callable[[int], str] | None = None  # row -> "line N" for columnar frames (computed on demand)
    notes: list[str] = field(default_factory=list)  # what reading the file decided (e.g. decimal commas)
    events: list[dict[str, Any]] = field(default_factory=list)  # restarts reading found (a tracker's timestamps)

    def add_row(self, row: dict[str, Any], location: str) -> None:
        """Append one row (a flat ``column -> raw value`` dict)."""
        i = self.n_rows
        for key, value in row.items():
            col = self.cells.get(key)
            if col is None:
                col = self.cells[key] = ([], [])
            col[0].append(i)
            col[1].append(value)
        self.locations.append(location)
        self.n_rows += 1

    def where(self, row: int) -> str:
        if self.locate is not None:
            return self.locate(row)
        return self.locations[row] if row < len(self.locations) else f"row {row + 1}"

    @classmethod
    def columnar(
        cls, source: str, columns: dict[str, Any], locate: Callable[[int], str], *, null_is_nan: bool = False
    ) -> Frame:
        """A frame of dense Arrow columns (every row has a cell in every column; missing cells are parsed later)."""
        n = len(next(iter(columns.values()))) if columns else 0
        rows = np.arange(n, dtype=np.int64)
        return cls(source, n, {k: (rows, v) for k, v in columns.items()}, null_is_nan=null_is_nan, locate=locate)


@dataclass
class Parsed:
    """Numeric series of one run before canonical mapping, with what parsing learned on the way."""

    series: dict[str, Series]
    notes: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    bad_cells: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # column -> (count, where, first value)
    meta: dict[str, Any] = field(default_factory=dict)
    step_column: str | None = None


MAX_DEPTH = 64  # nested JSON objects deeper than this are refused (a log of metrics is a few levels deep)


def frame_from_series(
    source: str, series: dict[str, tuple[np.ndarray, np.ndarray]], where: str, when: dict[str, np.ndarray] | None = None
) -> Frame:
    """A frame of one row per step — the union of every metric's steps, in order — from per-metric ``(steps,
    values)`` arrays in the order they were written (a tracker that stores one row per metric value); a step written
    twice keeps its last value. Rows are located as ``"<where> step N"``. ``when``: each metric's write times (the
    tracker's timestamps, shape of its steps); with them, the restarts of the metric judged on (the entropy, else
    the busiest) are recorded in ``events`` and replace every metric's points written before them at or past the
    step they went back to (:func:`replaced_by`: the rule row-oriented logs are read by), said in ``notes``."""
    import pyarrow as pa

    events: list[dict[str, Any]] = []
    notes: list[str] = []
    if when is not None:
        series, events, notes = _tracker_restarts(series, when, where)
    kept = {k: _last_per_step(np.asarray(st, np.int64), np.asarray(v, np.float64)) for k, (st, v) in series.items()}
    steps = np.unique(np.concatenate([st for st, _ in kept.values()])) if kept else np.zeros(0, np.int64)
    frame = Frame(source=source, n_rows=len(steps), locate=lambda r: f"{where} step {int(steps[r])}")
    for key, (st, v) in kept.items():
        frame.cells["step (logged)" if key == "step" else key] = (np.searchsorted(steps, st), v)
    frame.cells["step"] = (np.arange(len(steps)), pa.array(steps))  # the tracker's step axis, never a metric's
    frame.events, frame.notes = events, notes
    return frame


def _tracker_restarts(
    series: dict[str, tuple[np.ndarray, np.ndarray]], when: dict[str, np.ndarray], where: str
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[dict[str, Any]], list[str]]:
    """:func:`frame_from_series`'s restarts: ``(series without the points they replaced, resume events, notes)``.
    Judged on one metric (as TensorBoard's tags are), since a metric logged less often steps back at other points;
    a metric that steps back too often (:func:`unordered`) records none."""
    judge = restarts_judged_on({k: len(st) for k, (st, _) in series.items()})
    steps = np.asarray(series[judge][0], np.int64)
    marks = restarts(steps, np.asarray(when[judge], np.float64))
    if not len(marks[0]):
        return series, [], []
    back = step_backs(steps)
    events = [
        {"step": int(steps[i]), "kind": "resume", "payload": {"from_step": int(steps[i - 1]), "metric": judge}}
        for i in back
    ]
    note = replaced_note(steps, replaced_by(marks, steps, np.asarray(when[judge], np.float64)), "point")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, (st, v) in series.items():
        st = np.asarray(st, np.int64)
        replaced = replaced_by(marks, st, np.asarray(when[key], np.float64))
        if not replaced.all():  # a metric only the replaced trajectory logged is left out
            out[key] = (st[~replaced], np.asarray(v)[~replaced])
    first = int(back[0])
    return (
        out,
        events,
        [
            f"{where}: metric {judge!r} restarts {len(back)} time(s) (step {int(steps[first - 1])} -> "
            f"{int(steps[first])}): {note}"
        ],
    )


def _last_per_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(steps, kind="stable")  # stable: among equal steps, write order is kept
    st, v = steps[order], values[order]
    last = np.append(st[1:] != st[:-1], True)
    return st[last], v[last]


def unique_names(names: dict[K, str], tag: Callable[[K], str]) -> dict[K, str]:
    """Each key's name, where a name several keys share gets ``-<tag(key)>`` appended (a tracker's run names need not
    be unique, its run ids are; two logs followed together may both hold a run ``grpo``)."""
    counts = Counter(names.values())
    return {k: n if counts[n] == 1 else f"{n}-{tag(k)}" for k, n in names.items()}


def frames_by_name(frames: dict[str, Frame], names: dict[str, str]) -> dict[str, Frame]:
    """Frames keyed by run id -> keyed by run name (``names[id]``; a shared name gets the id's first 8 characters)."""
    named = unique_names({k: names[k] for k in frames}, lambda k: k[:8])
    return {named[k]: f for k, f in frames.items()}


def folders(path: Path, depth: int) -> Iterator[Path]:
    """``path`` and the folders up to ``depth`` levels below it, level by level, each level sorted; hidden and linked
    folders below ``path`` are not entered (W&B's ``wandb/latest-run`` links to a folder listed under its own name),
    unreadable ones are passed over."""
    level = [path]
    for d in range(depth + 1):
        yield from level
        if d == depth:
            return
        below: list[Path] = []
        for folder in level:
            try:
                below += sorted(e for e in folder.iterdir() if e.is_dir() and not e.is_symlink() and e.name[:1] != ".")
            except OSError:
                continue
        level = below


def flatten(obj: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Nested dicts to ``a/b/c`` keys (JSON logs of nested metrics); ValueError beyond :data:`MAX_DEPTH` levels."""
    if depth > MAX_DEPTH:
        raise ValueError(f"JSON objects nested more than {MAX_DEPTH} levels deep")
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/", depth + 1))
        else:
            out[key] = v
    return out


def _numeric_column(
    frame: Frame, name: str
) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple[int, str, str] | None]:
    """Parse one column: ((row indices, values) or None for a text column, bad-cell summary or None)."""
    rows, raw = frame.cells[name]
    if is_arrow(raw):
        pos, values, bad, first = parse_numeric(raw, frame.null_is_nan)
        rows = np.asarray(rows, dtype=np.int64)
        summary = (bad, frame.where(int(rows[first[0]])), first[1]) if first is not None else None
        if bad and bad >= len(values):
            return None, summary
        return (rows[pos], values), summary
    if not frame.null_is_nan or None not in raw:
        try:  # fast path: every cell a number or a numeric string (numpy parses "nan", "1e-3"; not "" or "abc")
            with np.errstate(all="ignore"):
                values = np.asarray(raw, dtype=np.float64)
            if values.ndim == 1:
                return (np.asarray(rows, dtype=np.int64), values), None
        except (ValueError, TypeError):
            pass
    out_rows: list[int] = []
    out_vals: list[float] = []
    bad = 0
    first_bad: tuple[str, str] | None = None
    for r, v in zip(rows, raw, strict=True):
        try:
            x = parse_cell(v, frame.null_is_nan)
        except (ValueError, TypeError):
            bad += 1
            if first_bad is None:
                first_bad = (frame.where(r), str(v)[:40])
            continue
        if x is not None:
            out_rows.append(r)
            out_vals.append(x)
    summary = (bad, first_bad[0], first_bad[1]) if first_bad is not None else None
    if bad and bad >= len(out_vals):
        return None, summary
    return (np.asarray(out_rows, dtype=np.int64), np.asarray(out_vals, dtype=np.float64)), summary


def dedupe_last(steps: np.ndarray, values: np.ndarray) -> Series:
    """Sort by step keeping the last occurrence of each step (a resumed run logs its steps again)."""
    if len(steps) == 0 or bool(np.all(steps[1:] > steps[:-1])):  # already sorted and unique: the usual log
        return steps.astype(np.int64, copy=False), values.astype(np.float64, copy=False)
    rev_steps = steps[::-1]
    uniq, idx = np.unique(rev_steps, return_index=True)  # first index in the reversed order = last occurrence
    return uniq.astype(np.int64), values[::-1][idx].astype(np.float64)


def differing_repeats(steps: np.ndarray, values: np.ndarray) -> int:
    """How many steps appear more than once in ``steps`` with values that differ (NaN equals NaN): the repeats where
    keeping the last value decided something (an HF Trainer writes ``epoch`` in its training and its evaluation entry
    at one step: the same number twice). ``steps``, ``values``: one column's rows in write order, shape (n,)."""
    order = np.argsort(steps, kind="stable")
    st, v = steps[order], values[order]
    same_step = st[1:] == st[:-1]
    same_value = (v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1]))
    return len(np.unique(st[1:][same_step & ~same_value]))


CADENCE_SHARE = 0.8  # share of a column's intervals between finite values that must be its logging interval
CADENCE_GAP_SHARE = 0.9  # ... and share of its cells off that interval that must be non-finite


def off_cadence(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int]:
    """(mask, k): which non-finite values (bool, shape of ``values``) are gaps in a column logged every k ≥ 2 steps.

    A table written by a logger that shares one row per step between metrics logged at different intervals (a
    W&B or pandas export with ``NaN`` for "not logged", a JSON logger that writes NaN for a metric not computed that
    step) fills the steps between a metric's values with NaN. Training that diverges does not: its NaN runs to the
    end, or sits at the steps the metric was due. So when the finite values' step intervals are one k ≥ 2 in at
    least ``CADENCE_SHARE`` of cases and the steps off that interval's phase are non-finite (a ``CADENCE_GAP_SHARE``
    of them at least), those off-phase non-finite values are gaps; non-finite values *at* the cadence stay values (a
    logged divergence).
    ``steps`` (n,) sorted unique int64, ``values`` (n,) float64; k is 0 when there are no gaps."""
    bad = ~np.isfinite(values)
    none = np.zeros(values.shape, dtype=bool)
    fs = steps[~bad]
    if not bad.any() or fs.size < 3:
        return none, 0
    gaps, counts = np.unique(np.diff(fs), return_counts=True)
    k = int(gaps[np.argmax(counts)])
    if k < 2 or counts.max() < CADENCE_SHARE * (fs.size - 1):
        return none, 0
    phases, counts = np.unique(fs % k, return_counts=True)
    off = steps % k != phases[np.argmax(counts)]
    if not off.any() or bad[off].mean() < CADENCE_GAP_SHARE:
        return none, 0
    return bad & off, k


def _steps_of_rows(frame: Frame, step_col: str | None, parsed: Parsed) -> np.ndarray:
    """Step per row (int64; -1 for rows without a step). A row whose step cell is not an integer in range is
    skipped with a note naming the first; ImportFormatError when such rows are as many as the good ones."""
    if step_col is None:
        parsed.notes.append("no step column; using row order (first row = step 0)")
        return np.arange(frame.n_rows, dtype=np.int64)
    steps = np.full(frame.n_rows, -1, dtype=np.int64)
    skipped = Skipped("row(s) without a usable step")
    fix = "fix that row or pass --map step=COLUMN"
    rows, raw = frame.cells[step_col]
    if is_arrow(raw):
        pos, values, n_text, first_text = parse_numeric(raw)
        rows = np.asarray(rows, dtype=np.int64)
        wrong = ~np.isfinite(values) | (values != np.floor(values)) | (values < 0) | (values >= 2.0**63)
        kinds = [(first_text[0], n_text)] if first_text is not None else []
        if wrong.any():
            kinds.append((int(pos[wrong][0]), int(wrong.sum())))
        for i, count in sorted(kinds):  # text cells and out-of-range numbers, the first of each in file order
            skipped.add(frame.where(int(rows[i])), _bad_step(step_col, raw[int(i)].as_py(), fix), count)
        good = ~wrong
        steps[rows[pos[good]]] = values[good].astype(np.int64)
    else:
        for r, v in zip(rows, raw, strict=True):
            try:
                x = parse_cell(v)
            except (ValueError, TypeError):
                skipped.add(frame.where(r), _bad_step(step_col, v, fix))
                continue
            if x is None:
                continue
            if not math.isfinite(x) or x != int(x) or x < 0 or x > MAX_STEP:
                skipped.add(frame.where(r), _bad_step(step_col, v, fix))
                continue
            steps[r] = int(x)
    parsed.notes += skipped.settle(frame.source, int((steps >= 0).sum()))
    missing = int((steps < 0).sum()) - skipped.count
    if missing:
        parsed.notes.append(
            f"{missing} rows without a value in step column {step_col!r} were skipped"
            + _only_in_skipped(frame, step_col, steps < 0)
        )
    return steps


def _only_in_skipped(frame: Frame, step_col: str, skipped: np.ndarray) -> str:
    """What the skipped rows alone held, and the step column they carry instead: slime logs its rollout/* metrics
    (the reward among them) against ``rollout/step`` in rows of their own, so a W&B export read on ``train/step``
    lost the reward with only a row count to say so."""
    lost, axes = [], []
    for name, cell in frame.cells.items():
        if name == step_col:
            continue
        has = _rows_with(cell, frame.n_rows)
        if has.any() and not (has & ~skipped).any():
            is_step = name.lower() == "step" or name.lower().endswith(("/step", "_step"))
            (axes if is_step else lost).append(name)
    if not lost:
        return ""
    axis = f", logged against {listed(axes, 3)}, another step axis" if axes else ""
    return f"; only they held {listed(lost, 5)}{axis}: those columns are left out"


def _bad_step(step_col: str, value: Any, fix: str) -> str:
    return f"step column {step_col!r} holds {str(value)[:40]!r}, not a non-negative integer below 2**63; {fix}"


EXACT_STEPS = 2**53  # steps are parsed as floats, which tell integers apart only below this


def _inexact_steps(steps: np.ndarray, frame: Frame, parsed: Parsed) -> None:
    """Skip (``steps[row] = -1``) each row whose step is 2**53 or more, with a note: parsed as floats, two such steps
    (9007199254740993 and ...992) read as one, and one row silently replaced the other. No run takes that many
    steps; a step out of line with its neighbours (:func:`_out_of_line`, called first) says so in its own words."""
    big = np.flatnonzero(steps >= EXACT_STEPS)
    if not len(big):
        return
    skipped = Skipped("row(s) whose step is past 2**53")
    about = f"{float(steps[big[0]]):.6g}"
    why = f"step {about} is past 2**53, where a float cannot tell it from the steps next to it; fix that row"
    skipped.add(frame.where(int(big[0])), why, len(big))
    parsed.notes += skipped.settle(frame.source, int((steps >= 0).sum()) - len(big))
    steps[big] = -1


def _out_of_line(steps: np.ndarray, frame: Frame, parsed: Parsed) -> None:
    """Skip (``steps[row] = -1``) each row whose step is :func:`out_of_line`. Read as a restart, one such row would
    make the run end at step 10^15."""
    valid = np.flatnonzero(steps >= 0)
    s = steps[valid]
    odd = out_of_line(s)
    if not len(odd):
        return
    i = int(odd[0])
    skipped = Skipped("row(s) whose step is out of line with the rows around it")
    skipped.add(
        frame.where(int(valid[i])),
        f"{out_of_line_text(s, i)}; fix that row",
        len(odd),
    )
    parsed.notes += skipped.settle(frame.source, len(s) - len(odd))
    steps[valid[odd]] = -1


def _resume_events(steps: np.ndarray, frame: Frame, parsed: Parsed) -> None:
    """A step lower than the one before it marks a restart: record it, leave out (``steps[row] = -1``) the rows it
    replaced (:func:`orphaned`) and say how many. A resumed run steps back once per restart and climbs from there;
    when more than ``UNORDERED_SHARE`` of the rows step back (a file sorted newest first, or shuffled), the rows are
    simply out of order: they are read in step order and no restart is recorded (a ``resume`` at every point would
    explain every jump of entropy)."""
    valid = np.flatnonzero(steps >= 0)
    s = steps[valid]
    back = step_backs(s)
    if unordered(s):
        parsed.notes.append(
            f"rows are not in step order ({len(back)} of {len(s)} step back): read in step order, no restarts "
            f"recorded; a repeated step keeps its last row"
        )
        return
    for i in back:
        row = int(valid[i])
        parsed.events.append(
            {
                "step": int(s[i]),
                "kind": "resume",
                "payload": {"from_step": int(s[i - 1]), "source_location": frame.where(row)},
            }
        )
    if len(back):
        replaced = orphaned(s)
        steps[valid[replaced]] = -1
        parsed.notes.append(
            f"steps go back {len(back)} time(s) (restart at {frame.where(int(valid[back[0]]))}, step "
            f"{int(s[back[0] - 1])} -> {int(s[back[0]])}): {replaced_note(s, replaced)}"
        )


def _step_column(frame: Frame) -> str | None:
    """The step column of ``frame`` by name (:func:`~entropy_watch.aliases.step_columns`): the first in order of
    preference that most rows with an entropy value carry. One stray ``{"step": 1}`` line in a log whose steps are
    ``step_inferred`` dropped every other row (as rows without a step) and read "no entropy column found"; counting
    every row instead would let W&B's ``_step`` (on every log call, an evaluation's too) win over the trainer's
    ``train/global_step``. Of names all too sparse, the one most of those rows carry."""
    found = A.step_columns(frame.cells)
    if len(found) < 2:
        return found[0] if found else None
    entropy = A.detect_canonical(frame.cells).get(M.ENTROPY_MEAN)
    scope = _rows_with(frame.cells[entropy], frame.n_rows) if entropy is not None else np.ones(frame.n_rows, bool)
    have = {c: int((_rows_with(frame.cells[c], frame.n_rows) & scope).sum()) for c in found}
    return next((c for c in found if 2 * have[c] > scope.sum()), max(found, key=lambda c: have[c]))


def _rows_with(cell: tuple[Any, Any], n_rows: int) -> np.ndarray:
    """(n_rows,) bool: the rows where a column (``Frame.cells``' ``(rows, values)``) holds a value (not null, not
    empty)."""
    rows, values = cell
    if hasattr(values, "is_valid"):  # an Arrow array
        valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    else:
        valid = np.array([v is not None and v != "" for v in values], dtype=bool)
    out = np.zeros(n_rows, dtype=bool)
    out[np.asarray(rows)[valid]] = True
    return out


def frame_to_series(frame: Frame, step_column: str | None = None) -> Parsed:
    """Numeric series of ``frame``: step column from ``step_column`` or the aliases, else row order."""
    parsed = Parsed(series={}, events=list(frame.events))
    if frame.n_rows == 0:
        raise ImportFormatError(f"{frame.source} holds no data rows; nothing to read")
    if step_column is not None and step_column not in frame.cells:
        raise ImportFormatError(
            f"step column {step_column!r} not found in {frame.source} (columns: {listed(frame.cells, 15)}); "
            f"pass --map step=COLUMN"
        )
    step_col = step_column or _step_column(frame)
    parsed.step_column = step_col
    steps = _steps_of_rows(frame, step_col, parsed)
    _out_of_line(steps, frame, parsed)
    _inexact_steps(steps, frame, parsed)
    _resume_events(steps, frame, parsed)
    text_cols: list[str] = []
    between: list[str] = []
    repeated: list[str] = []  # columns with two values at one step, outside a restart (whose note says it)
    for name in frame.cells:
        if name == step_col:
            continue
        col, bad = _numeric_column(frame, name)
        if bad is not None:
            parsed.bad_cells[name] = bad
        if col is None:
            text_cols.append(name)
            continue
        rows, vals = col
        row_steps = steps[rows]
        keep = row_steps >= 0
        s, v = dedupe_last(row_steps[keep], vals[keep])
        # W&B's _step/_runtime/_timestamp count log calls: an evaluation entry at the trainer's step differs there
        if len(s) < int(keep.sum()) and not parsed.events and step_col is not None and not name.startswith("_"):
            differ = differing_repeats(row_steps[keep], vals[keep])
            if differ:
                repeated.append(f"{name!r} ({differ} steps)")
        gaps, k = off_cadence(s, v)
        if k:
            between.append(f"{name!r} ({int(gaps.sum())} of {len(s)} rows, logged every {k} steps)")
            s, v = s[~gaps], v[~gaps]
        if len(s):
            parsed.series[name] = (s, v)
    if between:
        parsed.notes.append(
            f"non-finite cells off a column's logging interval read as not logged (a table shared with metrics "
            f"logged more often): {', '.join(between)}"
        )
    if repeated:
        parsed.notes.append(f"steps logged twice: kept the last row's value in {listed(repeated, 3)}")
    if text_cols:
        parsed.meta["text_columns"] = sorted(text_cols)
    return parsed


def assemble(
    parsed: Parsed,
    *,
    name: str,
    source: str,
    fmt: str,
    mapping: dict[str, str] | None = None,
    entropy_definition: str | None = None,
) -> ImportedRun:
    """Add canonical names to ``parsed`` and build the :class:`ImportedRun`; ImportFormatError without entropy.

    ``mapping`` holds canonical names (already normalized) -> source columns; ``entropy_definition`` overrides the
    definition looked up from the entropy column's name and the format.
    """
    mapping = dict(mapping or {})
    mapping.pop(A.STEP, None)
    series = parsed.series
    for canonical, column in mapping.items():
        if column not in series:
            why = "is not numeric" if column in parsed.meta.get("text_columns", ()) else "not found"
            raise ImportFormatError(
                f"column {column!r} given for {canonical} {why} in {source} (columns: {listed(series, 15)}); "
                f"pass --map {_short(canonical)}=COLUMN with one of them"
            )
    detected = A.detect_canonical(series)
    final = {**detected, **mapping}
    text_cols = list(parsed.meta.get("text_columns", ()))
    if M.ENTROPY_MEAN not in final:
        text_ent = A.detect_canonical(text_cols).get(M.ENTROPY_MEAN)
        if text_ent is not None and text_ent in parsed.bad_cells:
            _, where, value = parsed.bad_cells[text_ent]
            raise ImportFormatError(
                f"{source} {where}: entropy column {text_ent!r} holds {value!r}; the column is mostly text, "
                f"not numbers: fix the file or pass --map entropy=COLUMN"
            )
        text = f"; text columns: {listed(text_cols, 15)}" if text_cols else ""
        hint = A.missing_entropy_hint(series)
        raise ImportFormatError(
            f"no entropy column found in {source} (columns: {listed(series, 15)}{text}); pass --map entropy=COLUMN"
            + (f", or for the next run: {hint}" if hint else "")
        )
    ent_col = final[M.ENTROPY_MEAN]
    notes = list(parsed.notes)
    for col, (count, where, value) in sorted(parsed.bad_cells.items()):
        if col in text_cols:
            continue
        notes.append(f"column {col!r}: skipped {count} non-numeric cell(s) (first at {where}: {value!r})")
    scalars: dict[str, Series] = dict(series)
    for canonical, column in final.items():
        if canonical != column and canonical in series and mapping.get(canonical) == column:
            notes.append(f"source column {canonical!r} is replaced by {column!r} (from the mapping)")
        scalars[canonical] = series[column]
    if M.REWARD_MEAN not in final:
        text_reward = A.detect_canonical(text_cols).get(M.REWARD_MEAN)
        if text_reward is not None and text_reward in parsed.bad_cells:  # there, but not numbers ("0%")
            _, where, value = parsed.bad_cells[text_reward]
            notes.append(
                f"reward column {text_reward!r} is not numeric (first cell {value!r} at {where}): left out; fix "
                f"the file or pass --map reward=COLUMN"
            )
        else:
            notes.append("no reward column found; pass --map reward=COLUMN to add one")
    elif A.is_eval(final[M.REWARD_MEAN]):
        n = len(series[final[M.REWARD_MEAN]][0])
        notes.append(f"reward/mean comes from the validation column {final[M.REWARD_MEAN]!r} ({n} points)")
    ent_steps, ent_vals = series[ent_col]
    finite = ent_vals[np.isfinite(ent_vals)]
    if len(finite) and float(finite.max()) <= 0 < -float(finite.min()):  # an entropy is never negative: this is -H
        scalars[M.ENTROPY_MEAN] = (ent_steps, -ent_vals)
        notes.append(
            f"entropy column {ent_col!r} holds no positive value: read as a loss (-H) and negated; pass "
            f"--map entropy=COLUMN if the entropy is in another column"
        )
    elif (finite < 0).any():
        notes.append(
            f"entropy column {ent_col!r} holds {int((finite < 0).sum())} negative value(s) of {len(finite)}: an "
            f"entropy is never negative, so they read as 0; check the column (a loss -H, or another quantity?)"
        )
    trl_cols = A.trl_signature(series) if fmt != "trl" and "framework" not in parsed.meta else []
    if trl_cols:  # TRL's log_history as JSONL, CSV or a W&B export: its entropy means what TRL's does
        notes.append(f"read as a TRL log: its columns name TRL's GRPO/RLOO metrics ({', '.join(trl_cols[:3])}, ...)")
    definition = (
        entropy_definition
        or A.entropy_definition(
            ent_col, "trl" if trl_cols or parsed.meta.get("framework") == "trl" else fmt, columns=series
        )
        or "unknown (not stated by the source)"
    )
    full_mapping = {A.STEP: parsed.step_column or "<row order>", **dict(sorted(final.items()))}
    meta = {
        "source": os.path.abspath(source),
        "format": fmt,
        "column_mapping": full_mapping,
        "mapping_overrides": {k: v for k, v in mapping.items()},
        "entropy_definition": definition,
        "entropy_column": ent_col,
        "reward_column": final.get(M.REWARD_MEAN),
        "importer_version": IMPORTER_VERSION,
        **({"framework": "trl"} if trl_cols else {}),
        **parsed.meta,
    }
    return ImportedRun(
        name=name,
        source=os.path.abspath(source),
        fmt=fmt,
        mapping=full_mapping,
        scalars=scalars,
        meta=meta,
        notes=notes,
        events=list(parsed.events),
    )


def _short(canonical: str) -> str:
    for short, full in A.SHORT_KEYS.items():
        if full == canonical:
            return short
    return canonical
