"""W&B runs logged offline (``WANDB_MODE=offline``): ``wandb/offline-run-<time>-<id>/run-<id>.wandb``.

What a user has on an air-gapped cluster until ``wandb sync``, and what W&B itself cannot show locally (DETECTION §A).
The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then LevelDB-style records
in 32 KiB blocks (``crc32 | length u16 | type u8``, a record split FIRST/MIDDLE/LAST across blocks), each a protobuf
``wandb_internal.Record``. We read only what a run's metrics need — ``Record.history`` (items keyed by ``nested_key``
or ``key``, values as ``value_json`` or the typed ``value`` oneof, the step in ``step.num``) and ``Record.run`` (name,
id, project) — through a subset of W&B's schema declared here with the same field numbers (protobuf keeps them
stable), so W&B itself need not be installed; ``protobuf`` is (the ``wandb`` extra). A record whose checksum fails,
or an unfinished one at the end (the run is still writing, or its process was killed), is skipped with a note; the
records before and after it are read. Media, tables and histograms (JSON objects) are not metrics and are left out.
"""

from __future__ import annotations

import functools
import json
import struct
import zlib
from pathlib import Path
from typing import Any

from entropy_watch.errors import ImportFormatError, require
from entropy_watch.importers.base import Frame, Progress, folders, frames_by_name

HEADER = b":W&B\xe1\xbe\x00"
_BLOCK = 32768
_REC = struct.Struct("<IHB")  # crc32(type byte + payload), payload length, type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_MAX_DEPTH = 3  # project/wandb/offline-run-*/run-*.wandb


def is_wandb_file(head: bytes) -> bool:
    return head.startswith(HEADER[:4])


def run_files(path: Path) -> list[Path]:
    """``run-*.wandb`` files at ``path`` (a file or a folder) or up to three folder levels below it, sorted; linked
    folders are not followed, so W&B's ``wandb/latest-run`` is not read twice."""
    if path.is_file():
        return [path]
    return sorted(f for d in folders(path, _MAX_DEPTH) for f in d.glob("run-*.wandb") if f.is_file())


@functools.cache
def record_class() -> Any:
    """The ``Record`` message class of the subset of ``wandb_internal.proto`` read here."""
    require("google.protobuf", "wandb")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(
        name="entropy_watch_wandb_subset.proto", package="ew_wandb", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, str, int | None], repeated: tuple[str, ...] = ()) -> Any:
        m = fd.message_type.add(name=name)
        for fname, number, ftype, type_name, oneof in fields:
            label = f.LABEL_REPEATED if fname in repeated else f.LABEL_OPTIONAL
            field = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
            if oneof is not None:
                field.oneof_index = oneof
        return m

    message("HistoryStep", ("num", 1, f.TYPE_INT64, "", None))
    item = message(
        "HistoryItem",
        ("key", 1, f.TYPE_STRING, "", None),
        ("nested_key", 2, f.TYPE_STRING, "", None),
        ("boolean", 4, f.TYPE_BOOL, "", 0),
        ("integer", 5, f.TYPE_SINT64, "", 0),
        ("number", 6, f.TYPE_DOUBLE, "", 0),
        ("value_json", 16, f.TYPE_STRING, "", None),
        repeated=("nested_key",),
    )
    item.oneof_decl.add(name="value")
    message(
        "HistoryRecord",
        ("item", 1, f.TYPE_MESSAGE, ".ew_wandb.HistoryItem", None),
        ("step", 2, f.TYPE_MESSAGE, ".ew_wandb.HistoryStep", None),
        repeated=("item",),
    )
    message(
        "RunRecord",
        ("run_id", 1, f.TYPE_STRING, "", None),
        ("project", 3, f.TYPE_STRING, "", None),
        ("display_name", 8, f.TYPE_STRING, "", None),
    )
    rec = message(
        "Record",
        ("history", 2, f.TYPE_MESSAGE, ".ew_wandb.HistoryRecord", 0),
        ("run", 17, f.TYPE_MESSAGE, ".ew_wandb.RunRecord", 0),
    )
    rec.oneof_decl.add(name="record_type")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("ew_wandb.Record"))


def records(data: bytes) -> tuple[list[bytes], int, bool]:
    """``(payloads, records skipped for a bad checksum or a broken split, ends unfinished)`` of a ``.wandb`` file's
    bytes (header included). A damaged record costs the rest of its block, as in LevelDB's log reader."""
    out: list[bytes] = []
    skipped, pending, pos, n = 0, None, len(HEADER), len(data)
    while pos < n:
        room = _BLOCK - pos % _BLOCK
        if room < _REC.size:  # a block's tail too short for a header is padding
            pos += room
            continue
        if pos + _REC.size > n:
            return out, skipped, True
        crc, length, kind = _REC.unpack_from(data, pos)
        if length == 0 and kind == 0:  # zero padding to the block's end
            pos += room
            continue
        start, end = pos + _REC.size, pos + _REC.size + length
        if end > n:
            return out, skipped, True
        payload = data[start:end]
        if zlib.crc32(bytes([kind]) + payload) != crc or kind not in (_FULL, _FIRST, _MIDDLE, _LAST):
            skipped += 1
            pending = None
            pos += room  # resynchronise at the next block
            continue
        pos = end
        if kind == _FULL:
            out.append(payload)
        elif kind == _FIRST:
            pending = payload
        elif pending is None:  # a MIDDLE or LAST without its FIRST
            skipped += 1
        elif kind == _MIDDLE:
            pending += payload
        else:
            out.append(pending + payload)
            pending = None
    return out, skipped, pending is not None


def _value(item: Any) -> Any:
    if item.value_json:
        try:
            return json.loads(item.value_json)  # W&B writes NaN and Infinity as JSON's NaN / Infinity tokens
        except ValueError:
            return None
    which = item.WhichOneof("value")
    return getattr(item, which) if which in ("boolean", "integer", "number") else None


def read_runs(path: Path, progress: Progress | None = None) -> tuple[dict[str, Frame], list[str]]:
    """One frame per W&B run id in the ``.wandb`` files at or below ``path`` (a resumed run's files are one run),
    named by the run's display name, and the notes."""
    files = run_files(path)
    if not files:
        raise ImportFormatError(f"no W&B offline run files (run-*.wandb) in {path} or three levels below it")
    record_cls = record_class()
    frames: dict[str, Frame] = {}
    names: dict[str, str] = {}
    notes: list[str] = []
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as e:
            raise ImportFormatError(f"{file}: cannot be read ({e.strerror or e})") from None
        if progress is not None:
            progress(len(data))
        if not data.startswith(HEADER):
            raise ImportFormatError(f"{file}: not a W&B run file (no ':W&B' header, or a version this reader lacks)")
        payloads, skipped, unfinished = records(data)
        run_id, rows = file.stem.removeprefix("run-"), []
        for payload in payloads:
            rec = record_cls()
            try:
                rec.ParseFromString(payload)
            except Exception:  # noqa: BLE001 - protobuf's DecodeError: a record we cannot read is one skipped record
                skipped += 1
                continue
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                run_id = rec.run.run_id or run_id
                names[run_id] = rec.run.display_name or names.get(run_id) or run_id
            elif kind == "history":
                rows.append(_row(rec.history))
        names.setdefault(run_id, run_id)
        frame = frames.setdefault(run_id, Frame(source=str(file)))
        for i, row in enumerate(rows):
            frame.add_row(row, f"{file.parent.name}/{file.name} history record {i + 1}")  # a resume: 2 files, 1 name
        if skipped:
            notes.append(f"{file}: skipped {skipped} damaged record(s); read the records around them")
        if unfinished:
            notes.append(f"{file} ends in an unfinished record (still being written, or its writer was killed)")
    frames = {k: f for k, f in frames.items() if f.n_rows}
    if not frames:
        raise ImportFormatError(f"{path}: its W&B run files hold no logged metrics; nothing to read")
    return frames_by_name(frames, names), notes


def _row(history: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for item in history.item:
        key = "/".join(item.nested_key) if len(item.nested_key) else item.key
        value = _value(item)
        if key and isinstance(value, int | float) and not isinstance(value, bool):
            row[key] = value
    if history.HasField("step") or "_step" not in row:
        row["_step"] = int(history.step.num)
    return row
