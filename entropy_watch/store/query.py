"""Shared read-side plumbing: list a table's files, turn a selection into parameterised SQL, retry listing races.

The project's own reads go through :func:`source_sql`, which reads the chosen files with DuckDB's ``read_parquet``
(Hive partitioning, ``union_by_name`` for columns added later) in an in-memory connection. File lists and keys are
always bound as parameters (or session variables for views), never spliced into SQL text.

SQL written by a *user* (``entropy-watch sql``, :meth:`Store.sql`) never runs on such a connection. It runs on a
:func:`sandbox`: an in-memory DuckDB with ``enable_external_access = false``, no extension install or autoload, no
Python replacement scans and its configuration locked, so no statement (``COPY … TO``, ``ATTACH``, ``INSTALL``,
``SET``, ``read_csv('/etc/passwd')``, ``glob``, each also under ``EXPLAIN ANALYZE``) can read, write or install
anything. The store's rows reach it only as Arrow datasets that Python opened and registered
(:func:`register_selection`); DuckDB scans them with projection and filter push-down. A statement filter in the CLI
is only a friendlier first message, not the guarantee.

**Its memory** is bounded by :data:`SQL_MEMORY_LIMIT` (25% of the memory DuckDB sees, container limits included;
``$ENTROPY_WATCH_SQL_MEMORY`` sets another, in DuckDB's units: ``8GB``, ``50%``), not DuckDB's default 80%: the
monitor runs beside a trainer, and one mistyped join (two tables without a join condition multiply their rows) took
the memory of the machine. The sandbox has no spill folder (``temp_directory`` empty), so a query that needs more
fails with one line that says so (:class:`SqlOutOfMemory`) instead of spilling into the working directory or the
store.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import duckdb
import pyarrow as pa

from entropy_watch.errors import EntropyWatchError, InvalidRunName, first_line
from entropy_watch.store import layout, quarantine
from entropy_watch.store.files import READ_LOCK, CoverageCache, FileRef, Selection, list_table_files, rank_dirs
from entropy_watch.store.fs import (
    ObjectPath,
    StorePath,
    arrow,
    check_bucket,
    is_object,
    listdir,
    passing,
    refused,
    vanished,
)
from entropy_watch.store.schema import READ_PARQUET_OPTIONS, empty_table

try:
    import fcntl
except ImportError:  # Windows: no reader/compactor coordination, retries only
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
log = logging.getLogger("entropy_watch")

# A file deleted between listing and reading (compaction) shows up as one of these; relisting fixes it.
RETRY_ERRORS: tuple[type[BaseException], ...] = (duckdb.IOException, FileNotFoundError)
READ_ERRORS: tuple[type[BaseException], ...] = (
    EntropyWatchError, OSError, ValueError, TypeError, KeyError, IndexError, duckdb.Error, pa.ArrowException
)  # fmt: skip
"""What reading a run can raise on what a store holds (a damaged or foreign file, a refused request): a reader that
follows many runs reports it as that run's error; anything else is a bug, or an interrupt (:func:`interrupted`)."""


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB's form of a Ctrl-C that arrived during a query (it must stop the caller): its
    ``InterruptException``, or a Ctrl-C that landed in Python code DuckDB called (reading a registered Arrow
    relation's schema), which it wraps as another error (``InvalidInputException: … failed: KeyboardInterrupt``)."""
    return isinstance(exc, duckdb.InterruptException) or (
        isinstance(exc, duckdb.Error) and "KeyboardInterrupt" in str(exc)
    )


ATTEMPTS = 8
# Errors of the query itself, never of a file it reads: no retry, no check of the files.
_NOT_ABOUT_FILES: tuple[type[BaseException], ...] = (
    duckdb.ParserException,
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.PermissionException,
    duckdb.NotImplementedException,
    duckdb.OutOfMemoryException,  # the query's size, not a file: checking every listed file would not help
)
BACKOFF_S = 0.01


def with_retry(fn: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Call ``fn`` (which must list files afresh each time) again when a listed file vanished under it, or when an
    object store's answer failed on a fault that passes (:func:`~entropy_watch.store.fs.passing`: a connection dropped
    mid-answer, a busy server).

    One retry suffices with the default compaction age (60 s); a few more, with an exponential back-off (10 ms
    doubling to 640 ms, 1.3 s in all), cover a loaded machine where each attempt outlasts an aggressive compaction
    loop's grace (an S3 reader racing a compactor with a 1 s grace and eight writers on 2 cores lost five attempts
    spanning 150 ms of back-off once). A failure
    caused by an unreadable file (:mod:`~entropy_watch.store.quarantine`) quarantines it and runs ``fn`` again
    without it; each such retry removes a file, so the loop ends.
    """
    i = 0
    while True:
        quarantine.begin()
        try:
            return fn()
        except _NOT_ABOUT_FILES:
            raise
        except (*RETRY_ERRORS, duckdb.Error, pa.ArrowException, OSError) as exc:
            if interrupted(exc):  # a Ctrl-C: no file to check, no read to try again
                raise
            # an object read through a pyarrow dataset reports a vanished file as InvalidInput or OSError
            if not (isinstance(exc, RETRY_ERRORS) or vanished(exc) or passing(exc)) or i == attempts - 1:
                # an unreadable file (not a race, not the store refusing the read): skip it, warn once, read the rest
                if not refused(exc) and quarantine.check_listed():
                    continue
                raise
            time.sleep(BACKOFF_S * 2**i)
            i += 1


def run_names(root: StorePath) -> list[str]:
    """Names of the runs under ``root`` (folders ``run=<name>`` with a valid name), sorted."""
    try:
        entries = [e.name for e in listdir(root, follow=True) if e.name.startswith("run=") and e.is_dir]
    except (FileNotFoundError, NotADirectoryError):
        return []
    if not entries and isinstance(root, ObjectPath):
        check_bucket(root)  # an empty listing: a new store, or a bucket that is not there (say so)
    names = []
    for entry in entries:
        try:
            names.append(_valid_run_name(entry[4:]))
        except InvalidRunName:
            continue
    return sorted(names)


# Listing 10,000 runs validated every name on every call (~50 us each); a name once valid stays valid.
_valid_run_name = functools.lru_cache(maxsize=1 << 16)(layout.validate_run_name)


_said_refused: set[str] = set()


def listable_runs(root: StorePath, runs: Iterable[str], tables: Iterable[str]) -> list[str]:
    """``runs`` less those whose ``tables`` folders this user may not list (another user's private run in a shared
    store), each named once per process in a warning on the ``entropy_watch`` logger: a read over every run, which
    failed whole on ``PermissionError``, reads the others. Called only after such a failure (it lists again)."""
    out = []
    for run in runs:
        try:
            for table in tables:
                for rdir in rank_dirs(layout.run_dir(root, run) / f"table={layout.validate_table(table)}"):
                    listdir(rdir)
        except PermissionError as exc:
            if str(exc.filename) not in _said_refused:
                _said_refused.add(str(exc.filename))
                log.warning(
                    "entropy_watch: run %r left out: this user may not read %s (permission denied)", run, exc.filename
                )
            continue
        out.append(run)
    return out


def table_dirs(root: StorePath, runs: Iterable[str], table: str) -> list[StorePath]:
    """The ``rank=<r>`` folders of ``table`` for the given runs: what :func:`read_locked` locks. None on an object
    store, which has no locks (and where listing them would cost a request per run)."""
    if is_object(root):
        return []
    out: list[StorePath] = []
    for run in runs:
        out.extend(rank_dirs(layout.run_dir(root, run) / f"table={layout.validate_table(table)}"))
    return out


def table_files(root: StorePath, runs: Iterable[str], table: str, coverage: CoverageCache) -> list[FileRef]:
    """Published segments and parts of ``table`` for the given runs, over all ranks."""
    name = f"table={layout.validate_table(table)}"
    return [f for run in runs for f in list_table_files(layout.run_dir(root, run) / name, coverage)]


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


class Cursors(Protocol):
    """Where a read takes its cursor from: a DuckDB connection, or the :class:`~entropy_watch.store.reader.Store`'s
    connection that opens at its first cursor."""

    def cursor(self) -> duckdb.DuckDBPyConnection: ...


class Binder:
    """Collects SQL parameters. ``mode="param"`` yields ``$name`` placeholders; ``"variable"`` yields
    ``getvariable('name')`` for use inside a ``CREATE VIEW`` (views cannot hold prepared parameters).

    ``con``: the connection the SQL will run on; files in an object store are registered on it as Arrow datasets
    (:func:`source_sql`), so it is required when the store may be one."""

    def __init__(self, prefix: str, mode: str = "param", con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.prefix = prefix
        self.mode = mode
        self.con = con
        self.datasets = 0  # selections registered on con so far (their names must not collide)
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
    refs = sel.whole + [ref for ref, _ in sel.partial]
    if refs and is_object(refs[0].path):  # DuckDB cannot read s3:// offline: hand it pyarrow datasets (fs.py)
        if binder.con is None:
            raise ValueError("source_sql over an object store needs Binder(con=...)")
        root = refs[0].path.parent.parent.parent.parent  # ROOT/run=/table=/rank=/file
        binder.datasets += 1
        names = register_selection(binder.con, root, sel, f"_{binder.prefix}_ds{binder.datasets}")
        parts = [f'SELECT * EXCLUDE ("table") FROM {n}' for n in names]
        sel = Selection()
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


SQL_MEMORY_LIMIT = "25%"
ENV_SQL_MEMORY = "ENTROPY_WATCH_SQL_MEMORY"


class SqlOutOfMemory(EntropyWatchError):
    """A user query needed more memory than the sandbox's limit (module docstring)."""


def sql_memory_limit() -> str:
    """The sandbox's ``memory_limit``: ``$ENTROPY_WATCH_SQL_MEMORY`` when set, else :data:`SQL_MEMORY_LIMIT`."""
    return os.environ.get(ENV_SQL_MEMORY, "").strip() or SQL_MEMORY_LIMIT


_SANDBOX_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,  # no scans of the caller's Python variables by name
    # DuckDB's default spill folder is ``.tmp`` in the working directory, and it adds that folder to
    # ``allowed_directories``, which stay readable and writable with external access off: ``COPY … TO '.tmp/x'``
    # and ``read_text('.tmp/…')`` worked. No spill folder, so no folder at all (a query bigger than memory fails).
    "temp_directory": "",
}
_HIVE_SCHEMA = pa.schema([("run", pa.string()), ("table", pa.string()), ("rank", pa.int32())])


def _in_memory(config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with ``config`` within :func:`sql_memory_limit`; one line when the limit is no size."""
    limit = sql_memory_limit()
    try:
        return duckdb.connect(":memory:", config={**config, "memory_limit": limit})
    except (duckdb.ParserException, duckdb.InvalidInputException) as e:
        why = first_line(e).partition(": ")[2] or first_line(e)
        raise EntropyWatchError(f"${ENV_SQL_MEMORY}={limit!r} is not a memory size ({why})") from None


def read_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for the store's own reads (the writer's included), within :func:`sql_memory_limit`,
    spilling into a private folder of the system's temporary directory, never the working directory (``reader``'s
    module docstring)."""
    spill = os.path.join(tempfile.gettempdir(), f"entropy-watch-duckdb-{os.getpid()}-{secrets.token_hex(6)}")
    return _in_memory({"temp_directory": spill})


def sandbox() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory connection for user SQL that cannot touch any file, extension or setting, within
    :func:`sql_memory_limit` (module doc)."""
    con = _in_memory(_SANDBOX_CONFIG)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    allowed = con.sql("SELECT current_setting('allowed_directories'), current_setting('allowed_paths')").fetchall()[0]
    if any(allowed):  # a DuckDB that allows some folder by itself again: refuse, never run
        con.close()
        raise RuntimeError(f"the SQL sandbox would allow files {allowed}; report this with your DuckDB version")
    return con


def out_of_memory(con: duckdb.DuckDBPyConnection) -> SqlOutOfMemory:
    """The one-line error for a sandbox query stopped by its memory limit (DuckDB's own message advises ``SET``
    statements the sandbox refuses)."""
    try:
        limit = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    except duckdb.Error:
        limit = sql_memory_limit()
    return SqlOutOfMemory(
        f"the query needs more memory than the SQL limit ({limit}; ${ENV_SQL_MEMORY} sets it, e.g. 8GB or 50%): "
        "filter or aggregate the rows first (a join without a condition multiplies the rows of its tables)"
    )


def fetch_interruptible(con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation) -> pa.Table:
    """``rel.to_arrow_table()``, stopped by Ctrl-C (or SIGTERM taken as it) within ~0.1 s.

    DuckDB's ``to_arrow_table`` runs to its end with the Python signal handler waiting (a user's never-ending
    ``sql`` query ignored Ctrl-C and a CI timeout's SIGTERM): the fetch runs on a worker thread while this thread,
    free to take the signal, waits; on an interrupt it calls ``con.interrupt()`` every 0.1 s until the query stops
    (at most 10 s) and raises what interrupted it."""
    result: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: a join cut short by KeyboardInterrupt marks the thread ended

    def fetch() -> None:
        try:
            result["table"] = rel.to_arrow_table()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            result["error"] = exc
        finally:
            done.set()

    try:  # started inside: Thread.start waits for the thread, and a Ctrl-C may land there
        threading.Thread(target=fetch, name="entropy-watch-sql", daemon=True).start()
        while not done.wait(0.1):
            pass
    except BaseException:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:  # the query stops at its next check: the connection is then free to close
            con.interrupt()  # again each time: DuckDB drops one made before the worker's query began
            if done.wait(0.1):
                break
        raise
    if "error" in result:
        raise result["error"]
    return result["table"]


def check_read_only(query: str) -> None:
    """Allow exactly one SELECT (or EXPLAIN) statement: no COPY ... TO, CREATE, ATTACH, PRAGMA or a second statement.

    Raises EntropyWatchError (one line) otherwise, or when ``query`` does not parse. The CLI's ``sql`` checks with
    this before running user SQL in a :func:`sandbox`.
    """
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise EntropyWatchError(f"SQL does not parse: {str(e).splitlines()[0]}") from None
    kinds = [s.type for s in statements]
    allowed = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
    if len(kinds) != 1 or kinds[0] not in allowed:
        said = [(s.query.split() or [s.type.name])[0].upper() for s in statements]  # as written: INSTALL, not LOAD
        got = f"{len(said)} statements ({', '.join(said)})" if len(said) > 1 else (said[0] if said else "nothing")
        raise EntropyWatchError(f"`sql` runs one read-only SELECT query; got {got}")


VIEWS: dict[str, str] = {
    "scalars": "one number per run, rank, step and metric name (entropy/mean, reward/mean, clip/high_frac, ...)",
    "hist": "the token-entropy histogram: tokens per entropy bin per step",
    "tokens": "sampled tokens with their entropy, log-prob, advantage and context",
    "alerts": "alerts stored by `alerts --write`, `watch --write` or a live Watch",
    "events": "change points a run logged: resume, learning-rate or config change, on_alert actions",
    "runs": "one row per run: its state, last step and last update (Unix seconds)",
}
"""The views user SQL reads, and what each holds (``SHOW TABLES`` lists them)."""
RUNS_COLUMNS = ("run", "state", "last_step", "updated_at")
SHOW_TABLES = re.compile(r"\s*show\s+(all\s+)?tables\s*;?\s*", re.IGNORECASE)


def views_listing() -> pa.Table:
    """What ``SHOW TABLES`` answers in user SQL: each view (:data:`VIEWS`), its columns, what it holds. The views are
    built only for the tables a query names, so DuckDB's own ``SHOW TABLES`` listed none (an empty table)."""
    cols = {t: [f.name for f in empty_table(t).schema if not f.name.startswith("_")] for t in layout.TABLES}
    cols["runs"] = list(RUNS_COLUMNS)
    listing = {"name": list(VIEWS), "columns": [", ".join(cols[v]) for v in VIEWS], "holds": list(VIEWS.values())}
    return pa.table(listing)


def create_sandbox_view(con: duckdb.DuckDBPyConnection, root: Path, table: str, sel: Selection) -> None:
    """``CREATE TEMP VIEW <table>`` on a :func:`sandbox`: the selected files' rows plus ``run`` and ``rank``.

    The view has the table's declared columns even with no file (an empty relation of the reader schema is unioned
    in), and never the internal ``_writer``/``_seq`` columns.
    """
    layout.validate_table(table)
    con.register(f"_empty_{table}", empty_table(table))
    parts = [f'SELECT * EXCLUDE ("table") FROM {n}' for n in register_selection(con, root, sel, f"_{table}")]
    parts.append(f"SELECT * FROM _empty_{table}")
    union = " UNION ALL BY NAME ".join(f"({p})" for p in parts)
    con.execute(f"CREATE TEMP VIEW {table} AS SELECT * EXCLUDE (_writer, _seq) FROM ({union})")


def register_selection(con: duckdb.DuckDBPyConnection, root: StorePath, sel: Selection, prefix: str) -> list[str]:
    """Register the selected files on ``con`` as Arrow datasets named ``<prefix>_<i>``; returns those names.

    Each dataset carries the Hive columns ``run``, ``table``, ``rank`` from the path and the union of the files'
    columns (types promoted, later-added columns null in older files). Files read only in part (after overlapping
    parts) are filtered to their missing keys.
    """
    # lazy: pyarrow.dataset imports pandas (~0.5-1 s), a cost every CLI command would pay for a path only `sql` takes
    import pyarrow.dataset as ds

    names: list[str] = []
    groups: list[tuple[list[FileRef], frozenset[tuple[str, int]] | None]] = []
    if sel.whole:
        groups.append((sel.whole, None))
    groups += [([ref], keys) for ref, keys in sel.partial]
    for refs, keys in groups:
        filesystem, base = arrow(root)
        factory = ds.FileSystemDatasetFactory(
            filesystem,
            [arrow(r.path)[1] for r in refs],
            ds.ParquetFileFormat(),
            ds.FileSystemFactoryOptions(
                partition_base_dir=base, partitioning=ds.partitioning(_HIVE_SCHEMA, flavor="hive")
            ),
        )
        dataset = factory.finish(factory.inspect(promote_options="permissive"))
        if keys is not None:
            dataset = dataset.filter(_keys_expression(keys))
        name = f"{prefix}_{len(names)}"
        con.register(name, dataset)
        names.append(name)
    return names


def _keys_expression(keys: frozenset[tuple[str, int]]) -> Any:
    """A dataset filter keeping the rows of ``keys`` (``pyarrow.dataset.Expression``)."""
    import pyarrow.dataset as ds

    by_writer: dict[str, list[int]] = {}
    for writer, seq in keys:
        by_writer.setdefault(writer, []).append(seq)
    expr: Any = None
    for writer, seqs in sorted(by_writer.items()):
        part = (ds.field("_writer") == writer) & ds.field("_seq").isin(sorted(seqs))
        expr = part if expr is None else expr | part
    assert expr is not None
    return expr
