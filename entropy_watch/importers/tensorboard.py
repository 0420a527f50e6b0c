"""TensorBoard event files (OpenRLHF ``train/<key>``, verl, TRL with ``report_to="tensorboard"``; INTEGRATIONS §3.2).

Read with tensorboard's own ``EventAccumulator`` (the ``tb`` extra: ``pip install 'entropy-watch[tb]'``); TensorFlow
is not needed. ``PATH`` is an event file or a folder; every folder below it that holds ``events.out.tfevents.*``
files is one run (OpenRLHF writes ``<tensorboard_dir>/<run_name>/``), named after its path relative to ``PATH``.
Scalars written as ``simple_value`` and scalar-shaped tensor summaries are both read. Steps that appear twice (a
restarted writer appending to the same folder) keep the last value written; the restart is recorded as an event.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from entropy_watch.errors import ImportFormatError, require
from entropy_watch.importers.base import Parsed, Progress, dedupe_last

EVENT_PREFIX = "events.out.tfevents."


def is_event_file(path: Path) -> bool:
    return path.name.startswith(EVENT_PREFIX)


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


def run_names(path: Path, dirs: list[Path], default: str) -> list[str]:
    """One name per event folder: ``default`` for ``path`` itself, else the relative path with ``/`` -> ``-``."""
    names = []
    for d in dirs:
        rel = "" if d == path or d.is_file() else os.path.relpath(d, path)
        names.append(default if rel in ("", ".") else rel.replace(os.sep, "-"))
    return names


def read_event_dir(path: Path, progress: Progress | None = None) -> Parsed:
    """Scalar series of one event folder (or file); ImportFormatError when it holds no scalars."""
    require("tensorboard", "tb")
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(path), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0}, purge_orphaned_data=False)
    try:
        acc.Reload()
    except Exception as e:  # corrupted records surface as DataLossError or plain exceptions
        raise ImportFormatError(f"{path}: unreadable TensorBoard events ({type(e).__name__}: {e})") from None
    if progress is not None:
        files = [path] if path.is_file() else [p for p in path.iterdir() if is_event_file(p)]
        progress(sum(p.stat().st_size for p in files))
    raw: dict[str, list[tuple[int, float, float]]] = {}
    tags = acc.Tags()
    for tag in tags.get(ea.SCALARS, []):
        raw[tag] = [(e.step, float(e.value), e.wall_time) for e in acc.Scalars(tag)]
    for tag in tags.get(ea.TENSORS, []):
        if tag in raw:
            continue
        points = [(e.step, _tensor_scalar(e.tensor_proto), e.wall_time) for e in acc.Tensors(tag)]
        points = [p for p in points if p[1] is not None]
        if points:
            raw[tag] = points  # type: ignore[assignment]
    if not raw:
        raise ImportFormatError(f"{path}: no scalar summaries in the TensorBoard events; nothing to import")
    parsed = Parsed(series={}, step_column="<tensorboard step>")
    for tag, points in raw.items():
        points.sort(key=lambda p: p[2])  # write order across files: the last value written wins
        steps = np.array([p[0] for p in points], dtype=np.int64)
        values = np.array([p[1] for p in points], dtype=np.float64)
        parsed.series[tag] = dedupe_last(steps, values)
    _restarts(raw, parsed)
    parsed.meta["tensorboard_tags"] = len(raw)
    return parsed


def _tensor_scalar(proto: Any) -> float | None:
    from tensorboard.util import tensor_util

    try:
        arr = tensor_util.make_ndarray(proto)
    except Exception:
        return None
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
        return None
    return float(arr.reshape(()))


def _restarts(raw: dict[str, list[tuple[int, float, float]]], parsed: Parsed) -> None:
    """A step not above the one before it in write order (on the busiest tag: one point per step) marks a restart."""
    tag = max(raw, key=lambda t: len(raw[t]))
    steps = np.array([p[0] for p in raw[tag]], dtype=np.int64)  # already in write (wall-time) order
    back = np.flatnonzero(steps[1:] <= steps[:-1]) + 1
    for i in back:
        parsed.events.append(
            {"step": int(steps[i]), "kind": "resume", "payload": {"from_step": int(steps[i - 1]), "tag": tag}}
        )
    if len(back):
        parsed.notes.append(
            f"tag {tag!r} restarts {len(back)} time(s) (step {int(steps[back[0] - 1])} -> {int(steps[back[0]])}); "
            f"kept the last value written for each step"
        )
