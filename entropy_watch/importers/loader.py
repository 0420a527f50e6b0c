"""``load_log``: parse one log path (any supported format) into :class:`ImportedRun` objects, without a store.

Run names: ``run`` if given; else the W&B run name or the value of a ``run_name`` column when the file holds several
runs (``run`` then becomes their prefix, ``<run>-<name>``); else the TRL output folder's name, the TensorBoard
sub-folder's relative path, or the file name without its extension. Derived names are made store-safe by
:func:`~entropy_watch.store.layout.safe_run_name` (characters outside letters, digits and ``_ . - + @ : ,`` become
``_``; at most 200 bytes); a ``run`` given by the user is validated, not changed.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from entropy_watch import aliases as A
from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import (
    compressed,
    detect,
    generic,
    mlruns,
    parquet_table,
    sqlite_logs,
    tensorboard,
    trl,
    verl,
    wandb,
    wandb_offline,
)
from entropy_watch.importers.base import Frame, ImportedRun, Parsed, Progress, assemble, frame_to_series
from entropy_watch.store.layout import safe_run_name, validate_run_name

# trackers that hold many runs per file or folder: format -> reader of (frames by run name, notes)
TRACKER_READERS = {
    "trackio": sqlite_logs.read_trackio,
    "mlflow": sqlite_logs.read_mlflow,
    "mlruns": mlruns.read_store,
    "wandb-offline": wandb_offline.read_runs,
}


def load_log(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
    run: str | None = None,
    progress: Progress | None = None,
    vocab_size: int | None = None,
    reward_max: float | None = None,
    whole_lines: bool = False,
) -> list[ImportedRun]:
    """Parse ``path`` into runs (a W&B CSV or a TensorBoard folder may hold several).

    ``fmt``: one of :data:`~entropy_watch.importers.detect.FORMATS` (auto-detected when None). ``mapping``:
    ``{"step"|"entropy"|"reward"|<canonical name>: source column}`` overrides the alias detection. ``progress`` is
    called with the number of bytes read so far, for progress bars. ``vocab_size``: the policy's vocabulary size V as
    the user knows it (``meta["vocab_size"]``, over what the log states, e.g. a TRL model's ``config.json``); never
    kept for an entropy summed over the sequence (TRL PPO's ``objective/entropy``), which ln V does not bound.
    ``reward_max``: the most the reward can be (``meta["reward_max"]``; 1 when not given, a success rate), so the
    analysis can tell a solved task from a plateau when the reward is a sum of reward functions or a score on another
    scale. ``whole_lines``: ``path`` is still being written (``watch``): a line-oriented text log (CSV, JSONL, verl
    console) is read up to its last line end, since a last line without one may be cut inside a number (``0.`` of
    ``0.0412``, read as 0) and is read whole at the next poll. Raises ImportFormatError (one line naming the file and
    the row) for malformed input.
    """
    if vocab_size is not None and (not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 2):
        raise ImportFormatError(f"vocab_size must be a whole number of at least 2, got {vocab_size!r}")
    if reward_max is not None and not (isinstance(reward_max, (int, float)) and 0 < reward_max < math.inf):
        raise ImportFormatError(f"reward_max must be a positive number, got {reward_max!r}")
    p = Path(path).expanduser()
    detect.check_source(p)  # missing, dangling link, link loop, FIFO or device: one true line, nothing opened
    if compressed.kind(p):
        runs = _load_compressed(p, fmt, mapping, run)
    elif whole_lines and (end := _unfinished_line(p, fmt)) is not None:
        if not end:
            raise ImportFormatError(f"{p} has no complete line yet (still being written?); nothing to read")
        # A log that ends in a line end is read in place; only if it grew meanwhile (the read may have met a line
        # the writer had cut) is it read again from a copy of its first ``end`` bytes, as one that does not end in
        # one always is: no copy of a multi-GB log in $TMPDIR at every poll.
        runs = _load(p, fmt, mapping, run, progress) if _size(p) == end else None
        if runs is None or _size(p) != end:
            with _head_copy(p, end) as inner:
                runs = _load_copy(p, inner, [], fmt, mapping, run)
            for r in runs:  # the source as a plain read records it
                r.source = r.meta["source"] = os.path.abspath(p)
    else:
        runs = _load(p, fmt, mapping, run, progress)
    for r in runs:
        _vocabulary(r, vocab_size)
        if reward_max is not None:
            r.meta["reward_max"] = float(reward_max)
    return runs


@dataclass(frozen=True)
class LogOptions:
    """What the user states for reading a log (``alerts``, ``watch`` and ``report`` on log files, as ``import``):
    ``mapping`` (``--map``), ``vocab_size`` (``--vocab-size``), ``reward_max`` (``--reward-max``)."""

    mapping: dict[str, str] | None = None
    vocab_size: int | None = None
    reward_max: float | None = None

    def given(self) -> list[str]:
        """The options given, as the command line spells them."""
        flags = {"--map": self.mapping, "--vocab-size": self.vocab_size, "--reward-max": self.reward_max}
        return [flag for flag, value in flags.items() if value]

    def load(self, path: str | os.PathLike[str], *, whole_lines: bool = False) -> list[ImportedRun]:
        """:func:`load_log` with these options (``whole_lines``: a log still being written, see there)."""
        return load_log(
            path, mapping=self.mapping, vocab_size=self.vocab_size, reward_max=self.reward_max, whole_lines=whole_lines
        )


def _vocabulary(r: ImportedRun, given: int | None) -> None:
    """Set ``r.meta["vocab_size"]``: ``given`` over what the log states (noted when they differ), and none for an
    entropy summed over the sequence (noted), which ln V does not bound."""
    stated = r.meta.get("vocab_size")
    if given is not None and stated is not None and stated != given:
        r.notes.append(f"vocabulary size {given} as given, over the {stated} the log states")
    v = given if given is not None else stated
    column = r.mapping.get(M.ENTROPY_MEAN, "")
    if v is not None and not A.per_token_entropy(column):
        r.meta.pop("vocab_size", None)
        r.notes.append(
            f"vocabulary size {v} not used: {column!r} is summed over the sequence, which ln V does not bound"
        )
    elif v is not None:
        r.meta["vocab_size"] = v


def _load_compressed(p: Path, fmt: str | None, mapping: dict[str, str] | None, run: str | None) -> list[ImportedRun]:
    """A gzip/bzip2/xz log, read from a plain temporary copy; what is reported names ``p``, never the copy."""
    with compressed.decompressed(p) as (inner, notes):
        return _load_copy(p, inner, notes, fmt, mapping, run)


def _load_copy(
    p: Path, inner: Path, notes: list[str], fmt: str | None, mapping: dict[str, str] | None, run: str | None
) -> list[ImportedRun]:
    """The runs of ``inner``, a temporary copy of ``p``, reported as ``p``'s (errors, notes, meta), ``notes`` first."""
    try:
        runs = _load(inner, fmt, mapping, run, None)
    except ImportFormatError as e:
        raise ImportFormatError(compressed.restore_paths(str(e), inner, p)) from None
    for r in runs:
        r.source = str(p)
        r.notes[:] = notes + [compressed.restore_paths(n, inner, p) for n in r.notes]
        for key, value in r.meta.items():
            if isinstance(value, str):
                r.meta[key] = compressed.restore_paths(value, inner, p)
    return runs


LINE_FORMATS = frozenset({"csv", "wandb-csv", "jsonl", "verl-jsonl", "verl-console", "trl-console"})  # a row a line
JSON_LINE_FORMATS = frozenset({"jsonl", "verl-jsonl"})  # a cut line is no JSON: a whole one can be read at once
_TAIL_CHUNK = 64 * 1024


def _unfinished_line(p: Path, fmt: str | None) -> int | None:
    """For a line-oriented text log: the byte length of its complete lines (up to and including the last ``\n``;
    the whole file as it is now when it ends in a line end; 0 when its one line has no line end yet), read from a
    copy of that many bytes, since the writer may append a line cut inside a number (``0.`` of ``0.0412``) before or
    while the file itself is read. None for a JSON-lines log that ends in a line end or a whole JSON value (a line
    cut later is no JSON: it is read as it is), binary formats, a folder, and a file whose lines end in ``\r`` alone."""
    if not p.is_file():
        return None
    fmt = fmt or detect.detect_format(p)
    if fmt not in LINE_FORMATS:
        return None
    with open(p, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos = end
        carriage = False
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK)
            fh.seek(start)
            block = fh.read(pos - start)
            if pos == end and block[-1:] in (b"\n", b"\r"):
                return None if fmt in JSON_LINE_FORMATS else end
            cut = block.rfind(b"\n")
            if cut >= 0:
                if pos == end and fmt in JSON_LINE_FORMATS and _is_json(block[cut + 1 :]):
                    return None
                return start + cut + 1
            carriage = carriage or b"\r" in block
            pos = start
    return None if fmt in JSON_LINE_FORMATS or carriage else 0


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True


def _size(p: Path) -> int:
    """``p``'s size in bytes now (-1 when it cannot be read: then never equal to a length read before)."""
    try:
        return p.stat().st_size
    except OSError:
        return -1


@contextmanager
def _head_copy(p: Path, size: int) -> Iterator[Path]:
    """A temporary copy of ``p``'s first ``size`` bytes, named like ``p`` in a folder named like its folder (so the
    default run name is ``p``'s), for the time of the ``with`` block."""
    with tempfile.TemporaryDirectory(prefix="entropy-watch-follow-") as tmp:
        folder = Path(tmp) / (p.resolve().parent.name or "log")
        folder.mkdir()
        inner = folder / p.name
        with open(p, "rb") as src, open(inner, "wb") as dst:
            left = size
            while left > 0:
                block = src.read(min(left, 1 << 20))
                if not block:
                    break
                dst.write(block)
                left -= len(block)
        yield inner


def _load(
    p: Path, fmt: str | None, mapping: dict[str, str] | None, run: str | None, progress: Progress | None
) -> list[ImportedRun]:
    fmt = detect.check_format(fmt) if fmt else detect.detect_format(p)
    maps = A.normalize_mapping(mapping)
    step_col = maps.get(A.STEP)
    if run is not None:
        validate_run_name(run)
    if fmt == "tensorboard":
        return _tensorboard(p, maps, run, progress)
    if fmt == "trl":
        parsed = trl.read_trainer_state(p, step_col, progress)
        return [_finish(parsed, run or safe_run_name(trl.default_name(p)), p, fmt, maps)]
    if fmt == "verl-jsonl":
        parsed = verl.read_verl_jsonl(p, step_col, progress)
        return [_finish(parsed, run or safe_run_name(wandb.file_stem(p)), p, fmt, maps)]
    if fmt == "verl-console":
        parsed = verl.read_verl_console(p, step_col, progress)
        return [_finish(parsed, run or safe_run_name(wandb.file_stem(p)), p, fmt, maps)]
    if fmt == "trl-console":
        parsed = trl.read_trl_console(p, step_col, progress)
        return [_finish(parsed, run or safe_run_name(wandb.file_stem(p)), p, fmt, maps)]
    if fmt in TRACKER_READERS:
        groups, notes = TRACKER_READERS[fmt](p, progress)
        return _many(groups, p, fmt, maps, run, notes, step_col, run_meta_key="source_run_name")
    if fmt in ("csv", "wandb-csv"):
        _check_width(p)
        frame = generic.read_csv(p, progress)
    elif fmt == "jsonl":
        frame = generic.read_jsonl(p, progress)
    elif fmt == "parquet":
        frame = parquet_table.read_parquet(p, progress)
    else:
        frame = generic.read_json_list(p, progress)
    summary = wandb.summary_error(p, frame) if fmt in ("jsonl", "json") else None
    if summary is not None:
        raise ImportFormatError(summary)
    notes = list(frame.notes)  # what reading the file decided (a skipped last line, decimal commas, columns left out)
    if fmt == "wandb-csv":
        groups = wandb.split_wandb_frame(frame)
        if not groups:
            raise ImportFormatError(f"{p}: no '<run> - <metric>' columns; pass --format csv")
        return _many(groups, p, fmt, maps, run, notes, step_col, run_meta_key="wandb_run")
    run_col = wandb.run_column(frame)
    if run_col is not None:
        groups = wandb.split_by_run_column(frame, run_col)
        if len(groups) > 1:
            return _many(groups, p, fmt, maps, run, notes, step_col, run_meta_key="source_run_name")
    parsed = frame_to_series(frame, step_col)
    parsed.notes[:0] = notes
    if run_col is not None:
        parsed.meta["source_run_name"] = next(iter(groups))
    return [_finish(parsed, run or safe_run_name(wandb.file_stem(p)), p, fmt, maps)]


MAX_COLUMNS = 50_000
"""The most columns a CSV log may have (one per metric, or per run and metric in a W&B export: 100 runs of 50 metrics
with their __MIN/__MAX are 15,000). A numeric array saved as one CSV row of a million values aborted the process in
pyarrow (``std::bad_alloc``, a core dump and no message) after 27 s and 4.5 GB; 100,000 columns took 114 s."""
_HEAD_BYTES = 1 << 22


def _check_width(p: Path) -> None:
    """ImportFormatError when the first line of the CSV ``p`` has more than :data:`MAX_COLUMNS` fields (separated by
    whichever of ``,``, tab or ``;`` it holds most of); reads at most its first 4 MiB."""
    try:
        with open(p, "rb") as fh:
            line = fh.read(_HEAD_BYTES).split(b"\n", 1)[0]
    except OSError:
        return  # the reader says why, in its words
    fields = 1 + max(line.count(d) for d in (b",", b"\t", b";"))
    if fields > MAX_COLUMNS:
        raise ImportFormatError(
            f"{p}: its first line has {fields:,} fields or more, over the {MAX_COLUMNS:,} columns a log may have "
            "(one per metric): not a log of metrics by step"
        )


def _finish(parsed: Parsed, name: str, path: Path, fmt: str, maps: dict[str, str]) -> ImportedRun:
    return assemble(parsed, name=name, source=str(path), fmt=fmt, mapping=maps)


def _many(
    groups: dict[str, Frame],
    path: Path,
    fmt: str,
    maps: dict[str, str],
    run: str | None,
    notes: list[str],
    step_col: str | None,
    run_meta_key: str,
) -> list[ImportedRun]:
    """One run per group; a single group takes ``run`` as its name, several take it as a prefix."""
    out: list[ImportedRun] = []
    used: set[str] = set()
    for source_name, frame in groups.items():
        parsed = frame_to_series(frame, step_col)
        parsed.notes[:0] = notes + frame.notes
        parsed.meta[run_meta_key] = source_name
        if len(groups) == 1 and run:
            name = run
        else:
            base = safe_run_name(source_name or wandb.file_stem(path))
            name = safe_run_name(f"{run}-{base}") if run else base
        name = _unique(name, used)
        out.append(_finish(parsed, name, path, fmt, maps))
    return out


def _unique(name: str, used: set[str]) -> str:
    candidate, i = name, 2
    while candidate in used:
        candidate, i = f"{name}-{i}", i + 1
    used.add(candidate)
    return candidate


def _tensorboard(path: Path, maps: dict[str, str], run: str | None, progress: Progress | None) -> list[ImportedRun]:
    """One run per event folder under ``path``. With several folders, one that holds no scalars (an ``add_hparams``
    or ``add_text`` sub-folder) or no entropy tag is skipped, and the runs' notes name it; a lone folder's error is
    raised."""
    dirs = tensorboard.event_dirs(path)
    if not dirs:
        raise ImportFormatError(f"no TensorBoard event files (events.out.tfevents.*) under {path}")
    if A.STEP in maps:
        raise ImportFormatError("--map step=... does not apply to TensorBoard events (each point has its own step)")
    default = run or safe_run_name(tensorboard.default_name(path))
    names = tensorboard.run_names(path, dirs, default)
    out: list[ImportedRun] = []
    skipped: dict[str, list[str]] = {}  # why -> folders
    errors: list[ImportFormatError] = []
    used: set[str] = set()
    for d, name in zip(dirs, names, strict=True):
        if name != default:
            name = safe_run_name(f"{run}-{name}" if run else name)
        why = "that could not be read"
        try:
            parsed = tensorboard.read_event_dir(d, progress, entropy_tag=maps.get(M.ENTROPY_MEAN))
            why = "without an entropy tag"
            out.append(assemble(parsed, name=_unique(name, used), source=str(d), fmt="tensorboard", mapping=maps))
        except ImportFormatError as e:
            if len(dirs) == 1:
                raise
            why = "without scalars" if isinstance(e, tensorboard.NoScalars) else why
            skipped.setdefault(why, []).append(os.path.relpath(d, path))
            errors.append(e)
    if not out:
        raise errors[0]
    for why, folders in skipped.items():
        for r in out:
            r.notes.append(f"skipped event folder(s) {why}: {', '.join(folders)}")
    return out
