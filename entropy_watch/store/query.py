"""Shared read-side plumbing: list a table's files, turn a selection into parameterised SQL, retry listing races.

Every read goes through :func:`source_sql`, which reads the chosen files with DuckDB's ``read_parquet`` (Hive
partitioning, ``union_by_name`` for columns added later) in an in-memory connection. File lists and keys are always
bound as parameters (or session variables for views), never spliced into SQL text.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from entropy_watch.errors import InvalidRunName
from entropy_watch.store import layout
from entropy_watch.store.files import READ_LOCK, CoverageCache, FileRef, Selection, list_data_files, rank_dirs
from entropy_watch.store.schema import READ_PARQUET_OPTIONS

try:
    import fcntl
except ImportError:  # Windows: no reader/compactor coordination, retries only
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

# A file deleted between listing and reading (compaction) shows up as one of these; relisting fixes it.
RETRY_ERRORS: tuple[type[BaseException], ...] = (duckdb.IOException, FileNotFoundError)
ATTEMPTS = 5
BACKOFF_S = 0.01


def with_retry(fn: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Call ``fn`` (which must list files afresh each time) again when a listed file vanished under it.

    One retry suffices with the default compaction age (60 s); a few more, with a short exponential back-off
    (10, 20, 40, 80 ms), cover a loaded machine where a query outlasts an aggressive compaction loop.
    """
    for i in range(attempts):
        try:
            return fn()
        except RETRY_ERRORS:
            if i == attempts - 1:
                raise
            time.sleep(BACKOFF_S * 2**i)
    raise AssertionError("unreachable")


def run_names(root: Path) -> list[str]:
    """Names of the runs under ``root`` (folders ``run=<name>`` with a valid name), sorted."""
    try:
        entries = [e.name for e in os.scandir(root) if e.name.startswith("run=") and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = []
    for entry in entries:
        try:
            names.append(layout.validate_run_name(entry[4:]))
        except InvalidRunName:
            continue
    return sorted(names)


def table_dirs(root: Path, runs: Iterable[str], table: str) -> list[Path]:
    """The ``rank=<r>`` folders of ``table`` for the given runs."""
    out: list[Path] = []
    for run in runs:
        out.extend(rank_dirs(layout.run_dir(root, run) / f"table={layout.validate_table(table)}"))
    return out


def table_files(root: Path, runs: Iterable[str], table: str, coverage: CoverageCache) -> list[FileRef]:
    """Published segments and parts of ``table`` for the given runs, over all ranks."""
    return [f for rdir in table_dirs(root, runs, table) for f in list_data_files(rdir, coverage)]


@contextlib.contextmanager
def read_locked(dirs: Iterable[Path]) -> Iterator[None]:
    """Hold a shared advisory lock on each folder's ``.read.lock`` while listing and reading it.

    Compaction takes the exclusive lock only to *delete* merged files, so a reader's list-then-read window never
    overlaps a deletion in its folders (without it, an aggressive compaction loop on a loaded machine can make every
    retry fail). Writers never touch it. Where the lock file is missing or unopenable (read-only mount) the read
    goes on unlocked and relies on :func:`with_retry`.
    """
    fds: list[int] = []
    try:
        if fcntl is not None:
            for d in sorted(set(dirs)):
                try:
                    fd = os.open(d / READ_LOCK, os.O_RDONLY)
                except OSError:
                    continue
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def key_strings(keys: Iterable[tuple[str, int]]) -> list[str]:
    """Keys in the form the SQL filter compares against: ``"<writer>/<seq>"``."""
    return sorted(f"{w}/{s}" for w, s in keys)


class Binder:
    """Collects SQL parameters. ``mode="param"`` yields ``$name`` placeholders; ``"variable"`` yields
    ``getvariable('name')`` for use inside a ``CREATE VIEW`` (views cannot hold prepared parameters)."""

    def __init__(self, prefix: str, mode: str = "param") -> None:
        self.prefix = prefix
        self.mode = mode
        self.values: dict[str, Any] = {}

    def ref(self, value: Any) -> str:
        name = f"{self.prefix}_{len(self.values)}"
        self.values[name] = value
        return f"${name}" if self.mode == "param" else f"getvariable('{name}')"

    def set_variables(self, con: duckdb.DuckDBPyConnection) -> None:
        """For ``mode="variable"``: store every value as a session variable on ``con``."""
        for name, value in self.values.items():
            con.execute(f"SET VARIABLE {name} = $v", {"v": value})


def source_sql(sel: Selection, empty_relation: str, binder: Binder) -> str:
    """A ``SELECT`` over the selected files: data columns plus ``run``, ``rank``, ``_writer``, ``_seq``.

    ``empty_relation`` names a zero-row relation with the table's reader schema (see ``schema.empty_table``); it is
    always unioned in, so the result has the declared columns even when nothing is selected.
    """
    parts: list[str] = []
    if sel.whole:
        files = binder.ref([str(f.path) for f in sel.whole])
        parts.append(f'SELECT * EXCLUDE ("table") FROM read_parquet({files}, {READ_PARQUET_OPTIONS})')
    for ref, keys in sel.partial:
        file = binder.ref([str(ref.path)])
        wanted = binder.ref(key_strings(keys))
        parts.append(
            f'SELECT * EXCLUDE ("table") FROM read_parquet({file}, {READ_PARQUET_OPTIONS}) '
            f"WHERE list_contains({wanted}, _writer || '/' || CAST(_seq AS VARCHAR))"
        )
    # The empty relation pins the core columns and their types even when a foreign file lacks some of them.
    parts.append(f"SELECT * FROM {empty_relation}")
    return " UNION ALL BY NAME ".join(f"({p})" for p in parts)
