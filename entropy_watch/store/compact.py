"""Compaction: merge many small segments into few ``part-`` files, without readers ever double counting.

Why: every file costs a one-shot query about 0.15-0.3 ms (notes/STORE_AND_APP §1.6), and a merged file's min/max
statistics let "last N steps" queries skip almost everything.

Order of operations in one ``table=<t>/rank=<r>`` folder, and why each reader moment is safe:

1. list the published files; pick the inputs (segments older than ``min_age_s``, or everything with ``final``);
2. write the merged rows to ``.part-….parquet.tmp``, record the union of the inputs' keys ``(_writer, _seq)`` in the
   Parquet key-value metadata (:data:`~entropy_watch.store.files.COVERAGE_KEY`), then ``os.replace`` to
   ``part-<session>-<n>.parquet``;
3. delete the inputs.

A reader listing before 2 sees only the inputs; between 2 and 3 it sees the part *and* (some of) the inputs and
reads each key from one file (:func:`~entropy_watch.store.files.select_files`); after 3 it sees the part. Step 3
holds ``.read.lock`` exclusively, and readers hold it shared from listing to the end of their query
(:func:`~entropy_watch.store.query.read_locked`), so a listed file is not deleted under a reader; where the lock
cannot be used (read-only mount, no ``fcntl``) a reader gets an IO error from DuckDB and lists again. A crash
between 2 and 3 leaves both, which readers handle the same way and the next compaction cleans up. One compactor
per folder at a time (an advisory lock on ``.compact.lock``; a busy folder is skipped).

**On an object store** (no rename, no locks; :mod:`~entropy_watch.store.fs`) step 2 is one PUT, which makes the part
visible whole, and step 3 is *deferred*: a file whose every key a chosen part holds is deleted only once that part is
older than ``grace_s`` (default :data:`OBJECT_GRACE_S`), by this or a later compaction. A reader that listed before
the part appeared therefore finishes reading the inputs long before they go, and one that lists after it sees the
part and skips them; should a read outlast the grace period, the vanished file is an error the reader retries after
listing again. Two compactors at once are safe for readers (coverage is per key; partly overlapping parts are read
restricted to their missing keys), only wasteful: run one, e.g. from cron.

**Beside ``rm`` on an object store.** Neither takes a lock there (:mod:`~entropy_watch.store.remove`), so a compactor
that listed and read a run before ``rm`` deleted it could PUT its part after: the deleted run was listed again, without
its config. After its PUT the compactor therefore looks at the run (one LIST of the run's folder; the service is
strongly consistent, as S3 is since December 2020, MinIO and moto: a listing sees every completed PUT and DELETE). While
it holds anything but table folders (its config and heartbeats: no compaction deletes them, and ``rm`` deletes them
after all the data), a segment or one of the part's inputs, the run lives or is mid-``rm``, and ``rm`` lists again until
it finds nothing, so deletes the part; else the run was removed, and the compactor deletes its part and the folder
markers pyarrow leaves. Its inputs went with the run, so it takes no row a reader should see, and none is counted twice;
a reader that listed it lists again when it vanishes. An input deleted under the read (or a part before its coverage was
read) ends that folder's pass with nothing published; a cron ``compact`` of every run goes on with the next. Limits: a
compactor killed between its PUT and its look leaves the part (``rm`` again deletes it); a run written again under its
name meanwhile keeps the old rows the part holds, and a writer starting it in the instant between the compactor's last
listing and its delete of the folder markers (recursive on S3) loses what it wrote in that instant; a run of parts only,
without config or heartbeats (copied in by hand), whose inputs a second compactor deleted relying on this very part
(possible only with ``grace_s`` shorter than the look takes; the CLI always waits :data:`OBJECT_GRACE_S`) reads as
removed, and loses those rows.

**Parts merge too, over time.** Each pass writes at most one part per folder, so a cron ``compact`` every few minutes
beside a live run left one part per pass (200 passes: 200 parts, a cold read of the run 4.5x slower than from one
file) until someone ran ``compact --final``. The policy: when a folder holds more than :data:`MAX_SMALL_PARTS` parts
smaller than :data:`SMALL_PART_BYTES` (counting only parts still read: not those a wider part already covers), the
pass merges those parts together with its sealed segments. So a folder holds at most ``MAX_SMALL_PARTS + 1`` small
parts, and each row is rewritten about once every ``MAX_SMALL_PARTS`` passes until its part grows past the size,
after which it is never rewritten (``--final`` merges everything into one file, whatever the sizes). It is the same
publish-then-delete step as above, with parts among the inputs (as ``--final`` always had), so it is as safe while
the writer is live and under ``kill -9``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from entropy_watch.errors import StoreUnwritable
from entropy_watch.store import fs, layout, quarantine
from entropy_watch.store.atomic import clean_stale_tmp, publishing
from entropy_watch.store.files import (
    COVERAGE_KEY,
    FINAL_KEY,
    PART_RE,
    READ_LOCK,
    CoverageCache,
    FileRef,
    Key,
    encode_coverage,
    list_data_files,
    new_session,
    part_name,
    rank_dirs,
    select_files,
)
from entropy_watch.store.fs import ObjectPath, StorePath
from entropy_watch.store.query import key_strings, run_names
from entropy_watch.store.schema import SEQ_COL, WRITER_COL

try:
    import fcntl
except ImportError:  # Windows: no cross-process guard; run one compactor at a time
    fcntl = None  # type: ignore[assignment]

DEFAULT_MIN_AGE_S = 60.0
MAX_SMALL_PARTS = 8
"""More small parts than this in one folder are merged by the next pass (module docstring)."""
SMALL_PART_BYTES = 64 * 1024 * 1024
"""A part at least this large is never merged again, but by ``final``."""
COMPACT_LOCK = ".compact.lock"
OBJECT_GRACE_S = 60.0
"""Seconds a part must have been visible before the files it covers are deleted from an object store."""
ROW_GROUP_ROWS = 128 * 1024


@dataclass
class CompactionReport:
    """What :func:`compact` did: files merged and removed, parts written, folders skipped because busy."""

    merged_files: int = 0
    parts_written: int = 0
    rows: int = 0
    busy: list[str] = field(default_factory=list)


def compact(
    root: str | os.PathLike[str] | None = None,
    run: str | None = None,
    *,
    min_age_s: float = DEFAULT_MIN_AGE_S,
    final: bool = False,
    tables: tuple[str, ...] | None = None,
    fsync: bool = False,
    grace_s: float | None = None,
) -> CompactionReport:
    """Merge sealed segments of ``run`` (or every run) into ``part-`` files; see the module docstring.

    Args:
        root: store root (None: ``$ENTROPY_WATCH_DIR`` or ``./ew_runs``).
        run: one run, or None for all.
        min_age_s: only segments whose file is at least this old (seconds) are merged; parts stay as they are.
        final: merge every segment and part into one file per (table, rank), whatever its age (run end).
        tables: restrict to these tables.
        fsync: flush the new part and its directory before deleting inputs.
        grace_s: delete merged files only once the part covering them is this old (seconds). None: at once on a
            local store (deletion waits for readers under ``.read.lock``), :data:`OBJECT_GRACE_S` on an object store.
    """
    root_path = layout.default_root(root)
    if grace_s is None:
        grace_s = OBJECT_GRACE_S if fs.is_object(root_path) else 0.0
    runs = [layout.validate_run_name(run)] if run is not None else run_names(root_path)
    report = CompactionReport()
    coverage = CoverageCache()
    session = new_session()
    for name in runs:
        for table in tables or layout.TABLES:
            tdir = layout.run_dir(root_path, name) / f"table={layout.validate_table(table)}"
            for rdir in rank_dirs(tdir):
                _compact_dir(rdir, session, coverage, report, min_age_s, final, fsync, grace_s)
    return report


def _compact_dir(
    rdir: StorePath,
    session: str,
    coverage: CoverageCache,
    report: CompactionReport,
    min_age_s: float,
    final: bool,
    fsync: bool,
    grace_s: float,
) -> None:
    with _compacting(rdir) as mine:
        if mine is None:  # the run was deleted meanwhile: nothing to merge
            return
        if not mine:
            report.busy.append(str(rdir))
            return
        # Holding the lock, no other compactor writes here: any .part tmp is a dead compactor's leftover.
        clean_stale_tmp(rdir, by_pid=True, max_age_s=0.0 if fcntl is not None else 3600.0, prefix=".part-")
        try:
            files = list_data_files(rdir, coverage)
        except FileNotFoundError:  # a part gone before its footer was read: `rm` (no lock on an object store)
            return
        now = time.time()
        # Files a part already covers (merged earlier; the deletion was deferred or its compactor died): delete them.
        redundant = _redundant(files, now, grace_s)
        _delete(rdir, redundant)
        report.merged_files += len(redundant)
        gone = set(redundant)
        files = [f for f in files if f not in gone]
        covered = frozenset().union(*(f.keys for f in files if f.kind == "part"))
        if final:
            inputs = [f for f in files if f.kind == "part" or not f.keys <= covered]
            if len(inputs) == 1 and inputs[0].kind == "part":
                return
        else:
            inputs = [f for f in files if f.kind == "seg" and not f.keys <= covered and now - _age(f) >= min_age_s]
            inputs += _small_parts(files)
        if len(inputs) < 2:
            return
        try:
            part, rows = _write_part(rdir, inputs, session, final=final, fsync=fsync)
        except (pa.ArrowException, OSError) as exc:
            if fs.vanished(exc):  # an input deleted under the read (`rm`: module docstring); nothing was published
                return
            if _unwritable(exc) is not None:  # a full disk says nothing about the inputs: don't read them all again
                raise _not_written(rdir, inputs, exc) from exc
            bad = set(quarantine.check(f.path for f in inputs))  # unreadable inputs: skipped, kept on disk
            if not bad:
                raise
            inputs = [f for f in inputs if f.path not in bad]
            if len(inputs) < 2:
                return
            try:
                part, rows = _write_part(rdir, inputs, session, final=final, fsync=fsync)
            except (pa.ArrowException, OSError) as exc:
                if fs.vanished(exc):
                    return
                if _unwritable(exc) is None:
                    raise
                raise _not_written(rdir, inputs, exc) from exc
        if isinstance(rdir, ObjectPath) and _removed_meanwhile(rdir, inputs, part):
            _withdraw(rdir.parent.parent, part)  # its run was deleted while its rows were merged: not brought back
            return
        report.parts_written += 1
        report.rows += rows
        if grace_s <= 0:
            _delete(rdir, inputs)
            report.merged_files += len(inputs)


class CompactionNotWritten(StoreUnwritable):
    """A merged file could not be written for want of space (full disk, quota, file size limit). Its folder is as it
    was: the temporary was removed and no input deleted; folders merged before it stay merged."""


_UNWRITABLE = {
    getattr(errno, name): reason
    for name, reason in (
        ("ENOSPC", "No space left on device"),
        ("EDQUOT", "Disk quota exceeded"),
        ("EFBIG", "File too large"),  # past RLIMIT_FSIZE or the file system's largest file
    )
    if hasattr(errno, name)
}


def _unwritable(exc: BaseException) -> str | None:
    """The reason, when ``exc`` (or what it wraps: pyarrow re-raises the file object's error) says the disk refused a
    write; None for any other failure (an unreadable input among them)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in _UNWRITABLE:
            return _UNWRITABLE[seen.errno]
        for reason in _UNWRITABLE.values():
            if reason in str(seen):
                return reason
        seen = seen.__cause__ or seen.__context__
    return None


def _not_written(rdir: StorePath, inputs: list[FileRef], exc: BaseException) -> CompactionNotWritten:
    files = f"{len(inputs):,} files to merge are" if len(inputs) != 1 else "1 file to merge is"
    return CompactionNotWritten(
        f"cannot write a merged file in {rdir} ({_unwritable(exc)}); nothing was lost: its {files} kept as they were "
        "and the partial file was removed. Free space, then run `entropy-watch compact` again"
    )


@contextlib.contextmanager
def _compacting(rdir: StorePath) -> Iterator[bool | None]:
    """Hold ``.compact.lock`` in a local folder (yields False when another compactor has it, None when the folder
    is gone: its run was deleted); an object store has no locks and always yields True."""
    if fs.is_object(rdir) or fcntl is None:
        yield True
        return
    try:
        lock_fd = os.open(rdir / COMPACT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # the run was deleted (`entropy-watch rm`) since its folders were listed
        yield None
        return
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        # `rm` moves a run's folder away while holding this lock: got after that, the folder is no longer the store's
        yield True if os.path.isdir(rdir) else None
    finally:
        os.close(lock_fd)


def _redundant(files: list[FileRef], now: float, grace_s: float) -> list[FileRef]:
    """Files whose every key is read from a chosen part at least ``grace_s`` old: nobody needs them any more."""
    sel = select_files(files)
    chosen = set(sel.whole) | {ref for ref, _ in sel.partial}
    holders_of: dict[Key, list[FileRef]] = {}  # by key: comparing every file with every chosen one was quadratic
    for ref in chosen:
        for key in ref.keys:
            holders_of.setdefault(key, []).append(ref)
    out = []
    for f in files:
        if f in chosen:
            continue
        holders = {p.path: p for key in f.keys for p in holders_of.get(key, ())}.values()
        if holders and all(p.kind == "part" and now - _age(p) >= grace_s for p in holders):
            out.append(f)
    return out


def _small_parts(files: list[FileRef]) -> list[FileRef]:
    """The parts still read in a folder (not covered by a wider one) smaller than :data:`SMALL_PART_BYTES`, when
    there are more than :data:`MAX_SMALL_PARTS` of them (to merge); else none."""
    sel = select_files(files)
    chosen = [f for f in sel.whole if f.kind == "part"] + [f for f, _ in sel.partial if f.kind == "part"]
    if len(chosen) <= MAX_SMALL_PARTS:
        return []
    small = [f for f in chosen if _size(f) < SMALL_PART_BYTES]
    return small if len(small) > MAX_SMALL_PARTS else []


def _size(ref: FileRef) -> int:
    """The file's size in bytes; "large" when it vanished (another compactor's deferred deletion): left alone."""
    path = ref.path
    try:
        if fs.is_object(path):
            info = path.fs.get_file_info(path.key)  # type: ignore[union-attr]
            return int(info.size) if info.size is not None else SMALL_PART_BYTES
        return os.stat(path).st_size
    except OSError:
        return SMALL_PART_BYTES


def _write_part(
    rdir: StorePath, inputs: list[FileRef], session: str, *, final: bool, fsync: bool
) -> tuple[StorePath, int]:
    """Stream the inputs (each key once) into one part published by tmp + ``os.replace`` (one PUT on an object
    store); returns the part and the rows written."""
    sel = select_files(inputs)
    sources: list[tuple[StorePath, frozenset | None]] = [(f.path, None) for f in sel.whole]
    sources += [(f.path, keys) for f, keys in sel.partial]
    keys = frozenset().union(*(f.keys for f in inputs))
    schema = pa.unify_schemas([_parquet(p).schema_arrow for p, _ in sources], promote_options="permissive")
    schema = schema.with_metadata({COVERAGE_KEY: encode_coverage(keys).encode(), FINAL_KEY: b"1" if final else b"0"})
    path = rdir / part_name(session)
    tmp = rdir / f".{path.name}.tmp"
    written = 0
    # the ParquetWriter closes (writes its footer) before `publishing` fsyncs and renames the file
    with publishing(path, tmp, fsync=fsync) as fh, pq.ParquetWriter(fh, schema, compression="zstd") as writer:
        pending: list[pa.Table] = []
        pending_rows = 0
        for src, wanted in sources:
            tbl = _parquet(src).read()
            if wanted is not None:
                mask = pc.is_in(
                    pc.binary_join_element_wise(tbl[WRITER_COL], pc.cast(tbl[SEQ_COL], pa.string()), "/"),
                    value_set=pa.array(key_strings(wanted)),
                )
                tbl = tbl.filter(mask)
            pending.append(_align(tbl, schema))
            pending_rows += tbl.num_rows
            if pending_rows >= ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                written += pending_rows
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
            written += pending_rows
    return path, written


def _removed_meanwhile(rdir: ObjectPath, inputs: list[FileRef], part: StorePath) -> bool:
    """Whether the run of ``rdir`` (an object store) was deleted while ``part`` was merged from ``inputs``: after the
    part's PUT, the run holds nothing but data parts, none of them one of ``inputs`` (module docstring). Anything else
    means it lives, or is mid-``rm`` (whose next listing deletes the part): its config and heartbeats, which no
    compaction deletes and ``rm`` deletes after the data; a segment; an input not yet deleted."""
    run = rdir.parent.parent
    if any(not e.name.startswith("table=") for e in fs.listdir(run)):  # one LIST: decides for every live run
        return False
    keep = {str(f.path) for f in inputs}
    return not any(
        str(path) != str(part) and (str(path) in keep or PART_RE.match(path.name) is None)
        for _, path in fs.walk_files(run)
    )


def _withdraw(run: ObjectPath, part: StorePath) -> None:
    """Delete ``part`` of the removed ``run``, then the folder markers pyarrow put in place of the last file of each
    folder (a run of markers only is listed, empty), unless a file appeared meanwhile: the last compactor to
    withdraw its part finds none."""
    fs.unlink(part)
    if next(fs.walk_files(run), None) is None:
        with contextlib.suppress(FileNotFoundError):
            run.fs.delete_dir(run.key)


def _align(tbl: pa.Table, schema: pa.Schema) -> pa.Table:
    """``tbl`` with exactly ``schema``'s columns, in order (missing ones null, types cast)."""
    cols = []
    for f in schema:
        if f.name in tbl.column_names:
            col = tbl[f.name]
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(tbl.num_rows, type=f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _parquet(path: StorePath) -> pq.ParquetFile:
    """One Parquet file of either backend, opened for reading."""
    filesystem, p = fs.arrow(path)
    return pq.ParquetFile(filesystem.open_input_file(p))


def _age(ref: FileRef) -> float:
    """The file's modification time (Unix s); "now" when it vanished (so it is never treated as old)."""
    try:
        return fs.mtime(ref.path)
    except OSError:
        return time.time()


def _delete(rdir: StorePath, files: list[FileRef]) -> None:
    """Delete merged inputs; locally while holding ``.read.lock`` exclusively (waits for readers mid-read)."""
    if not files:
        return
    if fs.is_object(rdir) or fcntl is None:
        _unlink(files)
        return
    fd = os.open(rdir / READ_LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _unlink(files)
    finally:
        os.close(fd)


def _unlink(files: list[FileRef]) -> None:
    for f in files:
        fs.unlink(f.path)
