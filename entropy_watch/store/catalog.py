"""``ROOT/_catalog.duckdb`` (views over the live globs) and self-contained DuckDB exports.

The catalog lets any DuckDB client answer SQL on live runs: ``duckdb -readonly ew_runs/_catalog.duckdb -c "SELECT …
FROM scalars"``. It contains only views; every view re-expands its glob at query time, so it sees runs, ranks and
segments that appear after the catalog was written. Nothing in the store ever keeps the file open: it is written by
:func:`write_catalog` (explicitly, or from ``compact``) into a temporary that is then ``os.replace``-d into place, so
a client holding the old catalog open never blocks the refresh (it keeps reading the old inode).

De-duplication in a pure view: while a compaction runs, a ``part-`` file and the segments it merged are both on disk.
Every file that holds a key ``(_writer, _seq)`` holds all of its rows, so each view keeps, per ``(run, rank, _writer,
_seq)``, only the rows of one file (the greatest file name). This needs a second pass over the key columns; the cost
is measured in ``benchmarks/bench_store.py``.

A glob that matches nothing makes DuckDB fail ("No files found"), so a view over a table no run has written yet
would be an error. :func:`write_catalog` therefore also writes one zero-row placeholder per table under
``ROOT/run=.catalog/`` (a name no run can have: run names may not start with a dot, so :class:`Store`, the tail
reader and compaction never list it). The globs always match it, and it adds no rows.

**Refreshing after one run** (``compact RUN``): the views do not depend on which runs exist (their globs re-expand at
each query), so rewriting them binds every file of the store for nothing (1.9-2.5 s and 436 MB at 27,800 files, for
one run's compaction). Each view carries a ``COMMENT`` holding a hash of its :func:`catalog_view_sql` (DuckDB
rewrites the SQL it stores, so the text cannot be compared). :func:`refresh_catalog` keeps the catalog when every
view's hash matches (same root, same SQL), the placeholders are there, and a bind-only ``DESCRIBE`` over each table
of the runs that changed reads every file's footer (so an unreadable one is found, as a full rewrite finds it) and
brings no column or type the view does not have; anything else rewrites everything. A damaged file of another run
is found by the next whole-store ``compact``, as before; a column another run added meanwhile is in the views
anyway (DuckDB binds a view again at each query; what the file stores is the list as of its last full write).

Limitations (documented, not fixable in a view):

* deleting ``ROOT/run=.catalog`` brings back "No files found" for tables that no run has written;
* a query that races a compaction deleting segments can fail once with an IO error (a file listed by the glob was
  deleted before it was read); run it again. :class:`~entropy_watch.store.Store` retries this by itself;
* the root path must not contain glob characters (``*``, ``?``, ``[``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from entropy_watch.errors import EntropyWatchError, RunNotFound, StoreUnwritable, first_line, listed, require
from entropy_watch.overwrite import check_replaceable
from entropy_watch.store import fs, layout, manifest, quarantine
from entropy_watch.store.atomic import clean_stale_tmp, write_parquet_atomic
from entropy_watch.store.files import CoverageCache, select_files
from entropy_watch.store.fs import StorePath
from entropy_watch.store.hive import ensure_common_metadata
from entropy_watch.store.query import Binder, read_locked, run_names, source_sql, table_dirs, table_files, with_retry
from entropy_watch.store.reader import RunInfo, Store
from entropy_watch.store.schema import READ_PARQUET_OPTIONS, empty_table

PLACEHOLDER_RUN_DIR = "run=.catalog"
DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file
# an export's ``runs`` table, the same in every export so far: how an earlier export is told from a user's database
EXPORT_RUNS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run", "VARCHAR"),
    ("state", "VARCHAR"),
    ("last_step", "BIGINT"),
    ("updated_at", "DOUBLE"),
    ("meta", "VARCHAR"),
)
VIEW_TAG = "entropy_watch view v1 "
"""How each view's ``COMMENT`` starts; a hash of its SQL follows (:func:`view_comment`)."""


def catalog_view_sql(root: StorePath, table: str) -> str:
    """The ``SELECT`` behind the catalog view of ``table``: a glob over every run and rank, one file per key."""
    root_str = str(root) if fs.is_object(root) else str(Path(root).resolve())
    if any(c in root_str for c in "*?["):
        raise ValueError(f"store root {root_str!r} contains a glob character; move the store to a plain path")
    glob = f"{root_str}/run=*/table={layout.validate_table(table)}/rank=*/*.parquet".replace("'", "''")
    return (
        f"WITH src AS (SELECT * EXCLUDE (\"table\") FROM read_parquet('{glob}', {READ_PARQUET_OPTIONS}, "
        "filename=true)), "
        "pick AS (SELECT run, rank, coalesce(_writer, filename) AS w, coalesce(_seq, -1) AS s, "
        "max(filename) AS f FROM src GROUP BY ALL) "
        "SELECT src.* EXCLUDE (filename, _writer, _seq) FROM src SEMI JOIN pick ON src.run = pick.run "
        "AND src.rank = pick.rank AND coalesce(src._writer, src.filename) = pick.w "
        "AND coalesce(src._seq, -1) = pick.s AND src.filename = pick.f"
    )


def view_comment(root: StorePath, table: str) -> str:
    """The ``COMMENT`` of ``table``'s catalog view: :data:`VIEW_TAG` and a hash of :func:`catalog_view_sql`."""
    return VIEW_TAG + hashlib.sha256(catalog_view_sql(root, table).encode()).hexdigest()


def write_catalog(root: str | os.PathLike[str] | StorePath | None = None) -> StorePath:
    """Write ``ROOT/_catalog.duckdb`` with one view per table over the live globs; returns its path.

    Also refreshes ``ROOT/_runs.parquet``, what listing knows about settled runs (:mod:`.manifest`).

    Short-lived: opens a new file, creates the views, closes it and publishes it with ``os.replace``. On an object
    store the database is built in a local temporary file and published with one PUT; its views read ``s3://``
    globs, which a DuckDB client answers with its ``httpfs`` extension (or a registered fsspec filesystem).
    """
    return _publish(root, None)


def refresh_catalog(root: str | os.PathLike[str] | StorePath | None, runs: Iterable[str]) -> StorePath:
    """:func:`write_catalog` after only ``runs`` changed (``compact RUN``): a local catalog whose views are current
    and cover them is kept, once their files alone were checked (module docstring); else it is written anew."""
    return _publish(root, [layout.validate_run_name(r) for r in runs])


def _publish(root: str | os.PathLike[str] | StorePath | None, runs: list[str] | None) -> StorePath:
    root_path = layout.default_root(root)
    dest = layout.catalog_path(root_path)
    ensure_common_metadata(root_path)
    if fs.is_object(root_path):
        with tempfile.TemporaryDirectory(prefix="ew-catalog-") as tmpdir:
            local = Path(tmpdir) / "catalog.duckdb"
            _write_catalog_db(root_path, local)
            fs.put_bytes(dest, local.read_bytes())
        return dest
    clean_stale_tmp(dest.parent, by_pid=True, prefix=f".{dest.name}.")  # a compact killed or failed mid-write
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.0.tmp")
    _remove_db(tmp)
    try:
        if runs is None or not _views_cover(root_path, dest, runs):
            _write_catalog_db(root_path, tmp)
            os.replace(tmp, dest)
    except BaseException as exc:
        _remove_db(tmp)
        if isinstance(exc, duckdb.Error) and (bad := _unreadable_file(root_path, exc)) is not None:
            raise CatalogBlocked(
                f"cannot write {dest}: data file {bad[0]} is unreadable ({bad[1]}), and a view over it would fail; "
                "the previous catalog, if any, is kept: move the file out of the store (to inspect it) or delete it, "
                "then run `entropy-watch compact` again",
                bad[0],
            ) from exc
        if isinstance(exc, OSError | duckdb.Error):
            raise CatalogNotWritten(
                f"cannot write {dest} ({_reason(exc)}); the previous catalog, if any, is kept: free space or fix the "
                "permissions, then run `entropy-watch compact` again"
            ) from exc
        raise
    try:
        manifest.write(root_path, Store(root_path).runs)
    except OSError as exc:  # listing never trusts a stale manifest (manifest stamps): only slower until rewritten
        raise CatalogNotWritten(
            f"cannot write {manifest.path(root_path)} ({_reason(exc)}); `ls` lists every run the ordinary way "
            "(slower, never wrong) until `entropy-watch compact` can write it"
        ) from exc
    return dest


def _views_cover(root: Path, dest: Path, runs: list[str]) -> bool:
    """Whether the catalog at ``dest`` can stay as it is after ``runs`` changed: each view is this root's current
    one (:func:`view_comment`), the placeholders are there, and binding each table over the runs' files alone (which
    reads every footer: an unreadable file raises DuckDB's error naming it, as a full rewrite would) brings no column
    or type the view lacks. False (rewrite everything) when the catalog cannot be read for any reason."""
    for table in layout.TABLES:
        if not (root / PLACEHOLDER_RUN_DIR / f"table={table}" / "rank=0" / "empty.parquet").is_file():
            return False
    try:
        con = duckdb.connect(str(dest), read_only=True, config={"enable_external_access": "false"})
    except (duckdb.Error, OSError):  # none yet, damaged, of a newer DuckDB, or held by a writer
        return False
    try:
        comments = dict(con.sql("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall())
        if any(comments.get(t) != view_comment(root, t) for t in layout.TABLES):
            return False
        stored: dict[str, set[tuple[str, str]]] = {t: set() for t in layout.TABLES}
        for table, name, type_ in con.sql(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = current_database()"
        ).fetchall():  # what each view was bound to when written: read from the file, nothing is bound again
            stored.setdefault(table, set()).add((name, type_))
    except duckdb.Error:
        return False
    finally:
        con.close()
    probe = duckdb.connect(":memory:")
    try:
        for table in layout.TABLES:
            try:
                columns = _run_columns(probe, root, runs, table)
            except duckdb.Error as exc:
                if _unreadable_file(root, exc) is None:  # a file deleted meanwhile (another compaction): the full way
                    return False
                raise
            if not columns <= stored[table]:
                return False  # a new column (or type): the views must be bound again to show it
    finally:
        probe.close()
    return True


_NOT_IN_VIEW = ("table", "filename", "_writer", "_seq")


def _run_columns(con: duckdb.DuckDBPyConnection, root: Path, runs: list[str], table: str) -> set[tuple[str, str]]:
    """``(column, type)`` of ``table`` over the files of ``runs``, as the view reads them; raises DuckDB's error
    naming an unreadable file (bind only: ``DESCRIBE`` reads the footers, no row)."""
    files = [
        str(f) for r in runs for f in sorted((layout.run_dir(root, r) / f"table={table}").glob("rank=*/*.parquet"))
    ]
    if not files:
        return set()
    listed = ", ".join("'{}'".format(str(Path(f).resolve()).replace("'", "''")) for f in files)
    rows = con.sql(f"DESCRIBE SELECT * FROM read_parquet([{listed}], {READ_PARQUET_OPTIONS}, filename=true)").fetchall()
    return {(name, type_) for name, type_, *_ in rows if name not in _NOT_IN_VIEW}


class CatalogNotWritten(StoreUnwritable):
    """``_catalog.duckdb`` or ``_runs.parquet`` could not be written (full or read-only disk); what was there before is
    kept as it was (a catalog is published whole or not at all)."""


class CatalogBlocked(CatalogNotWritten):
    """The catalog was not written because a data file its views cover cannot be read (truncated, overwritten by
    another program): every view over it would fail until the file is moved out of the store. The file is
    quarantined (:mod:`.quarantine`) and named in :attr:`path`; nothing was written and nothing else is wrong."""

    def __init__(self, message: str, path: StorePath) -> None:
        super().__init__(message)
        self.path = path


_QUOTED_PARQUET = re.compile(r"'([^']+\.parquet)'")


def _unreadable_file(root: StorePath, exc: BaseException) -> tuple[StorePath, str] | None:
    """The data file of ``root`` that DuckDB's error ``exc`` names (``No magic bytes found at end of file '…'``), and
    why it is unreadable, if it is one (checked, then quarantined); None when the error is about something else."""
    root_str = str(root) if fs.is_object(root) else str(Path(root).resolve())
    for quoted in _QUOTED_PARQUET.findall(str(exc)):
        rel = quoted[len(root_str) :].strip("/") if quoted.startswith(root_str + "/") else None
        if not rel or "*" in rel or ".." in rel.split("/"):
            continue
        path = root
        for part in rel.split("/"):
            path = path / part
        try:
            why = quarantine.unreadable(path)
        except Exception:  # noqa: BLE001 - an object store refusing the check: the error is not the file's
            return None
        if why is not None:
            quarantine.add(path, why)
            return path, why
    return None


def _reason(exc: BaseException) -> str:
    """One line saying why a write failed: the OS reason (``No space left on device``), else DuckDB's first line."""
    if isinstance(exc, OSError):
        return fs.describe_error(exc)
    text = str(exc)
    for reason in _OS_REASONS:  # DuckDB wraps the OS error in its own words ("Failed to create checkpoint because…")
        if reason in text:
            return reason
    return " ".join(text.split())[:300] or type(exc).__name__


_OS_REASONS = ("No space left on device", "Read-only file system", "Permission denied", "Disk quota exceeded")


def _write_catalog_db(root_path: StorePath, dest: Path) -> None:
    """Write the placeholders under ``run=.catalog`` and a new DuckDB file ``dest`` holding one view per table."""
    for table in layout.TABLES:
        placeholder = root_path / PLACEHOLDER_RUN_DIR / f"table={table}" / "rank=0" / "empty.parquet"
        fs.makedirs(placeholder.parent)
        schema = empty_table(table).drop_columns(["run", "rank"])
        write_parquet_atomic(placeholder, schema)
    con = duckdb.connect(str(dest))
    try:
        if fs.is_object(root_path):
            _register_placeholders_only(con, root_path)
        for table in layout.TABLES:  # creating a view expands its glob once (locally: a few directory listings)
            con.execute(f"CREATE VIEW {table} AS {catalog_view_sql(root_path, table)}")
            con.execute(f"COMMENT ON VIEW {table} IS '{view_comment(root_path, table)}'")  # hex digits: no quoting
        # the views are in the write-ahead log until a checkpoint; close() checkpoints too but swallows its failure,
        # and a full disk then published a catalog with no views beside an orphaned ``.tmp.wal`` holding them
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _register_placeholders_only(con: duckdb.DuckDBPyConnection, root: fs.ObjectPath) -> None:
    """Let ``con`` bind the catalog views of an object-store ``root`` against the placeholders alone.

    Creating a view expands its glob and reads the schema of every file it matches (``union_by_name``): on S3 a
    LIST per folder and ~4 requests per file, for each of the five tables, over every run. ``compact RUN`` refreshed
    the catalog so, 8,800 requests (27 s against a local server) for a store of 300 one-segment runs, and a round
    trip per request against a remote bucket. The views store their SQL, the live glob, and DuckDB binds them again
    at each query, so binding against the placeholders (the columns every file has) gives the same views.
    """
    require("fsspec", "s3")
    from fsspec.implementations.arrow import ArrowFSWrapper

    class PlaceholdersOnly(ArrowFSWrapper):  # type: ignore[misc]
        """The root's filesystem, whose globs over every run match only ``run=.catalog``."""

        def glob(self, path: str, **kwargs: Any) -> Any:
            return super().glob(path.replace("/run=*/", f"/{PLACEHOLDER_RUN_DIR}/", 1), **kwargs)

    con.register_filesystem(PlaceholdersOnly(root.fs))


def export_duckdb(
    root: str | os.PathLike[str] | None, dest: str | os.PathLike[str], runs: Iterable[str] | None = None
) -> Path:
    """Write a self-contained DuckDB database at ``dest`` with real tables (copies, not views).

    Tables: ``scalars``, ``hist``, ``tokens``, ``alerts``, ``events`` (with ``run`` and ``rank``) and ``runs``
    (``run, state, last_step, updated_at, meta`` as JSON text). ``runs=None`` exports every run; a name given twice is
    exported once. ``dest`` may start with ``~``. The database is built in a temporary (removed on any failure,
    Ctrl-C included) and moved over ``dest``, which may be a DuckDB database (an earlier export) but no other file:
    :class:`EntropyWatchError` then, and for a folder.
    """
    store = Store(root)
    names = run_names(store.root) if runs is None else list(dict.fromkeys(layout.validate_run_name(r) for r in runs))
    infos = []
    for name in names:
        try:
            infos.append(store.run_info(name))
        except RunNotFound:
            if runs is not None:  # a run the user named: the error says so
                raise
            # every run: one deleted (`entropy-watch rm`) since the listing is not exported, as `compact` skips it
    names = [i.name for i in infos]
    # `--duckdb=~/e.duckdb` reaches here unexpanded (bash expands no ~ after =): the temporary then went to the real
    # home (DuckDB expands ~ itself), the rename into "~/" failed, and the temporary was left behind
    dest_path = Path(dest).expanduser()
    check_export_dest(dest_path)
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest_path.with_name(f".{dest_path.name}.{os.getpid()}.0.tmp")
    _remove_db(tmp)
    try:
        _write_export(store, names, infos, tmp)
        os.replace(tmp, dest_path)
    except BaseException:
        _remove_db(tmp)
        raise
    return dest_path


def check_export_dest(dest: Path) -> None:
    """Raise :class:`EntropyWatchError` unless ``dest`` is free or an earlier export (a DuckDB database, ``DUCK`` at
    byte 8 of its header, whose tables are all an export's, in its ``main`` schema, with the ``runs`` table every
    export writes, :data:`EXPORT_RUNS_COLUMNS`; an empty one too): an export never replaces a user's other file (a
    CSV given by mistake), a folder, or a database of their own (it replaced any DuckDB file, its tables gone; and
    the names alone let through one whose tables are called ``runs`` or ``events``)."""
    check_replaceable(dest, "a DuckDB database", lambda head: head[8:12] == DUCKDB_MAGIC, 12)
    if not dest.exists():
        return
    try:
        con = duckdb.connect(str(dest), read_only=True)
        try:
            tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
            runs = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'main' AND table_name = 'runs' ORDER BY ordinal_position"
            ).fetchall()
        finally:
            con.close()
    except duckdb.Error as e:
        raise EntropyWatchError(
            f"cannot open {dest} to check it is an earlier export (in use by another program?): {first_line(e)}; "
            "pass another path"
        ) from None
    ours = {*layout.TABLES, "runs"}
    others = sorted(name if schema == "main" else f"{schema}.{name}" for schema, name in tables)
    others = [name for name in others if name not in ours]
    if others:
        held = f"it holds {listed(others, 5)}"
    elif tables and tuple(runs) != EXPORT_RUNS_COLUMNS:  # an export's table names, not an export's runs table
        held = f"its runs table has columns {listed([c for c, _ in runs], 5)}" if runs else "it has no runs table"
    else:
        return
    raise EntropyWatchError(
        f"{dest} is a DuckDB database that is not an entropy-watch export ({held}); "
        "refusing to overwrite it (pass another path or remove it)"
    )


def _write_export(store: Store, names: list[str], infos: list[RunInfo], path: Path) -> None:
    """Create the DuckDB database ``path``: one real table per store table over ``names``, and ``runs``."""
    coverage = CoverageCache()
    con = duckdb.connect(str(path))
    try:
        for table in layout.TABLES:

            def copy(table: str = table) -> None:
                with read_locked(table_dirs(store.root, names, table)):
                    sel = select_files(table_files(store.root, names, table, coverage))
                    binder = Binder("f", con=con)
                    con.register("_empty", empty_table(table))
                    src = source_sql(sel, "_empty", binder)
                    con.execute(
                        f"CREATE OR REPLACE TABLE {table} AS SELECT * EXCLUDE (_writer, _seq) FROM ({src})",
                        binder.values,
                    )
                con.unregister("_empty")

            with_retry(copy)
        con.execute(f"CREATE TABLE runs ({', '.join(f'{c} {t}' for c, t in EXPORT_RUNS_COLUMNS)})")
        for i in infos:
            con.execute(
                "INSERT INTO runs VALUES ($run, $state, $last_step, $updated_at, $meta)",
                {
                    "run": i.name,
                    "state": i.state,
                    "last_step": i.last_step,
                    "updated_at": i.updated_at,
                    "meta": json.dumps(i.meta, ensure_ascii=False, default=str),
                },
            )
    finally:
        con.close()


def _remove_db(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
