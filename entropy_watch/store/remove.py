"""Deleting runs: :func:`remove_run` takes a run out of the store so that every reader agrees it is gone.

``rm -rf ROOT/run=NAME`` deletes the files in whatever order the file system lists them: a reader, the catalog's
views or the app's tail reader listing meanwhile meets a run with some files gone (a part deleted before the segments
it covered: rows missing, not double counted, but read as data), a compaction in the run fails half-way, and a
``rm`` killed mid-way leaves a half run that ``ls`` lists for good. The order here keeps every moment readable:

**Local store.** (1) Every ``rank=`` folder of the run is locked: ``.compact.lock`` (so no compaction is mid-way in
it), then ``.read.lock`` exclusively (waits for readers mid-query; readers take it shared, both in sorted order, so
there is no deadlock). (2) The run folder is *renamed* into a hidden folder of the root
(``.removing-<host>-<pid>-<ns>/``),
one atomic step: before it every reader sees the whole run, after it none sees any of it (the catalog's globs read
``run=*``, listing reads ``run=`` folders, and Spark/Trino skip names starting with a dot). (3) The locks are let go,
the hidden folder is deleted, and the run's row leaves ``_runs.parquet``. A ``rm`` killed after (2) leaves only the
hidden folder, which the next ``rm`` deletes once its writer is gone (:func:`clean_leftovers`). Of two ``rm`` of one
run at once, the one that finds the run renamed away by the other raises :class:`RunNotFound`.

**Object store** (no rename, no locks): the run's objects are deleted data first, then heartbeats, then its
``_run.json``/``_meta`` last, so the run stays listed, with its config, until its last object goes; a reader
meanwhile sees fewer rows (never a file twice; one that vanished under a read is listed again, as after a
compaction), then the folder markers go. Then ``rm`` lists the run's prefix again and deletes what it finds the same
way, until a listing comes back empty: a compactor takes no lock either, and one that read the run before ``rm``
could PUT its merged part after ``rm``'s listing (the deleted run's rows were listed again, without their config,
though ``rm`` had said "removed"). This relies on the service being strongly consistent, as S3 is (AWS since December
2020, MinIO, moto): a listing sees every PUT and DELETE that completed before it. What is guaranteed, with any number
of compactions at once: when ``rm`` returns, a listing found nothing under the run's prefix, and a compactor whose
part landed after that listing deletes it itself (:mod:`~entropy_watch.store.compact`: it finds neither config,
heartbeats, segments nor its inputs left), so the run stays gone. The exceptions are a compactor killed between its
PUT and that check (its part lists the run again, data only, until ``rm`` is run again) and a run written again
under the name meanwhile (below; a compactor that read the old run then keeps its part in the new one). Should
:data:`REMOVE_ROUNDS` listings in a row find new objects, ``rm`` gives up and raises :class:`RunWrittenMeanwhile`
(a writer is at work: what it wrote last is left), but for a live run deleted with ``force``, which its writer
brings back anyway. A ``rm`` killed mid-way leaves a run that ``rm`` deletes when run again.

A run whose writer is alive (state ``running``: a heartbeat younger than three intervals) is refused unless
``force``: its writer goes on, and its next flush creates the run again (its ``_run.json`` and the steps it logs
from then on; the writer warns once), so the CLI says so after deleting it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from entropy_watch.errors import EntropyWatchError, RunNotFound
from entropy_watch.store import fs, layout, manifest
from entropy_watch.store.atomic import STALE_TMP_AGE_S, pid_alive, write_parquet_atomic
from entropy_watch.store.compact import COMPACT_LOCK
from entropy_watch.store.files import READ_LOCK, rank_dirs
from entropy_watch.store.fs import ObjectPath, StorePath
from entropy_watch.store.layout import ALERTS_LOCK
from entropy_watch.store.reader import Store

try:
    import fcntl
except ImportError:  # Windows: no locks; the rename is still atomic
    fcntl = None  # type: ignore[assignment]

LEFTOVER_PREFIX = ".removing-"
_ASIDE = re.compile(r"^\.replaced-(?P<run>.+)-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-\d+$")
"""``import --replace``'s folder of the run it replaced (importers/staging.py)."""
_LEFTOVER = re.compile(r"^\.removing-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-(?P<ns>\d+)$")
_OLD_LEFTOVER = re.compile(r"^\.removing-(?P<pid>\d+)-(?P<ns>\d+)$")  # before the host was in the name: no host
_HIDING: set[str] = set()  # this process' hidden folders between their mkdir and the run's rename (other threads)


REMOVE_ROUNDS = 5
"""Listings of a run on an object store that ``rm`` deletes before it gives up (module docstring)."""


class RunIsLive(EntropyWatchError):
    """The run's writer is alive (state ``running``); nothing was deleted."""


class RunWrittenMeanwhile(EntropyWatchError):
    """Objects kept appearing in a run on an object store while ``rm`` deleted it (:data:`REMOVE_ROUNDS` listings):
    a writer not known to be live, or compactions; what they wrote last is still there."""


def remove_run(
    root: str | os.PathLike[str] | StorePath | None,
    run: str,
    *,
    force: bool = False,
    _after_hide: Callable[[], None] | None = None,
) -> bool:
    """Delete ``run`` from the store (module docstring); raises :class:`RunNotFound`, :class:`RunIsLive` (unless
    ``force``) or :class:`InvalidRunName`, having deleted nothing. Returns whether the run was live (deleted under
    ``force``: its writer will create it again). ``_after_hide`` is a test hook."""
    root_path = layout.default_root(root)
    live = check_removable(Store(root_path), run, force=force)
    rdir = layout.run_dir(root_path, run)
    if isinstance(rdir, ObjectPath):
        if not _remove_objects(rdir) and not live:  # live (forced): its writer brings it back, as the CLI says
            raise RunWrittenMeanwhile(
                f"run {run!r} in {root_path} was written to while rm deleted it ({REMOVE_ROUNDS} listings in a row "
                "found new objects): a writer or a compaction of it is running. Stop it, then rm the run again"
            )
        return bool(live)
    hidden = root_path / f"{LEFTOVER_PREFIX}{_host()}-{os.getpid()}-{time.time_ns()}"
    with _locked(rdir), _hiding(hidden.name):
        hidden.mkdir()
        for aside in _asides(root_path, run):  # first: a rm killed after it leaves the run, which rm deletes again
            with contextlib.suppress(OSError):
                os.rename(aside, hidden / aside.name)
        try:
            os.rename(rdir, hidden / rdir.name)  # one step: the whole run, or none of it
        except BaseException as exc:
            with contextlib.suppress(OSError):
                hidden.rmdir()  # empty: the rename did not happen
            if isinstance(exc, FileNotFoundError) and not os.path.lexists(rdir):  # another rm renamed it away first
                raise RunNotFound(
                    f"run {run!r} not found in store {root_path}: another rm removed it meanwhile"
                ) from None
            raise
    if _after_hide is not None:
        _after_hide()
    _rmtree(hidden)
    _forget(root_path, run)
    return bool(live)


def _asides(root: Path, run: str) -> list[Path]:
    """``run``'s ``.replaced-<run>-<host>-<pid>-<ns>`` folders that ``import --replace`` left (killed after publishing
    the new run, before deleting the one it replaced), but those of a live import on this host. Once the run is gone
    the next import moves such a folder back as ``run=<run>`` (importers/staging.py: "the user's only copy"): a
    deleted run came back, as it was before that import."""
    me = _host()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    out = []
    for e in entries:
        m = _ASIDE.match(e.name)
        if m is None or m["run"] != run or not e.is_dir(follow_symlinks=False):
            continue
        if m["host"] == me and int(m["pid"]) != os.getpid() and pid_alive(int(m["pid"])):
            continue  # a live import's: it deletes it itself, or moves it back if it fails
        out.append(Path(e.path))
    return out


def check_removable(store: Store, run: str, *, force: bool = False) -> bool:
    """Raise :class:`InvalidRunName`, :class:`RunNotFound`, or :class:`RunIsLive` (unless ``force``) for ``run``;
    returns whether the run is live (so only under ``force``)."""
    layout.validate_run_name(run)
    live = store.run_info(run).state == "running"
    if live and not force:
        raise RunIsLive(
            f"run {run!r} is live (its writer's heartbeat is recent); nothing was deleted. Stop the writer first, or "
            "pass --force (the live writer then goes on and creates the run again with the steps it logs next)"
        )
    return live


def _host() -> str:
    """This machine's name, letters and digits only (at most 32), as importers/staging.py writes it."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]


def clean_leftovers(root: str | os.PathLike[str] | StorePath | None, *, max_age_s: float = STALE_TMP_AGE_S) -> int:
    """Delete the hidden folders of ``rm`` runs that were killed after hiding their run; returns how many. Only those
    whose writer is gone: its host is this one and its pid is not alive, or it is older than ``max_age_s`` (a
    folder without the host in its name, of an earlier version: that age only). A live ``rm``'s fresh folder, between
    its ``mkdir`` and its rename, was deleted too, and that ``rm`` failed. Nothing reads them; a ``rm`` still deleting
    one only meets files already gone. Housekeeping only: a ``.removing-*`` that is a link (never ``rm``'s: it is
    not followed), not named as ``rm`` names them, or that cannot be deleted now (another user's files) is left as
    it is, never a reason for this ``rm`` to fail."""
    root_path = layout.default_root(root)
    if fs.is_object(root_path):
        return 0
    try:
        names = [
            e.name
            for e in os.scandir(root_path)
            if e.name.startswith(LEFTOVER_PREFIX) and e.is_dir(follow_symlinks=False)
        ]
    except FileNotFoundError:
        return 0
    done = 0
    for name in filter(lambda n: _writer_gone(n, max_age_s), names):
        try:
            _rmtree(root_path / name)
        except OSError:
            continue
        done += 1
    return done


def _writer_gone(name: str, max_age_s: float) -> bool:
    """Whether the ``rm`` that made the hidden folder ``name`` is gone (:func:`clean_leftovers`)."""
    m = _LEFTOVER.match(name) or _OLD_LEFTOVER.match(name)
    if m is None:
        return False
    if (time.time_ns() - int(m["ns"])) / 1e9 > max_age_s:
        return True
    pid = int(m["pid"])
    if m.groupdict().get("host") != _host():
        return False
    return name not in _HIDING if pid == os.getpid() else not pid_alive(pid)  # this process': one stopped mid-way


@contextlib.contextmanager
def _hiding(name: str) -> Iterator[None]:
    _HIDING.add(name)
    try:
        yield
    finally:
        _HIDING.discard(name)


@contextlib.contextmanager
def _locked(rdir: Path) -> Iterator[None]:
    """Hold every ``rank=`` folder's ``.compact.lock``, then its ``.read.lock`` exclusively (both in sorted order)."""
    if fcntl is None:
        yield
        return
    folders = sorted(d for t in _table_dirs(rdir) for d in rank_dirs(t))
    fds: list[int] = []
    try:
        # First the run's ALERTS_LOCK: `alerts --write` / `watch --write` (this version's and the previous one's) hold
        # it from reading the stored alerts to writing new ones, and their RunWriter made the run again (a config-less
        # stub) when the rename fell in between; they read the rank folders (shared .read.lock) while holding it.
        with contextlib.suppress(OSError):
            fds.append(os.open(rdir / ALERTS_LOCK, os.O_RDONLY | os.O_CREAT, 0o644))
            fcntl.flock(fds[-1], fcntl.LOCK_EX)
        for name in (COMPACT_LOCK, READ_LOCK):  # all compaction locks first: a compactor holds one, then reads
            for d in folders:
                try:
                    fd = os.open(d / name, os.O_RDONLY | os.O_CREAT, 0o644)
                except OSError:  # a read-only folder: the rename is refused too, and says why
                    continue
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def _table_dirs(rdir: Path) -> list[Path]:
    try:
        return [rdir / e.name for e in fs.listdir(rdir) if e.is_dir and e.name.startswith("table=")]
    except FileNotFoundError:
        return []


def _rmtree(path: Path) -> None:
    def gone_already(func: object, p: str, exc_info: tuple[type[BaseException], BaseException, object]) -> None:
        if not isinstance(exc_info[1], FileNotFoundError):  # another `rm` cleaning the same leftover
            raise exc_info[1]

    shutil.rmtree(path, onerror=gone_already)  # onexc= is Python 3.12+


def _forget(root: Path, run: str) -> None:
    """Drop the run's row from ``_runs.parquet``. A row of a run not listed is never read, and one of a run created
    again under the name has another stamp; this keeps the file from holding removed runs for good."""
    dest = Path(manifest.path(root))
    try:
        table = pq.ParquetFile(str(dest)).read()
    except (OSError, pa.ArrowException):
        return  # none, or unreadable: listing ignores it anyway
    keep = pc.not_equal(table["name"], run)
    if pc.all(keep).as_py() is not False:
        return
    with contextlib.suppress(OSError):  # a full disk: the stale row is harmless (above)
        write_parquet_atomic(dest, table.filter(keep))  # a temporary clean_stale_tmp knows, if rm is killed


def _remove_objects(rdir: ObjectPath) -> bool:
    """Delete a run's objects: table data, then heartbeats, then the config, then folder markers; again while a
    listing of its prefix finds any (module docstring). Returns whether one came back empty within
    :data:`REMOVE_ROUNDS`."""
    skip = len(rdir.key) + 1
    for _ in range(REMOVE_ROUNDS):
        listed = rdir.fs.get_file_info(pafs.FileSelector(rdir.key, allow_not_found=True, recursive=True))
        if not listed:  # nothing at all, folder markers included: the run is not listed any more
            return True
        files = [ObjectPath(rdir.fs, i.path) for i in listed if i.type == pafs.FileType.File]
        for path in sorted(files, key=lambda p: _order(p.key[skip:])):
            fs.unlink(path)
        # pyarrow puts an empty marker object in place of a folder's last file: without this the run stays listed
        with contextlib.suppress(FileNotFoundError):
            rdir.fs.delete_dir(rdir.key)
    return False


def _order(rel: str) -> int:
    """When a run's object goes (its path relative to the run): data, heartbeats, others, then the config."""
    if rel.startswith("table="):
        return 0
    if rel.startswith((layout.STATUS_DIR + "/", layout.LEGACY_STATUS_DIR + "/")):
        return 1
    if rel.startswith("_meta/") or rel in (layout.RUN_JSON, layout.LEGACY_RUN_JSON):
        return 3
    return 2
