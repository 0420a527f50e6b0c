"""TensorBoard event files (OpenRLHF ``train/<key>``, verl, TRL with ``report_to="tensorboard"``; INTEGRATIONS §3.2).

``PATH`` is an event file or a folder; every folder below it that holds ``events.out.tfevents.*`` files is one run
(OpenRLHF writes ``<tensorboard_dir>/<run_name>/``), named after its path relative to ``PATH``. A single file is
recognised by its name or by its first record (an ``Event`` holding ``brain.Event:2``). Scalars written as
``simple_value`` and scalar-shaped tensor summaries (``add_scalar(..., new_style=True)``) are both read.

Files are read record by record here, with tensorboard's protos and checksum (the ``tb`` extra: ``pip install
'entropy-watch[tb]'``; TensorFlow is not needed), because tensorboard's own readers stop at the first bad record
without a word. A record is ``uint64 length, uint32 masked CRC32C(length), Event proto, uint32 masked CRC32C(proto)``
(TFRecord). What reading decides is said in the run's notes, naming the file:

* a record whose checksum fails is skipped (its points are missing) and reading goes on at the next record; when its
  length itself is damaged, the next valid record is looked for in the following :data:`RESYNC_BYTES` bytes, and
  failing that the rest of the file is left out;
* a last record cut short (the writer is still writing, or the copy was cut) is left out.

Points are put in write order (wall time, across files). A step written twice keeps the last value written. Restarts
follow the rule of every other format (:func:`~entropy_watch.importers.step_order.step_backs`): judged on the entropy
tag (the busiest tag when there is none), a step *lower* than the one before marks a restart, recorded as a ``resume``
event, and every tag's points written before it at or past the step it went back to are left out
(:func:`~entropy_watch.importers.step_order.replaced_by`, by wall time: the rule rows are read by, in row order); a
repeated step does not (an HF Trainer logs ``epoch`` in its training and its evaluation entry at one step).
Points whose step is out of line with both neighbours (:func:`~entropy_watch.importers.step_order.out_of_line`) are
skipped, and a tag whose points step back too often (:func:`~entropy_watch.importers.step_order.unordered`: two writers
interleaved) is read in step order without restarts. Event files whose scalars were written over the same span of
time come from two or more writers at once (every rank of a distributed job logging): a note says so.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entropy_watch.errors import ImportFormatError, listed, require
from entropy_watch.importers.base import Parsed, Progress, dedupe_last
from entropy_watch.importers.step_order import (
    UNORDERED_SHARE,
    out_of_line,
    out_of_line_text,
    replaced_by,
    replaced_note,
    restarts,
    restarts_judged_on,
    step_backs,
    unordered,
)

EVENT_PREFIX = "events.out.tfevents."
FILE_VERSION = b"brain.Event:"  # the first record of every event file: Event(file_version="brain.Event:2")
RESYNC_BYTES = 64 * 1024  # how far past a damaged record header the next valid record is looked for
_HEADER = struct.Struct("<QI")  # record length, masked CRC32C of the length's 8 bytes
_CRC = struct.Struct("<I")

Points = list[tuple[int, float, float]]  # (step, value, wall time) in the order written


class NoScalars(ImportFormatError):
    """An event folder or file without scalar summaries (``add_hparams`` or ``add_text`` only, histograms only)."""


def is_event_file(path: Path) -> bool:
    return path.name.startswith(EVENT_PREFIX)


def is_event_data(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) opens with a TensorBoard event record, whatever the file's name."""
    if len(head) < _HEADER.size:
        return False
    (length,) = struct.unpack_from("<Q", head)
    return 0 < length <= 1024 and FILE_VERSION in head[_HEADER.size : _HEADER.size + length]


def event_dirs(path: Path) -> list[Path]:
    """Folders under ``path`` (itself included) that hold event files, sorted; ``[path]`` for an event file."""
    if path.is_file():
        return [path]
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(f.startswith(EVENT_PREFIX) for f in files):
            found.append(Path(root))
    return found


def event_files(path: Path) -> list[Path]:
    """The event files of one run: ``path`` itself when it is a file, else its ``events.out.tfevents.*``, sorted."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if is_event_file(p) and p.is_file())


def run_names(path: Path, dirs: list[Path], default: str) -> list[str]:
    """One name per event folder: ``default`` for ``path`` itself, else the relative path with ``/`` -> ``-``."""
    names = []
    for d in dirs:
        rel = "" if d == path or d.is_file() else os.path.relpath(d, path)
        names.append(default if rel in ("", ".") else rel.replace(os.sep, "-"))
    return names


def default_name(path: Path) -> str:
    """The run name an event file or folder gets by default: a folder's name; for a file named
    ``events.out.tfevents.<time>.<host>.<pid>`` its folder's name (the run's, where TensorBoard shows it), for a file
    named otherwise its name without the extension."""
    if path.is_file() and is_event_file(path):
        return path.resolve().parent.name or path.name
    return path.stem if path.is_file() else path.resolve().name


@dataclass
class _Scan:
    """What reading one event file found besides its points."""

    name: str
    corrupt: int = 0  # records skipped for a failed checksum
    first_corrupt: tuple[int, int | None] | None = None  # (byte offset, last step read before it)
    lost: int = 0  # bytes left out after a damaged header with no valid record found after it
    cut: bool = False  # the last record is cut short
    last_step: int | None = None
    records: int = 0
    tags: set[str] = field(default_factory=set)  # tags it holds points of

    def bad(self, offset: int) -> None:
        self.corrupt += 1
        if self.first_corrupt is None:
            self.first_corrupt = (offset, self.last_step)

    def notes(self) -> list[str]:
        if not self.records and self.lost and self.first_corrupt == (0, None):
            return [f"{self.name}: not TensorBoard events (no valid record in it); left out"]
        out = []
        if self.first_corrupt is not None:
            offset, step = self.first_corrupt
            after = f"after step {step}" if step is not None else "before any step"
            out.append(
                f"{self.name}: skipped {self.corrupt} corrupt record(s) (failed checksum; first at byte {offset:,}, "
                f"{after}); the points in them are missing"
            )
        if self.lost:
            read = f"points read up to step {self.last_step}" if self.last_step is not None else "no points read"
            out.append(
                f"{self.name}: no valid record after the corrupt one, so its last {self.lost:,} bytes were not read; "
                f"{read}"
            )
        if self.cut:
            out.append(
                f"{self.name}: its last record is cut short (still being written, or a copy cut short); left out"
            )
        return out


def _records(data: Any, scan: _Scan) -> Iterator[tuple[int, bytes]]:
    """``(offset, record)`` of one event file's bytes ``data`` (``bytes`` or an mmap), checksums verified."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c  # the writer's own checksum

    size, pos = len(data), 0
    while pos < size:
        if size - pos < _HEADER.size:
            scan.cut = True
            return
        length, header_crc = _HEADER.unpack_from(data, pos)
        if masked_crc32c(data[pos : pos + 8]) != header_crc:
            scan.bad(pos)
            nxt = _resync(data, pos + 1, masked_crc32c)
            if nxt is None:
                scan.lost = size - pos
                return
            pos = nxt
            continue
        start, end = pos + _HEADER.size, pos + _HEADER.size + length + _CRC.size
        if end > size:
            scan.cut = True
            return
        body = data[start : start + length]
        if masked_crc32c(body) != _CRC.unpack_from(data, start + length)[0]:
            scan.bad(pos)
        else:
            yield pos, body
        pos = end


def _resync(data: Any, start: int, crc: Any) -> int | None:
    """The offset of the next record with a valid header and body within :data:`RESYNC_BYTES` of ``start``, or None.
    Candidates are offsets whose length field is below 2**24 (its five high bytes zero), as every scalar record's is."""
    size, limit = len(data), min(len(data), start + RESYNC_BYTES)
    q = data.find(b"\0" * 5, start + 3, limit + 8) - 3
    while 0 <= q < limit:
        if q >= start and size - q >= _HEADER.size:
            length, header_crc = _HEADER.unpack_from(data, q)
            body_end = q + _HEADER.size + length
            if (
                crc(data[q : q + 8]) == header_crc
                and body_end + _CRC.size <= size
                and crc(data[q + _HEADER.size : body_end]) == _CRC.unpack_from(data, body_end)[0]
            ):
                return q
        q = data.find(b"\0" * 5, q + 4, limit + 8) - 3
    return None


def _read_file(path: Path, scalars: dict[str, Points], tensors: dict[str, Points]) -> tuple[_Scan, float, float]:
    """Add the points of one event file to ``scalars``/``tensors``; ``(scan, first, last wall time of its points)``."""
    from tensorboard.compat.proto import event_pb2

    scan = _Scan(name=path.name)
    first, last = np.inf, -np.inf
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return scan, first, last
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                for offset, body in _records(data, scan):
                    try:
                        event = event_pb2.Event.FromString(body)
                    except Exception:  # protobuf's DecodeError: valid checksums over bytes that are no Event
                        scan.bad(offset)
                        continue
                    scan.records += 1
                    if not event.HasField("summary"):
                        continue
                    step, wall = int(event.step), float(event.wall_time)
                    for v in event.summary.value:
                        kind = v.WhichOneof("value")
                        if kind == "simple_value":
                            tag = v.tag
                            scalars.setdefault(tag, []).append((step, float(v.simple_value), wall))
                        elif kind == "tensor":
                            x, tag = _tensor_scalar(v.tensor), v.tag or v.node_name
                            if x is None:
                                continue
                            tensors.setdefault(tag, []).append((step, x, wall))
                        else:
                            continue
                        scan.tags.add(tag)
                        first, last = min(first, wall), max(last, wall)
                        scan.last_step = step
    except OSError as e:
        raise ImportFormatError(f"cannot read {path}: {e.strerror or e}") from None
    return scan, first, last


def read_event_dir(path: Path, progress: Progress | None = None, entropy_tag: str | None = None) -> Parsed:
    """Scalar series of one event folder (or file); :class:`NoScalars` when it holds none. ``entropy_tag``: the tag
    restarts are judged on (``--map entropy=TAG``; found by the aliases when None)."""
    require("tensorboard", "tb")
    scalars: dict[str, Points] = {}
    tensors: dict[str, Points] = {}
    notes: list[str] = []
    spans: list[tuple[float, float, str, set[str]]] = []
    unreadable: list[str] = []
    for f in event_files(path):
        scan, first, last = _read_file(f, scalars, tensors)
        if progress is not None:
            progress(f.stat().st_size)
        notes += scan.notes()
        if first <= last:
            spans.append((first, last, f.name, scan.tags))
        elif not scan.records and (scan.corrupt or scan.lost):
            unreadable.append(f.name)
    raw = {**{t: p for t, p in tensors.items() if t not in scalars}, **scalars}
    if not raw:
        if unreadable:
            raise ImportFormatError(f"{path}: not TensorBoard events (no valid record in {listed(unreadable, 3)})")
        raise NoScalars(f"{path}: no scalar summaries in the TensorBoard events; nothing to read")
    parsed = Parsed(series={}, notes=notes, step_column="<tensorboard step>")
    writers = _overlapping(spans)
    if writers:
        parsed.notes.append(
            f"event files written at the same time by two or more writers ({listed(writers, 4)}: every rank logging?): "
            f"read as one series, the last value written at each step kept; import one file to read one writer"
        )
    judge = restarts_judged_on({t: len(p) for t, p in raw.items()}, entropy_tag)
    odd: list[str] = []
    tags = {tag: _in_write_order(tag, points, odd) for tag, points in raw.items()}
    steps, _, walls = tags[judge]
    # the restarts, judged on one tag (none between files written at the same time) ...
    marks = (np.zeros(0), np.zeros(0, np.int64)) if writers else restarts(steps, walls)
    for tag, (steps, values, walls) in tags.items():
        replaced = replaced_by(marks, steps, walls)  # ... they replace every tag's points
        if tag == judge:
            _restarts(tag, steps, replaced, parsed, repeats_said=bool(writers))
        if not replaced.all():  # a tag only the replaced trajectory logged is left out
            parsed.series[tag] = dedupe_last(steps[~replaced], values[~replaced])
    if odd:
        parsed.notes.append(f"skipped points whose step is out of line with the points around them: {listed(odd, 3)}")
    parsed.meta["tensorboard_tags"] = len(raw)
    return parsed


def _in_write_order(tag: str, points: Points, odd: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps int64, values, wall times)`` of one tag's points in write order (wall time across files; stable: file
    order within one), without the points whose step is out of line with both neighbours (said in ``odd``)."""
    points.sort(key=lambda p: p[2])
    steps = np.array([p[0] for p in points], dtype=np.int64)
    values = np.array([p[1] for p in points], dtype=np.float64)
    walls = np.array([p[2] for p in points], dtype=np.float64)
    bad = out_of_line(steps)
    if len(bad):
        i = int(bad[0])
        odd.append(f"{tag!r} ({len(bad)}, first {out_of_line_text(steps, i)})")
        steps, values, walls = np.delete(steps, bad), np.delete(values, bad), np.delete(walls, bad)
    return steps, values, walls


def _overlapping(spans: list[tuple[float, float, str, set[str]]]) -> list[str]:
    """Names of event files that wrote a tag over the same span of time as another file writing it too (two
    writers of one series; two writers of different tags, such as a trainer's and the user's, do not collide)."""
    spans = sorted(spans, key=lambda s: s[:3])
    hit: set[str] = set()
    for i, (_, last, name, tags) in enumerate(spans):
        for first2, _, name2, tags2 in spans[i + 1 :]:
            if first2 > last:
                break
            if tags & tags2:
                hit.update((name, name2))
    return [s[2] for s in spans if s[2] in hit]


def _tensor_scalar(proto: Any) -> float | None:
    from tensorboard.util import tensor_util

    try:
        arr = tensor_util.make_ndarray(proto)
    except Exception:
        return None
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
        return None
    return float(arr.reshape(()))


def _restarts(tag: str, steps: np.ndarray, replaced: np.ndarray, parsed: Parsed, repeats_said: bool) -> None:
    """Restarts of ``tag`` (its steps in write order), by the rule of every format (module doc); ``replaced``: its
    points they replaced (none when files were written at the same time); ``repeats_said``: the notes already say why
    steps repeat (files written at the same time)."""
    back = step_backs(steps)
    repeated = len(steps) - len(np.unique(steps))
    if unordered(steps):
        why = "" if repeats_said else ": two or more writers interleaved?"
        parsed.notes.append(
            f"points of tag {tag!r} are not in step order ({len(back)} of {len(steps)} step back{why}): read in step "
            f"order, no restarts recorded; a repeated step keeps its last value written"
        )
        return
    for i in back:
        parsed.events.append(
            {"step": int(steps[i]), "kind": "resume", "payload": {"from_step": int(steps[i - 1]), "tag": tag}}
        )
    if len(back):
        kept = "kept the last value written for each step"
        if replaced.any():
            kept = replaced_note(steps, replaced, "point")
        parsed.notes.append(
            f"tag {tag!r} restarts {len(back)} time(s) (step {int(steps[back[0] - 1])} -> {int(steps[back[0]])}): "
            f"{kept}"
        )
    elif repeated and not repeats_said:
        many = " (two writers?)" if repeated > UNORDERED_SHARE * len(steps) else ""
        parsed.notes.append(
            f"tag {tag!r}: {repeated} step(s) written more than once{many}; kept the last value written"
        )
