"""The run store: immutable Parquet segments on disk, written with pyarrow, read with in-memory DuckDB.

Writers (:class:`RunWriter`) publish each batch as a new segment via a hidden temporary and ``os.replace``; readers
(:class:`Store` one-shot, :class:`TailReader` incremental) never lock anything, so a trainer, the app and the CLI can
all work on one store at once and a ``kill -9`` anywhere leaves it readable. :func:`compact` merges segments into
``part-`` files without readers ever double counting; :func:`write_catalog` writes ``ROOT/_catalog.duckdb`` (views
over the live globs) and :func:`export_duckdb` a self-contained database. Layout: :mod:`entropy_watch.store.layout`.
"""

from __future__ import annotations

from entropy_watch.store.catalog import export_duckdb, write_catalog
from entropy_watch.store.compact import CompactionReport, compact
from entropy_watch.store.reader import RunInfo, Store, read_steady
from entropy_watch.store.tail import TailReader
from entropy_watch.store.writer import RunWriter

__all__ = [
    "CompactionReport",
    "RunInfo",
    "RunWriter",
    "Store",
    "TailReader",
    "compact",
    "read_steady",
    "export_duckdb",
    "write_catalog",
]
