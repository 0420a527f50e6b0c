"""Which format a log path is in, from its name and its first bytes (``--format`` overrides it).

Folders: a TRL/HF output or checkpoint folder (``trainer_state.json``), else a TensorBoard folder, else an MLflow
file store (``mlruns``), else W&B offline runs (``run-*.wandb``). Files: ``trainer_state.json`` and
``events.out.tfevents.*`` by name; otherwise by content: TensorBoard events under another name (a first record
holding ``brain.Event:2``), a verl JSONL line (``{"step": N, "data": {...}}``), another JSON-lines log, a JSON
document (a ``log_history`` state or a list of rows), verl console lines (``step:N - k:v``), a Trainer's console
output (``{'loss': 0.1, ...}`` dicts), and finally CSV (a W&B
export when its columns read ``<run> - <metric>``); a Parquet table, a trackio project or an MLflow store (SQLite),
a W&B run file by their magic bytes and tables.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
from pathlib import Path
from typing import BinaryIO

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import mlruns, sqlite_logs, tensorboard, trl, verl, wandb, wandb_offline
from entropy_watch.importers.columns import csv_field_limit
from entropy_watch.importers.generic import SNIFF_ROWS, sniff_delimiter

FORMATS: tuple[str, ...] = (
    "trl",
    "verl-jsonl",
    "verl-console",
    "trl-console",
    "tensorboard",
    "wandb-csv",
    "csv",
    "jsonl",
    "json",
    "parquet",
    "trackio",
    "mlflow",
    "mlruns",
    "wandb-offline",
)
_HEAD_BYTES = 256 * 1024


def check_format(fmt: str) -> str:
    """``fmt`` if it is a known format name, else ImportFormatError listing them."""
    if fmt not in FORMATS:
        raise ImportFormatError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    return fmt


def check_source(path: Path) -> None:
    """ImportFormatError (one true line) unless ``path`` is a folder or a regular file that can be read.

    A FIFO, a device (``/dev/zero``) or a socket would block or never end, so they are refused before opening; a
    dangling symbolic link or a link loop is named as such (``exists()`` alone would call both "missing").
    """
    try:
        st = path.stat()
    except OSError as e:
        if not os.path.lexists(path):
            raise ImportFormatError(f"{path} does not exist") from None
        if e.errno == errno.ELOOP:
            raise ImportFormatError(f"{path} is a symbolic link loop; point it at a log file") from None
        if e.errno == errno.ENOENT:
            target = os.readlink(path) if path.is_symlink() else "?"
            raise ImportFormatError(f"{path} is a broken symbolic link (its target {target} does not exist)") from None
        raise ImportFormatError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return
    kind = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
    what = kind.get(stat.S_IFMT(st.st_mode), "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
    raise ImportFormatError(f"{path} is {what}, not a log file; save the log to a file and pass that")


def detect_format(path: Path) -> str:
    """The format name of ``path``; ImportFormatError when it does not exist, is empty or is not recognised."""
    check_source(path)
    if path.is_dir():
        if trl.is_trl_dir(path):
            return "trl"
        if tensorboard.event_dirs(path):
            return "tensorboard"
        if mlruns.run_dirs(path):
            return "mlruns"
        if wandb_offline.run_files(path):
            return "wandb-offline"
        raise ImportFormatError(
            f"{path} is a folder without trainer_state.json, TensorBoard event files, MLflow runs or W&B offline runs; "
            "pass a log file instead"
        )
    if path.name == trl.STATE_FILE:
        return "trl"
    if tensorboard.is_event_file(path):
        return "tensorboard"
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
        if head[:1] == b"\0" and not tensorboard.is_event_data(head):
            head = _after_hole(f, head)
    if not head.strip():
        raise ImportFormatError(f"{path} is empty; nothing to read")
    if tensorboard.is_event_data(head):
        return "tensorboard"
    if head.startswith(b"PAR1"):
        return "parquet"
    if sqlite_logs.is_sqlite(head):
        return sqlite_logs.kind(path)
    if wandb_offline.is_wandb_file(head):
        return "wandb-offline"
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if len(head) < _HEAD_BYTES or e.start < len(head) - 4:  # not just a character cut at the end of the head
            raise ImportFormatError(
                f"{path} is not a text log, nor Parquet or TensorBoard events (binary content); "
                "save it as CSV, JSONL or Parquet"
            ) from None
        text = head[: e.start].decode("utf-8-sig")
    return _from_text(path, text, cut=len(head) == _HEAD_BYTES)


def _after_hole(f: BinaryIO, head: bytes) -> bytes:
    """The first bytes of a text log after the NUL bytes it starts with: a log truncated under a writer that kept its
    offset (logrotate's ``copytruncate``; a writer opened without append mode) continues past a hole of zeros as long
    as what it held. All NUL: ``b""`` (nothing written yet)."""
    while head and not head.lstrip(b"\0"):
        head = f.read(_HEAD_BYTES)
    head = head.lstrip(b"\0")
    return head + f.read(_HEAD_BYTES - len(head)) if head else head


def _next_line_is_object(path: Path) -> bool:
    """Whether the first line of ``path`` that is not blank after its first line end starts a JSON object (``{``):
    the file is JSON lines. One pass over the bytes up to there, in blocks."""
    with open(path, "rb") as f:
        seen_end = False
        while block := f.read(1 << 20):
            if not seen_end:
                end = block.find(b"\n")
                if end < 0:
                    continue
                seen_end, block = True, block[end + 1 :]
            rest = block.lstrip()
            if rest:
                return rest.startswith(b"{")
    return False


def _json_lines_after(first: str, lines: list[str], cut: bool) -> bool:
    """Whether the (up to 3) non-blank lines after ``first`` in ``lines`` are each a JSON object: JSON lines whose
    first line is damaged (a NUL byte, a hand edit), which one bad line must not make a JSON document that fails
    whole. ``cut``: the last of ``lines`` may stop short of its end, so it is left out."""
    after = [ln for ln in lines[lines.index(first) + 1 : len(lines) - cut] if ln.strip()][:3]
    for line in after:
        try:
            if not isinstance(json.loads(line), dict):
                return False
        except (ValueError, RecursionError):
            return False
    return bool(after)


def _cut_json_lines(first: str, lines: list[str], cut: bool) -> str | None:
    """``"verl-jsonl"`` or ``"jsonl"`` when ``first``, a line that is not JSON, is followed by JSON objects: the end of
    a record whose start was cut away (a log truncated while written, as logrotate's ``copytruncate`` does), which
    the line reader skips with a note; None otherwise (it was read as a CSV header, and failed)."""
    if not _json_lines_after(first, lines, cut):
        return None
    nxt = json.loads(next(ln for ln in lines[lines.index(first) + 1 :] if ln.strip()))
    return "verl-jsonl" if verl.is_verl_record(nxt) else "jsonl"


def _from_text(path: Path, text: str, cut: bool = False) -> str:
    """The format of a text log from ``text``, its first bytes; ``cut``: ``text`` stops short of the file's end."""
    stripped = text.lstrip()
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if stripped.startswith("{"):
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:
            if trl.console_entry(first) is not None:  # {'loss': 0.1, ...}: a Trainer's console output
                return "trl-console"
            if '"log_history"' in text:
                return "trl"
            if _json_lines_after(first, lines, cut) or (cut and first is lines[-1] and _next_line_is_object(path)):
                return "jsonl"  # JSON lines whose first is damaged, or longer than the head
            return "json"  # a pretty-printed document
        except RecursionError:
            return "jsonl"  # a line nested too deep: the line reader skips it and says so
        if verl.is_verl_record(obj) or (isinstance(obj, dict) and "step" in obj and isinstance(obj.get("data"), dict)):
            return "verl-jsonl"  # a first line whose step is damaged is skipped by the verl reader, as any other
        if isinstance(obj, dict) and "log_history" in obj:
            return "trl"
        return "jsonl"
    if stripped.startswith("["):
        return "json"
    if (rotated := _cut_json_lines(first, lines, cut)) is not None:
        return rotated
    if any(verl.console_step(ln) for ln in lines[:500]):
        return "verl-console"
    if any(trl.console_entry(ln) is not None for ln in lines if "{'" in ln):
        return "trl-console"
    after = lines.index(first) + 1 if first in lines else len(lines)
    delimiter = sniff_delimiter(first, lines[after : after + SNIFF_ROWS])
    with csv_field_limit():
        header = next(csv.reader([first], delimiter=delimiter), [])
    if len(header) >= 2 or path.suffix.lower() in (".csv", ".tsv"):
        return "wandb-csv" if wandb.is_wandb_header([h.strip() for h in header]) else "csv"
    raise ImportFormatError(f"cannot tell the format of {path}; pass --format with one of: {', '.join(FORMATS)}")
