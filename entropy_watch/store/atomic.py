"""Atomic publication of files in the store, and removal of temporaries left by dead processes.

Crash-safety argument (DESIGN §3, notes/STORE_AND_APP §3):

* Every file a reader can see is written completely under a hidden temporary name in the *same directory*, then
  moved into place with ``os.replace``. On POSIX a rename within one filesystem is atomic: a reader's directory
  listing shows either no file or the complete file, never a prefix. A process killed mid-write (SIGKILL, OOM) leaves
  at most a hidden ``.….tmp`` file, which no reader glob (``seg-*.parquet``, ``part-*.parquet``, ``*.parquet``)
  matches. Writing under the final name instead leaves a truncated Parquet file ("No magic bytes found at end of
  file"), and then every query over the glob fails: one crash would break the dashboard (measured in the notes).
* SIGKILL does not drop the OS page cache, so tmp + rename alone survives *process* crashes. For power loss or a
  kernel crash, ``fsync=True`` flushes the file before the rename and the directory after it, so the new name is not
  persisted before the data it points to.
* Temporaries are named after their writer's pid; :func:`clean_stale_tmp` removes those of processes that are gone
  (and anything older than an hour), so crashes do not accumulate litter.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from entropy_watch.store.fs import ObjectPath, put_bytes, read_bytes

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (what they serialise across processes is then not)
    fcntl = None  # type: ignore[assignment]

STALE_TMP_AGE_S = 3600.0

_counter = itertools.count()
# ".seg-<time_ns>-<pid>-<seq>.parquet.tmp", ".part-<time_ns>-<pid>-<n>.parquet.tmp", ".<name>.<pid>.<n>.tmp"
_TMP_PID = (re.compile(r"^\.(?:seg|part)-\d+-(\d+)-\d+\.parquet\.tmp$"), re.compile(r"^\..+\.(\d+)\.\d+\.tmp$"))


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``): a reader sees one or the
    other under each name, never neither. False where the system or the filesystem cannot (the caller then renames
    twice, leaving a moment with no folder under ``b``)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # glibc before 2.28, or another libc
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return bool(done)


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename) to disk. No-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def json_tmp_path(path: Path) -> Path:
    """Hidden, process-unique temporary next to ``path``: ``.<name>.<pid>.<n>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{next(_counter)}.tmp")


@contextlib.contextmanager
def publishing(path: Path, tmp: Path, *, fsync: bool = False) -> Iterator[BinaryIO]:
    """Write a file for ``path`` through the hidden temporary ``tmp`` (same directory), then publish it.

    The body writes to the yielded file object; when it returns, the file is flushed (and fsynced with ``fsync``)
    and moved into place with ``os.replace``, and the directory entry is fsynced. If the body or the publish
    fails, the temporary is removed and the error propagates: readers never see a partial file. On an object store
    the body writes to memory and the object is published with one PUT only if the body returned.
    """
    if isinstance(path, ObjectPath):  # one PUT of the complete bytes: atomic on S3, nothing to rename (fs.py)
        buf = io.BytesIO()
        yield buf
        put_bytes(path, buf.getvalue())
        return
    try:
        with open(tmp, "wb") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        if exc.filename is None and exc.errno is not None:  # a failed write or close names no file: say which
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        _discard(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def _discard(tmp: Path) -> None:
    """Remove a temporary whose publish failed, quietly: on a store turned read-only the removal fails too, and its
    error must not hide the write's (a temporary left behind is hidden from readers and removed by
    :func:`clean_stale_tmp` once its process is gone)."""
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Publish ``data`` at ``path`` via a hidden temporary and ``os.replace`` (readers see old or new, never part)."""
    with publishing(path, json_tmp_path(path), fsync=fsync) as fh:
        fh.write(data)


def write_json_atomic(path: Path, obj: Any, *, fsync: bool = False) -> None:
    """Publish ``obj`` as UTF-8 JSON at ``path`` atomically (NaN/inf are written as JSON ``NaN``/``Infinity``)."""
    data = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    write_bytes_atomic(path, data, fsync=fsync)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is absent or unreadable (a reader never fails on a status file)."""
    try:
        obj = json.loads(read_bytes(path).decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        return None
    return obj if isinstance(obj, dict) else None


def write_parquet_atomic(path: Path, table: pa.Table, *, fsync: bool = False, compression: str = "snappy") -> None:
    """Write ``table`` to a hidden, process-unique ``.<name>.<pid>.<n>.tmp`` beside ``path``, optionally fsync it,
    then ``os.replace`` it into place. Two writers of one shared file (``_runs.parquet``: two overlapping compactions, a
    compaction and ``rm``) each publish a whole file; the last one wins."""
    with publishing(path, json_tmp_path(path), fsync=fsync) as fh:
        pq.write_table(table, fh, compression=compression)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a permission error means it exists)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def tmp_pid(name: str) -> int | None:
    """The pid encoded in a store temporary's file name, or None if ``name`` is not one."""
    for pattern in _TMP_PID:
        m = pattern.match(name)
        if m:
            return int(m.group(1))
    return None


def clean_stale_tmp(directory: Path, *, by_pid: bool, max_age_s: float = STALE_TMP_AGE_S, prefix: str = ".") -> int:
    """Remove the store's hidden temporaries in ``directory`` (``.<name>.<pid>.<n>.tmp``, and a DuckDB temporary's
    ``.tmp.wal``) that no live writer owns; returns how many.

    A temporary goes when it is older than ``max_age_s``, or (``by_pid=True``) when the pid in its name is not alive.
    Pass ``by_pid=True`` only for directories this machine's processes alone write (a rank's own folders): a pid from
    another host sharing the filesystem means nothing here. Only names starting with ``prefix`` are considered. The
    caller's own temporaries are never removed.
    """
    if isinstance(directory, ObjectPath):
        return 0  # objects are published whole: an object store never holds a temporary
    removed = 0
    now = time.time()
    me = os.getpid()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name.removesuffix(".wal")  # a DuckDB temporary's write-ahead log goes with it
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = tmp_pid(name)
        if pid is None or pid == me:
            continue
        try:
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        if age > max_age_s or (by_pid and not pid_alive(pid)):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


@contextlib.contextmanager
def flock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if needed) for the block, across processes; no-op where ``fcntl``
    is missing. The writer's ``_run.json`` merges and ``alerts --write`` hold one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
