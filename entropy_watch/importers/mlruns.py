"""MLflow's file store (``./mlruns``, the default before MLflow 3.7 and what older runs were logged to).

``mlruns/<experiment id>/<run id>/metrics/<key>`` holds one line per logged value, ``<timestamp ms> <value> <step>``
(a key with ``/`` is a sub-folder; values ``nan``/``inf`` as Python prints them), ``tags/mlflow.runName`` the run's
name and ``meta.yaml`` its ``lifecycle_stage``. ``PATH`` may be the store, one experiment folder or one run folder;
every run below it becomes one run (deleted ones and ``.trash`` left out). A line that does not parse is skipped and
counted, never blocking the lines around it; a value logged twice at a step keeps the last one written. A run resumed
into the same run id (``mlflow.start_run(run_id=...)`` after a restart from a checkpoint) logs steps again: its
restarts, judged on the entropy metric by the timestamps, replace what was logged before them at or past the step they
went back to, as in every other format (:func:`~entropy_watch.importers.base.frame_from_series`). MLflow before
0.9 wrote no step (``<timestamp ms> <value>``): in a metric file whose lines all lack one, the line order is the step
(the first line step 0), with a note; MLflow itself reads such lines all at step 0, which would keep one point.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from entropy_watch.errors import ImportFormatError, listed
from entropy_watch.importers.base import Frame, Progress, folders, frame_from_series, frames_by_name
from entropy_watch.importers.columns import raw_stream

_MAX_DEPTH = 2  # store/<experiment>/<run>


def is_run_dir(path: Path) -> bool:
    return (path / "metrics").is_dir() and (path / "meta.yaml").is_file()


def run_dirs(path: Path) -> list[Path]:
    """MLflow run folders at ``path`` or up to two levels below it (``.trash`` and hidden folders left out), sorted."""
    return sorted(d for d in folders(path, _MAX_DEPTH) if is_run_dir(d)) if path.is_dir() else []


def _meta(run: Path) -> dict[str, str]:
    """The flat ``key: value`` lines of ``meta.yaml`` (all the file store writes there)."""
    out: dict[str, str] = {}
    try:
        for line in (run / "meta.yaml").read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "-")):
                out[key.strip()] = value.strip().strip("'\"")
    except OSError:
        pass
    return out


def _name(run: Path, meta: dict[str, str]) -> str:
    try:
        tag = (run / "tags" / "mlflow.runName").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        tag = ""
    return tag or meta.get("run_name") or run.name


def read_store(path: Path, progress: Progress | None = None) -> tuple[dict[str, Frame], list[str]]:
    """One frame per live MLflow run under ``path`` (by run name; a shared name gets the run id), and notes."""
    runs = run_dirs(path)
    if not runs:
        raise ImportFormatError(f"no MLflow runs (<run>/metrics and meta.yaml) in {path} or two levels below it")
    frames: dict[str, Frame] = {}
    names: dict[str, str] = {}
    deleted, bad, first_bad = 0, 0, ""
    stepless: list[str] = []  # metric keys whose lines hold no step
    for run in runs:
        meta = _meta(run)
        if meta.get("lifecycle_stage") == "deleted":
            deleted += 1
            continue
        series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        times: dict[str, np.ndarray] = {}
        metrics = run / "metrics"
        for root, dirs, files in os.walk(metrics):
            dirs.sort()
            for f in sorted(files):
                file = Path(root) / f
                if progress is not None:
                    progress(file.stat().st_size)
                steps, values, when, n_bad, where, no_step = _metric_file(file)
                bad += n_bad
                first_bad = first_bad or where
                key = file.relative_to(metrics).as_posix()
                if no_step and key not in stepless:
                    stepless.append(key)
                if len(steps):
                    series[key], times[key] = (steps, values), when
        if series:  # keyed by the run id (unique across experiments)
            frames[run.name] = frame_from_series(str(run), series, f"run {run.name}", times)
            names[run.name] = _name(run, meta)
    if not frames:
        raise ImportFormatError(f"{path}: its MLflow runs hold no logged metrics; nothing to read")
    notes = [f"left out {deleted} run(s) deleted in MLflow"] if deleted else []
    if bad:
        notes.append(f"skipped {bad} metric line(s) that are not '<timestamp> <value> <step>' (first: {first_bad})")
    if stepless:
        notes.append(
            f"metric lines without a step ('<timestamp> <value>', MLflow before 0.9) in "
            f"{listed(map(repr, stepless), 3)}: their line order is the step (first line = step 0)"
        )
    return frames_by_name(frames, names), notes


def _metric_file(file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, str, bool]:
    """``(steps, values, timestamps, lines skipped, where the first was, no step)`` of one metric file, in the order
    written: read by Arrow's CSV reader, or line by line when a line does not parse (the others are kept; a
    timestamp that does not parse takes the line before's). ``no step``: no line holds a step (MLflow before 0.9),
    and the steps are the line order."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        with raw_stream(file) as stream:  # a metric named "x.gz" is no gzip file
            t = pcsv.read_csv(
                stream,
                read_options=pcsv.ReadOptions(column_names=["ts", "value", "step"]),
                parse_options=pcsv.ParseOptions(delimiter=" "),
                convert_options=pcsv.ConvertOptions(
                    column_types={"ts": pa.float64(), "value": pa.float64(), "step": pa.int64()}
                ),
            )
        if not any(t.column(c).null_count for c in ("ts", "value", "step")):
            return t.column("step").to_numpy(), t.column("value").to_numpy(), t.column("ts").to_numpy(), 0, "", False
    except (pa.ArrowInvalid, OSError):
        pass
    steps, values, times, bad, where, with_step = [], [], [], 0, "", 0
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ImportFormatError(f"{file}: cannot be read ({e.strerror or e})") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        try:
            value, step = float(parts[1]), int(parts[2]) if len(parts) > 2 else 0
        except (IndexError, ValueError):
            if line.strip():
                bad += 1
                where = where or f"{file} line {n}"
            continue
        try:
            ts = float(parts[0])
        except ValueError:
            ts = times[-1] if times else 0.0
        steps.append(step)
        values.append(value)
        times.append(ts)
        with_step += len(parts) > 2
    when = np.asarray(times, np.float64)
    if values and not with_step:
        return np.arange(len(values), dtype=np.int64), np.asarray(values, np.float64), when, bad, where, True
    return np.asarray(steps, np.int64), np.asarray(values, np.float64), when, bad, where, False
