"""Where things live in a store, and which names are allowed. Pure functions; no I/O at import.

Layout (Hive-style, DESIGN §3)::

    ROOT/run=<run>/_run.json
    ROOT/run=<run>/_status/rank=<r>.json
    ROOT/run=<run>/_meta/rank=<r>.json                                    (object stores: store/meta.py)
    ROOT/run=<run>/table=<table>/rank=<r>/seg-<session>-<seq>.parquet    (published by tmp-file + os.replace)
    ROOT/run=<run>/table=<table>/rank=<r>/part-<...>.parquet             (compacted)
    ROOT/_catalog.duckdb                                                  (views over the globs)

Everything in the tree that is not table data is named with a leading ``_`` or ``.``, which Spark, Trino and Hive
skip when they discover partitions, so ``spark.read.parquet(ROOT)`` sees only ``run=/table=/rank=`` folders of
Parquet files (a ``run.json`` beside the ``table=`` folders or a ``status/`` folder makes Spark refuse the whole
root: "Conflicting partition column names"). Stores written before used ``run.json`` and ``status/``; readers
still find those (:data:`LEGACY_RUN_JSON`, :data:`LEGACY_STATUS_DIR`), writers never write them.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from entropy_watch.errors import InvalidRunName
from entropy_watch.store.fs import ObjectPath, StorePath, is_uri, open_root

ENV_STORE = "ENTROPY_WATCH_DIR"
DEFAULT_STORE = "./ew_runs"

TABLES: tuple[str, ...] = ("scalars", "hist", "tokens", "alerts", "events")
RUN_JSON = "_run.json"
STATUS_DIR = "_status"
CATALOG = "_catalog.duckdb"
LEGACY_RUN_JSON = "run.json"
LEGACY_STATUS_DIR = "status"
CHECKPOINTS_DIR = "_checkpoints"  # the reference trainer's resumable checkpoints (not table data either)
ALERTS_LOCK = ".alerts.lock"  # run=RUN/: held by alerts/watch --write while storing alerts, and by rm

_MAX_NAME = 200  # bytes in UTF-8: "run=<name>" must fit a file name (255 bytes on most filesystems)
_ALLOWED = re.compile(r"^[\w.\-+@:,]+$", re.UNICODE)  # no "=": DuckDB's Hive parser splits "run=a=b" wrongly
_ASCII_NAME = re.compile(rf"[A-Za-z0-9_.\-+@:,]{{1,{_MAX_NAME}}}")  # a subset of the rules below: valid at once


def default_root(store: str | os.PathLike[str] | StorePath | None = None) -> StorePath:
    """The store root: ``store`` if given, else ``$ENTROPY_WATCH_DIR``, else ``./ew_runs``. Resolved at call time.

    An ``s3://bucket/prefix`` URI gives an :class:`~entropy_watch.store.fs.ObjectPath` (see :mod:`.fs`).
    """
    if store is not None and not isinstance(store, str | os.PathLike):
        return store  # already an ObjectPath
    text = str(store) if store is not None and str(store) != "" else os.environ.get(ENV_STORE) or DEFAULT_STORE
    if is_uri(text):
        return open_root(text)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:  # gs://, hdfs://, az://...: Path() would make a local folder named "gs:" and write there
        raise ValueError(
            f"store root {text!r}: a {scheme.group(1)}:// store is not supported; use a local or shared folder, or "
            "s3://BUCKET/PREFIX (an S3-compatible endpoint via AWS_ENDPOINT_URL_S3, e.g. Google Cloud Storage's)"
        )
    return Path(text).expanduser()


def validate_run_name(name: str) -> str:
    """Return ``name`` if it is a safe run name, else raise :class:`InvalidRunName` saying what to change.

    Allowed: letters (any script), digits and ``_ . - + @ : ,``; at most 200 bytes in UTF-8; not ``.``/``..``; no
    leading dot (hidden files are the store's temporaries) or dash (``show -x`` reads as an option: the run could
    only be reached as ``show -- -x``). Rejects ``/``, ``\\``, NUL and control characters.
    """
    if isinstance(name, str) and _ASCII_NAME.fullmatch(name) and name[0] not in ".-":
        return name  # the common case, decided in one regex (listing 10,000 runs validates every name)
    if not isinstance(name, str) or not name:
        raise InvalidRunName("run name is empty; pass a name such as 'grpo-s0'")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > _MAX_NAME:
        raise InvalidRunName(f"run name is too long ({size} bytes in UTF-8); use at most {_MAX_NAME} bytes")
    bad = [c for c in name if c in "/\\\0" or unicodedata.category(c).startswith("C")]
    if bad:
        raise InvalidRunName(f"run name {name!r} contains {bad[0]!r}; use letters, digits and _ . - + @ : ,")
    if name in (".", "..") or name.startswith((".", "-")):
        raise InvalidRunName(
            f"run name {name!r} may not start with {name[0]!r}; start it with a letter, digit or _ (then _ . - + @ : ,)"
        )
    if not _ALLOWED.match(name):
        raise InvalidRunName(f"run name {name!r} has characters outside letters, digits and _ . - + @ : ,")
    return name


def safe_run_name(text: str) -> str:
    """``text`` made into a name that :func:`validate_run_name` accepts (the one rule for derived names).

    Every character the validator refuses becomes ``_`` (``=`` too: ``lr=1e-6.csv`` -> ``lr_1e-6``), leading dots
    and dashes go, and the result is cut to 200 bytes in UTF-8 at a character boundary; ``run`` when nothing is
    left. A name that is already valid comes back unchanged.
    """
    chars = [c if _allowed_char(c) else "_" for c in str(text).strip()]
    name = "".join(chars).lstrip(".-").encode("utf-8")[:_MAX_NAME].decode("utf-8", "ignore")  # no half character
    return validate_run_name(name or "run")


def _allowed_char(c: str) -> bool:
    return bool(_ALLOWED.match(c)) and c not in "/\\\0" and not unicodedata.category(c).startswith("C")


def validate_table(table: str) -> str:
    """Return ``table`` if it is one of :data:`TABLES`, else raise ``ValueError``."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    return table


def run_dir(root: StorePath, run: str) -> StorePath:
    return _as_root(root) / f"run={validate_run_name(run)}"


def table_dir(root: StorePath, run: str, table: str, rank: int) -> StorePath:
    return run_dir(root, run) / f"table={validate_table(table)}" / f"rank={int(rank)}"


def status_dir(root: StorePath, run: str) -> StorePath:
    return run_dir(root, run) / STATUS_DIR


def status_path(root: StorePath, run: str, rank: int) -> StorePath:
    return status_dir(root, run) / f"rank={int(rank)}.json"


def run_json_path(root: StorePath, run: str) -> StorePath:
    return run_dir(root, run) / RUN_JSON


def catalog_path(root: StorePath) -> StorePath:
    return _as_root(root) / CATALOG


def _as_root(root: StorePath | str | os.PathLike[str]) -> StorePath:
    """``root`` as a path object (callers sometimes pass a ``str``: a local folder or an ``s3://`` URI)."""
    return root if isinstance(root, Path | ObjectPath) else default_root(root)
