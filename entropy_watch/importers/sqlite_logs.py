"""Trackers that keep a run's metrics in a local SQLite file: trackio and MLflow (DETECTION §A: both local-first).

* **trackio** (TRL's ``report_to="trackio"``; one ``<project>.db`` per project under ``~/.cache/huggingface/trackio``):
  table ``metrics(run_name, [run_id], step, metrics)``, one row per ``trackio.log`` call, ``metrics`` a JSON object
  (text or bytes) in which a non-finite value is written as the string ``"NaN"``/``"Infinity"``.
* **MLflow** (``mlflow.db``, the default backend since 3.7; verl's ``mlflow`` logger, HF ``report_to="mlflow"``):
  tables ``runs(run_uuid, name, lifecycle_stage)`` and ``metrics(run_uuid, key, value, step, timestamp, is_nan)``, one
  row per metric value. MLflow stores NaN as ``is_nan`` with value 0 and ±inf as ±float max; both are restored. Runs
  deleted in MLflow (``lifecycle_stage = 'deleted'``) are left out. A run resumed into its run id logs steps again:
  its restarts, by ``timestamp``, replace what was logged before them at or past the step they went back to.

Every run in the file becomes a :class:`Frame` (``step`` plus one column per metric), read into runs like a CSV with a
``run_name`` column. The file is opened read-only and never written (a live writer's WAL is read, not replayed). A
metrics row whose JSON does not parse is skipped and counted; it never blocks the rows around it.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers.base import Frame, Progress, flatten, frame_from_series, frames_by_name

MAGIC = b"SQLite format 3\x00"
_FLOAT_MAX = sys.float_info.max


def is_sqlite(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection (never writes, never creates); one line when the file is no readable database."""
    con = None
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{_immutable(path)}", uri=True)
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.Error as e:
        if con is not None:
            con.close()
        raise ImportFormatError(f"{path}: not a readable SQLite database ({e}); copy it whole and retry") from None
    return con


def _immutable(path: Path) -> str:
    """``"&immutable=1"`` for a WAL-mode database with no ``-wal`` file beside it (no writer has it open, and all it
    holds is in the file); else ``""``. Opened read-only but not so, SQLite created ``<db>-wal`` and ``<db>-shm``
    next to the user's log and left them there (and cannot open it at all in a read-only folder)."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return ""
    wal = header[:16] == MAGIC and header[18:20] == b"\x02\x02"  # file format read/write versions 2: WAL
    return "&immutable=1" if wal and not Path(f"{path}-wal").exists() else ""


@contextmanager
def _reading(path: Path, what: str, progress: Progress | None) -> Iterator[sqlite3.Connection]:
    """A read-only connection to ``path``; an SQLite error while reading is one line naming ``what``."""
    con = _connect(path)
    try:
        yield con
    except sqlite3.Error as e:
        raise ImportFormatError(f"{path}: unreadable {what} ({e})") from None
    finally:
        con.close()
    if progress is not None:
        progress(path.stat().st_size)


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in con.execute(f"PRAGMA table_info({table})")}  # table: one of our literals


def kind(path: Path) -> str:
    """``"trackio"`` or ``"mlflow"`` from the tables of the SQLite file ``path``; ImportFormatError for any other."""
    con = _connect(path)
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        metrics = _columns(con, "metrics") if "metrics" in tables else set()
        if {"run_name", "step", "metrics"} <= metrics:
            return "trackio"
        if {"run_uuid", "key", "value", "step"} <= metrics and "runs" in tables:
            return "mlflow"
    except sqlite3.Error as e:
        raise ImportFormatError(f"{path}: not a readable SQLite database ({e}); copy it whole and retry") from None
    finally:
        con.close()
    shown = ", ".join(sorted(tables)[:8]) or "none"
    raise ImportFormatError(
        f"{path} is a SQLite database but neither a trackio project nor an MLflow store (tables: {shown})"
    )


def read_trackio(path: Path, progress: Progress | None = None) -> tuple[dict[str, Frame], list[str]]:
    """One frame per trackio run (by ``run_id`` when the file has it, named by ``run_name``) and the notes."""
    frames: dict[str, Frame] = {}
    names: dict[str, str] = {}
    bad, first_bad = 0, None
    with _reading(path, "trackio metrics table", progress) as con:
        rid = "run_id" if "run_id" in _columns(con, "metrics") else "run_name"
        query = f"SELECT id, run_name, {rid}, step, metrics FROM metrics ORDER BY id"  # noqa: S608 - literal names
        for row_id, run_name, run_key, step, blob in con.execute(query):
            try:
                obj = json.loads(blob)
                row = flatten(obj) if isinstance(obj, dict) else None
            except (ValueError, TypeError, RecursionError):
                row = None
            if row is None:
                bad += 1
                first_bad = first_bad if first_bad is not None else row_id
                continue
            key = str(run_key)
            frame = frames.get(key)
            if frame is None:
                frame = frames[key] = Frame(source=str(path))
                names[key] = str(run_name)
            frame.add_row({"step": step, **row}, f"metrics row id {row_id}")
    if not frames:
        raise ImportFormatError(f"{path}: the trackio project holds no logged metrics; nothing to read")
    notes = [f"skipped {bad} metrics row(s) whose JSON did not parse (first: id {first_bad})"] if bad else []
    return frames_by_name(frames, names), notes


def read_mlflow(path: Path, progress: Progress | None = None) -> tuple[dict[str, Frame], list[str]]:
    """One frame per MLflow run (named by ``runs.name``, else its id), deleted runs left out, and the notes."""
    per_run: dict[str, dict[str, tuple[list[int], list[float], list[bool], list[float]]]] = {}
    names: dict[str, str] = {}
    deleted = 0
    with _reading(path, "MLflow metrics table", progress) as con:
        run_cols = _columns(con, "runs")
        metric_cols = _columns(con, "metrics")
        name = "r.name" if "name" in run_cols else "NULL"
        live = "WHERE r.lifecycle_stage IS NOT 'deleted'" if "lifecycle_stage" in run_cols else ""
        nan = "m.is_nan" if "is_nan" in metric_cols else "0"
        when = "m.timestamp" if "timestamp" in metric_cols else "m.rowid"  # write time, else write order
        if live:
            deleted = con.execute("SELECT count(*) FROM runs WHERE lifecycle_stage = 'deleted'").fetchone()[0]
        query = (  # noqa: S608 - column names are literals chosen above, never user input
            f"SELECT m.run_uuid, {name}, m.key, m.value, m.step, {nan}, {when} FROM metrics m "
            f"JOIN runs r ON r.run_uuid = m.run_uuid {live} ORDER BY m.run_uuid, m.key, {when}, m.step"
        )
        for run_uuid, run_name, key, value, step, is_nan, at in con.execute(query):
            names.setdefault(run_uuid, run_name or str(run_uuid)[:8])
            cols = per_run.setdefault(run_uuid, {}).get(key)
            if cols is None:
                cols = per_run[run_uuid][key] = ([], [], [], [])
            cols[0].append(int(step or 0))
            cols[1].append(float(value))
            cols[2].append(bool(is_nan))
            cols[3].append(float(at or 0))
    if not per_run:
        raise ImportFormatError(f"{path}: the MLflow store holds no logged metrics; nothing to read")
    frames = {
        run: frame_from_series(
            str(path),
            {str(k): (st, _mlflow_values(v, n)) for k, (st, v, n, _) in keys.items()},
            f"run {run}",
            {str(k): np.asarray(at, np.float64) for k, (_, _, _, at) in keys.items()},  # restarts, by timestamp
        )
        for run, keys in per_run.items()
    }
    notes = [f"left out {deleted} run(s) deleted in MLflow"] if deleted else []
    return frames_by_name(frames, names), notes


def _mlflow_values(values: list[float], is_nan: list[bool]) -> np.ndarray:
    """MLflow's stored values as logged: NaN where ``is_nan`` (stored as 0), ±inf where ±float max."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(v >= _FLOAT_MAX, np.inf, np.where(v <= -_FLOAT_MAX, -np.inf, v))
    return np.where(np.asarray(is_nan, dtype=bool), np.nan, v)
