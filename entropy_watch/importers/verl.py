"""verl logs: the ``file`` tracking backend (JSONL) and console lines (INTEGRATIONS §2.2, §2.5).

* JSONL (``FileLogger``, verl >= 0.6): one object per log call, ``{"step": N, "data": {"actor/entropy": 0.5, ...}}``;
  NaN/inf were written as ``null`` (stored here as NaN: a logged non-finite value, not a missing one).
* Console (``LocalLogger``): ``step:N - key:value - key:value``; numbers only, possibly behind a Ray prefix such as
  ``(TaskRunner pid=12) ``; numpy reprs like ``np.float64(0.5)`` are unwrapped. Other lines are ignored (counted).

``actor/entropy`` is the entropy of pi_old (the recompute pass before the update); ``actor/entropy_loss`` is pi_theta
during the update and, in verl <= 0.3, the only entropy logged. The alias table prefers the former when both exist.

``actor/pg_clipfrac_lower`` is the dual-clip share under verl's ``vanilla`` loss only (``geo_mean`` logs its clipped
A<0 share under that name, ``dppo_*`` the share above ``clip_ratio_c``, others 0), and neither log says which loss
ran: it is kept under verl's name, with a note saying how to read it as ``clip/dual_frac`` (:data:`DUAL_CLIP_NOTE`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from entropy_watch.aliases import VERL_DUAL_CLIP
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers.base import Frame, Parsed, Progress, flatten, frame_to_series
from entropy_watch.importers.generic import open_text, read_json_lines

DUAL_CLIP_SOURCE = VERL_DUAL_CLIP
DUAL_CLIP_NOTE = (
    f"{DUAL_CLIP_SOURCE} kept under verl's name, not as clip/dual_frac: it is the dual-clip share only under "
    "loss_mode=vanilla (geo_mean, dppo_* and others log another number there) and the log does not say the loss; "
    f"for a vanilla run pass --map clip/dual_frac={DUAL_CLIP_SOURCE}"
)
_CONSOLE_STEP = re.compile(r"(?:^|[\s|>)\]])step:(\d+)(?= - |\s*$)")
_NUMPY_REPR = re.compile(r"^(?:np|numpy)\.\w+\((.*)\)$")


def is_verl_record(obj: Any) -> bool:
    """True for a verl FileLogger line: ``{"step": int, "data": {...}}``."""
    return isinstance(obj, dict) and isinstance(obj.get("data"), dict) and isinstance(obj.get("step"), int)


def read_verl_jsonl(path: Path, step_column: str | None = None, progress: Progress | None = None) -> Parsed:
    """Series of a verl JSONL log; a line that is not ``{"step", "data"}`` is skipped with a note (the error when
    such lines are as many as the good ones)."""
    rows, skipped, notes = read_json_lines(path, progress)
    frame = Frame(source=str(path), null_is_nan=True)
    for lineno, obj in rows:
        if not is_verl_record(obj):
            skipped.add(
                f"line {lineno}",
                'expected verl\'s {"step": N, "data": {...}}; pass --format jsonl for a plain JSON-lines log',
            )
            continue
        try:
            frame.add_row({"step": obj["step"], **flatten(obj["data"])}, f"line {lineno}")
        except ValueError as e:
            skipped.add(f"line {lineno}", f"{e}; flatten it or fix the file")
    notes += skipped.settle(str(path), frame.n_rows)
    parsed = frame_to_series(frame, step_column or "step")
    parsed.notes[:0] = notes
    return _verl(parsed)


def _verl(parsed: Parsed) -> Parsed:
    """``parsed`` marked as verl's, with :data:`DUAL_CLIP_NOTE` when it holds ``actor/pg_clipfrac_lower``."""
    parsed.meta["framework"] = "verl"
    if DUAL_CLIP_SOURCE in parsed.series:
        parsed.notes.append(DUAL_CLIP_NOTE)
    return parsed


def console_step(line: str) -> re.Match[str] | None:
    """The ``step:N`` match of a verl console line, or None."""
    return _CONSOLE_STEP.search(line)


def parse_console_line(line: str) -> dict[str, Any] | None:
    """``{"step": N, key: value-text, ...}`` for a ``step:N - k:v`` line, else None."""
    m = console_step(line)
    if m is None:
        return None
    row: dict[str, Any] = {"step": int(m.group(1))}
    for part in line[m.end() :].rstrip("\r\n").split(" - ")[1:]:
        if ":" not in part:
            continue
        key, value = part.rsplit(":", 1)
        value = value.strip()
        inner = _NUMPY_REPR.match(value)
        row[key.strip()] = inner.group(1) if inner else value
    return row


def read_verl_console(path: Path, step_column: str | None = None, progress: Progress | None = None) -> Parsed:
    """Series from verl console output (a saved stdout log)."""
    frame = Frame(source=str(path))
    other = 0
    handle = open_text(path, progress)
    try:
        for lineno, line in enumerate(handle, start=1):
            row = parse_console_line(line)
            if row is None:
                other += line.strip() != ""
                continue
            frame.add_row(row, f"line {lineno}")
    except UnicodeDecodeError as e:
        raise ImportFormatError(f"{path} is not UTF-8 text ({e.reason}); save the log as UTF-8") from None
    finally:
        handle._h.close()
    if frame.n_rows == 0:
        raise ImportFormatError(f"{path}: no 'step:N - key:value' lines found; pass --format for another format")
    parsed = frame_to_series(frame, step_column or "step")
    if other:
        parsed.notes.append(f"ignored {other} console line(s) that are not metrics")
    return _verl(parsed)
