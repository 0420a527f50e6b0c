"""Logs another tool is still writing, read through the store's read interface so the :class:`~entropy_watch.monitor
.Monitor` follows them as it follows store runs: ``entropy-watch watch LOG...`` on a trackio project, a W&B offline
run, a verl JSONL, a TRL output folder or a CSV, with no code in the trainer (INTEGRATIONS: layer B, a tail of the
log directory).

Each :meth:`LogReader.poll` re-reads a path whose size or modification time moved (a folder: any file below it) with
:func:`~entropy_watch.importers.load_log`; runs are then what ``alerts LOG`` would analyse (the same meta and notes: one
verdict). A path that cannot be read right now (a JSON document being rewritten, a file not there yet) keeps its last
good runs and is reported once per distinct error through ``on_error``; so is a folder with no file below it. A text
log is read up to its last line end (a last line being written may be cut inside a number); a log file that shrank
for good (a restarted trainer rewrote it, as verl's file logger does; the log was rotated) is read anew, and its runs'
``on_note`` says so. Cost: a whole re-read per change, fine for the tens of thousands of points a log holds; the store
(``Watch``, ``import``) is the incremental path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from entropy_watch.errors import EntropyWatchError, RunNotFound
from entropy_watch.importers.base import ImportedRun, unique_names
from entropy_watch.importers.detect import check_source
from entropy_watch.importers.loader import LogOptions

Signature = tuple[int, int, int]  # files, bytes, newest modification (ns)


def signature(path: Path) -> Signature | None:
    """What changes when a log is written to: (files, total bytes, newest mtime) of a file or every file below a
    folder; None when nothing is there (yet)."""
    try:
        if path.is_file():
            st = path.stat()
            return 1, st.st_size, st.st_mtime_ns
        files = size = newest = 0
        for root, _, names in os.walk(path):
            for name in names:
                try:
                    st = os.stat(os.path.join(root, name))
                except OSError:  # removed while we walked
                    continue
                files, size, newest = files + 1, size + st.st_size, max(newest, st.st_mtime_ns)
        return (files, size, newest) if files else None
    except OSError:
        return None


_NUMBER = re.compile(r"\d[\d,.]*")


def note_shape(note: str) -> str:
    """``note`` with its numbers blanked: what stays the same while a log grows. Notes count what reading passed over
    (lines, cells, rows), and the counts climb with every poll; a follower tells each kind of note once per run."""
    return _NUMBER.sub("#", note)


class LogReader:
    """The part of the store's read interface the Monitor and ``RunSeries.from_reader`` use, over log paths.

    ``paths`` the logs to follow (files or folders, as ``import`` takes them); ``options`` what the user states for
    reading them (``--map``, ``--vocab-size``, ``--reward-max``); ``on_error(path, message)`` hears each distinct
    read error once, ``on_note(run, note)`` each of a run's import notes once (as ``import`` and ``alerts`` print
    them; each kind once: :func:`note_shape`). Run names are the importer's; a name two paths both give gets its path's
    stem appended.
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        options: LogOptions | None = None,
        on_error: Callable[[str, str], None] | None = None,
        on_note: Callable[[str, str], None] | None = None,
    ) -> None:
        self.paths = [Path(p).expanduser() for p in paths]
        # realpath, not Path.resolve: a symbolic link loop raised RuntimeError there ("internal error"); poll says it
        self.root = Path(os.path.commonpath([os.path.realpath(p) for p in self.paths])) if self.paths else Path(".")
        self.options = options or LogOptions()
        self.on_error = on_error
        self.on_note = on_note
        self._told: set[tuple[str, str]] = set()  # (run, note's shape) already heard by on_note
        self._seen: dict[Path, Signature | None] = {}
        self._sizes: dict[Path, int] = {}  # a log file's size when last read
        self._shrunk: dict[Path, int] = {}  # a log file that shrank: its size before, until the next change tells
        self._errors: dict[Path, str] = {}
        self._by_path: dict[Path, list[ImportedRun]] = {}
        self._runs: dict[str, ImportedRun] = {}

    def poll(self) -> None:
        """Re-read every path whose signature moved since the last poll."""
        changed = False
        for path in self.paths:
            sig = signature(path)
            if sig is None and path.is_dir():  # a folder with no file below it: nothing to read, said once
                self._error(path, "no log files in this folder (yet); point at a log file or a folder that holds logs")
            elif sig is None and os.path.lexists(path):  # a FIFO, a device, a link loop or one to nothing: said once
                self._not_a_log(path)
            if sig is None or sig == self._seen.get(path):
                continue
            self._seen[path] = sig
            self._rewritten(path)
            try:
                self._by_path[path] = self.options.load(path, whole_lines=True)  # a cut last line waits a poll
            except EntropyWatchError as e:  # mid-write or not a log: keep the last good runs, say it once
                self._error(path, str(e))
                continue
            self._errors.pop(path, None)
            changed = True
        if changed:
            self._runs = self._named()
            for run, r in self._runs.items():  # what reading said (a skipped bad line...), each note once per run
                for note in r.notes:
                    key = (run, note_shape(note))  # "ignored 12 console line(s)" is not news after "ignored 11"
                    if key not in self._told and self.on_note is not None:
                        self.on_note(run, note)
                    self._told.add(key)

    def _rewritten(self, path: Path) -> None:
        """Tell ``on_note``, for each run read from the log file ``path``, when the file shrank and is still smaller
        at the next change than before it shrank: it was rewritten from its start (a restarted trainer, as verl's
        file logger opens its log with "wb") or rotated, and the points it held are gone from it (``alerts LOG``
        will not see them either). A file rewritten in place, caught mid-write (``to_csv`` at every step, a JSON
        document saved again), has grown back by then and is no news."""
        try:
            size = path.stat().st_size if path.is_file() else None
        except OSError:
            return
        if size is None:
            return
        before, self._sizes[path] = self._sizes.get(path), size
        shrunk_from = self._shrunk.pop(path, None)
        if shrunk_from is None:
            if before is not None and size < before:
                self._shrunk[path] = before  # confirmed, or not, at the next change
            return
        if size >= shrunk_from or self.on_note is None:
            return
        note = (
            f"{path} shrank from {shrunk_from:,} bytes (a restarted trainer rewrote it from its start, or the log was "
            f"rotated): read anew; the points it held before are no longer in it"
        )
        for r in self._by_path.get(path, []):
            self.on_note(r.name, note)

    def _not_a_log(self, path: Path) -> None:
        """Tell ``on_error`` why ``path``, there but neither a file nor a folder, cannot be read (``load_log``'s line):
        ``watch --once`` on a FIFO or a link loop printed nothing and exited 0, as if the log held no alert."""
        try:
            check_source(path)
        except EntropyWatchError as e:
            self._error(path, str(e))

    def _error(self, path: Path, message: str) -> None:
        """Tell ``on_error`` about ``path``'s problem unless it was the last one told for that path."""
        if self._errors.get(path) != message and self.on_error is not None:
            self.on_error(str(path), message)
        self._errors[path] = message

    def _named(self) -> dict[str, ImportedRun]:
        runs = {(path, i): r for path, rs in self._by_path.items() for i, r in enumerate(rs)}
        named = unique_names({k: r.name for k, r in runs.items()}, lambda k: k[0].stem)
        return {named[k]: r for k, r in runs.items()}

    def _run(self, run: str) -> ImportedRun:
        r = self._runs.get(run)
        if r is None:
            raise RunNotFound(f"no run {run!r} in {', '.join(map(str, self.paths))}")
        return r

    def versions(self) -> dict[str, tuple[int, int]]:
        """Per run, (entropy points, newest step): moves when the log grows."""
        out = {}
        for name, r in self._runs.items():
            steps = np.concatenate([s for s, _ in r.scalars.values()]) if r.scalars else np.zeros(0, np.int64)
            out[name] = (int(sum(len(s) for s, _ in r.scalars.values())), int(steps.max()) if steps.size else -1)
        return out

    def run_meta(self, run: str) -> dict[str, Any]:
        r = self._run(run)
        return {**r.meta, "import_notes": list(r.notes)}  # as import writes run.json: one verdict with `alerts LOG`

    def scalar_names(self, run: str) -> list[str]:
        return list(self._run(run).scalars)

    def series_many(self, run: str, names: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        scalars = self._run(run).scalars
        return {n: scalars[n] for n in names if n in scalars}

    def hist_matrix(self, run: str, n_bins: int) -> None:
        return None  # logs carry no token-entropy histograms

    def events(self, run: str) -> list[dict[str, Any]]:
        return list(self._run(run).events)

    def close(self) -> None:
        """Nothing to release (the same call as the store readers')."""
