"""Incremental listing for a reader that polls: the data files that appeared since its last poll, at a cost that does
not grow with the files it has already read.

A poller that lists every folder and compares every name with those it has seen pays per file on *every* poll
(measured by ``benchmarks/bench_scale.py``: an idle poll took 146 ms with 3,000 files read, and grew faster than the
files). :class:`FolderWatch` remembers, per folder, the names it saw and the folder's modification time:

* a local folder whose modification time is unchanged since a listing taken well after that time costs one
  ``stat``: nothing can have appeared, since publishing a file renames it into the folder. "Well after": a second
  change within the same timestamp tick would not move the time, so the listing must be :data:`SETTLE_FINE_NS` past it
  on a filesystem with sub-second timestamps (ext4, xfs, btrfs, tmpfs tick in milliseconds), :data:`SETTLE_COARSE_NS`
  on one with whole seconds. Trust lasts :data:`TRUST_NS`: then the folder is listed again whatever its time says (a
  network filesystem may serve a cached modification time for a while);
* a changed folder is listed by name only (``os.listdir``, in C), its names compared with the remembered set (a set
  difference, in C), and only the new names are parsed and turned into :class:`~entropy_watch.store.files.FileRef`;
* an object-store prefix has no modification time: it is listed each poll (one request per 1,000 keys) and diffed the
  same way.

Both levels the store has are watched this way: the ``table=<t>`` folder of each run (its ``rank=<r>`` folders) and
each rank folder (its segments and parts). Nothing is remembered until the caller :meth:`Scan.commit`-s a scan it
has fully ingested, so a poll that fails half-way is simply repeated.

**Files that went away** are reported too (:attr:`Scan.gone`: each rank folder that lost a data file since the last
commit, with the names it holds now): compaction deleting what it merged, or a run deleted, perhaps re-created under
the same name (``make demo`` does that on every run). A run that is no longer listed at all counts as deleted. A
folder re-created after a listing has a modification time after it, so it is listed again (settled or not). The
poller decides what the loss means (a tail reader drops the rows no listed file covers any more).

**A run's listing** (:class:`RunStamp`): what :meth:`~entropy_watch.store.Store.runs` says of a run (state, last step,
latest values, ranks) comes from files in its run folder (``_run.json``), its heartbeat folders and its table and rank
folders, each written by a rename into its folder. The stamp is the inode and modification time of each of those
folders, taken before the run is read; while every one is unchanged, and the stamp was settled and is younger than
:data:`TRUST_NS` (the rules above), the run reads as it did. A poller that re-lists runs on every refresh then reads
only the runs whose own files changed.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from entropy_watch.store import fs, layout
from entropy_watch.store.files import CoverageCache, FileRef, file_ref
from entropy_watch.store.fs import StorePath
from entropy_watch.store.meta import META_DIR

SETTLE_FINE_NS = 50_000_000
SETTLE_COARSE_NS = 2_000_000_000
TRUST_NS = 5_000_000_000


@dataclass
class _Seen:
    """What one folder held at its last committed listing."""

    names: frozenset[str]
    mtime_ns: int | None  # None: an object-store prefix (no modification time)
    settled: bool  # listed well after its modification time: an unchanged mtime means unchanged (module doc)
    listed_ns: int  # when it was listed (time.time_ns())
    files: bool  # the names are data files (a rank folder, or an object-store table prefix), not rank folders


@dataclass
class Scan:
    """The files new since the last committed scan (``new``, by rank folder then name) and the state to commit."""

    new: list[FileRef] = field(default_factory=list)
    gone: dict[str, tuple[StorePath, frozenset[str]]] = field(default_factory=dict)
    """Rank folders that lost a data file since the last commit: ``str(folder) -> (folder, names it holds now)``
    (no names: the folder is gone)."""
    refused: dict[str, str] = field(default_factory=dict)
    """Runs whose folders this user may not list (another user's private run): ``run -> why``; left out of the
    scan, their files neither new nor gone."""
    _states: dict[str, _Seen | None] = field(default_factory=dict)  # None: the folder is gone
    _runs: tuple[str, frozenset[str]] | None = None  # (table, runs scanned)


class FolderWatch:
    """Per-folder memory of one poller (not thread-safe: the caller serialises its polls)."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._runs: dict[str, frozenset[str]] = {}  # table -> the runs its last committed scan looked at

    @property
    def files(self) -> int:
        """Names remembered in rank folders (the files this poller has handled and that are still listed)."""
        return sum(1 for s in self._seen.values() if s.files for n in s.names if _is_data(n))

    def scan(self, root: StorePath, runs: Iterable[str], table: str, coverage: CoverageCache) -> Scan:
        """Data files of ``table`` for ``runs`` that appeared since the last :meth:`commit`, and the rank folders
        that lost some (:attr:`Scan.gone`; a run scanned before and missing from ``runs`` now was deleted)."""
        out = Scan()
        name = f"table={layout.validate_table(table)}"
        listed = list(runs)
        out._runs = (table, frozenset(listed))
        for run in [*listed, *sorted(self._runs.get(table, frozenset()).difference(listed))]:
            tdir = layout.run_dir(root, run) / name
            if fs.is_object(tdir):
                self._scan_object_table(tdir, coverage, out)
                continue
            before = self._seen.get(str(tdir))
            part = Scan()  # this run's share, kept only when all of it could be listed
            try:
                ranks = self._changed_names(tdir, part, _is_rank, files=False)
                for gone in (before.names if before else frozenset()).difference(ranks):  # deleted with their run
                    part._states[str(tdir / gone)] = None
                    self._lost(tdir / gone, frozenset(), part)
                for rank in ranks:
                    self._scan_rank(tdir / rank, coverage, part)
            except PermissionError as exc:  # another user's private run: said (refused), the rest scanned
                out.refused[run] = f"permission denied: {exc.filename or tdir}"
                continue
            out.new.extend(part.new)
            out.gone.update(part.gone)
            out._states.update(part._states)
        return out

    def commit(self, scan: Scan) -> None:
        """Remember what ``scan`` listed (call once its new files are ingested)."""
        for key, state in scan._states.items():
            if state is None:
                self._seen.pop(key, None)
            else:
                self._seen[key] = state
        if scan._runs is not None:
            self._runs[scan._runs[0]] = scan._runs[1]

    def forget(self, root: StorePath, runs: Iterable[str]) -> None:
        """Forget ``runs`` (a poller that stops following them): their files are neither new nor gone at the next
        scan, and were they scanned again later, every file they hold would be new."""
        gone = set(runs)
        if not gone:
            return
        prefixes = tuple(f"{layout.run_dir(root, r)}{sep}" for r in gone for sep in {os.sep, "/"})
        for key in [k for k in self._seen if k.startswith(prefixes)]:
            del self._seen[key]
        for table, names in self._runs.items():
            self._runs[table] = names - gone

    # -- internals ------------------------------------------------------------------------------------------------
    def _scan_rank(self, rdir: StorePath, coverage: CoverageCache, out: Scan) -> None:
        fresh = self._changed_names(rdir, out, _is_visible, files=True)
        state = out._states.get(str(rdir), False)
        if state is not False:  # listed (or found gone) this time: what it held before and lacks now went away
            self._lost(rdir, state.names if state is not None else frozenset(), out)
        refs = (file_ref(rdir / n, coverage) for n in sorted(fresh) if is_plain_file(rdir / n))  # fs.listdir
        out.new.extend(r for r in refs if r is not None)

    def _changed_names(self, folder: StorePath, out: Scan, keep: Callable[[str], bool], files: bool) -> list[str]:
        """Names in ``folder`` passing ``keep``: for a folder of ``files``, those new since the last commit; for a
        folder of rank folders, all of them (each is then looked at, one ``stat`` when unchanged). Records the
        folder's state in ``out``."""
        all_ = not files
        key = str(folder)
        before = self._seen.get(key)
        try:
            st = os.lstat(folder)
            if stat.S_ISLNK(st.st_mode):  # a link inside the store is not followed (fs.listdir): as if absent
                raise FileNotFoundError(folder)
        except FileNotFoundError:
            out._states[key] = None
            return []
        now = time.time_ns()
        if (
            before is not None
            and before.settled
            and before.mtime_ns == st.st_mtime_ns
            and now - before.listed_ns < TRUST_NS
        ):
            return sorted(n for n in before.names if keep(n)) if all_ else []
        names = frozenset(os.listdir(folder))  # in C; only the names that are new are looked at in Python
        tick = SETTLE_COARSE_NS if st.st_mtime_ns % 1_000_000_000 == 0 else SETTLE_FINE_NS
        settled = now - st.st_mtime_ns > tick
        out._states[key] = _Seen(names, st.st_mtime_ns, settled, listed_ns=now, files=files)
        fresh = names if all_ else names - (before.names if before else frozenset())
        return sorted(n for n in fresh if keep(n))

    def _scan_object_table(self, tdir: StorePath, coverage: CoverageCache, out: Scan) -> None:
        """One recursive LIST of an object-store table prefix, diffed against the names seen."""
        key = str(tdir)
        before = self._seen.get(key)
        listed: dict[str, StorePath] = {}
        for rel, path in fs.walk_files(tdir):
            rank, _, name = rel.partition("/")
            if rank.startswith("rank=") and rank[5:].isdigit() and "/" not in name and not name.startswith("."):
                listed[rel] = path
        names = frozenset(listed)
        out._states[key] = _Seen(names, None, False, listed_ns=time.time_ns(), files=True)
        lost = (before.names if before else frozenset()) - names
        for rank in sorted({n.partition("/")[0] for n in lost if _is_data(n)}):
            now = frozenset(n.partition("/")[2] for n in names if n.partition("/")[0] == rank)
            out.gone[str(tdir / rank)] = (tdir / rank, now)
        fresh = sorted(names - (before.names if before else frozenset()), key=_by_rank)
        out.new.extend(r for r in (file_ref(listed[rel], coverage) for rel in fresh) if r is not None)

    def _lost(self, rdir: StorePath, now: frozenset[str], out: Scan) -> None:
        """Record in ``out.gone`` that ``rdir`` holds ``now`` if a data file it held at the last commit is not in it."""
        before = self._seen.get(str(rdir))
        if before is not None and any(_is_data(n) for n in before.names - now):
            out.gone[str(rdir)] = (rdir, now)


TABLE_FOLDERS = tuple(f"table={t}" for t in layout.TABLES)
RUN_FOLDERS = ("", layout.STATUS_DIR, layout.LEGACY_STATUS_DIR, META_DIR, *TABLE_FOLDERS)
"""Folders of a run (relative to its folder) whose files its listing reads, besides its tables' rank folders."""


@dataclass(frozen=True)
class RunStamp:
    """Inode and modification time of each folder a run's listing reads (:data:`RUN_FOLDERS` and the rank folders
    of its tables), taken at ``taken_ns``; ``settled`` as for :class:`FolderWatch` (module docstring)."""

    folders: tuple[tuple[str, int, int], ...]  # (folder, inode, mtime_ns); (folder, 0, 0): absent
    taken_ns: int
    settled: bool

    @classmethod
    def take(cls, run_dir: StorePath) -> RunStamp | None:
        """The stamp of ``run_dir`` now (lists its table folders for their rank folders); None on an object store
        (no modification times) or when the run folder is gone."""
        if fs.is_object(run_dir):
            return None
        paths = [str(run_dir / rel) if rel else str(run_dir) for rel in RUN_FOLDERS]
        for table in TABLE_FOLDERS:
            try:
                paths += sorted(str(run_dir / table / n) for n in os.listdir(run_dir / table) if _is_rank(n))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except PermissionError:  # a folder this user may not list: no stamp, the run is read each time
                return None
        now = time.time_ns()
        folders = tuple(_stat(p) for p in paths)
        if folders[0][1] == 0:
            return None
        settled = all(
            now - mtime > (SETTLE_COARSE_NS if mtime % 1_000_000_000 == 0 else SETTLE_FINE_NS)
            for _, ino, mtime in folders
            if ino
        )
        return cls(folders, now, settled)

    def unchanged(self) -> bool:
        """Whether the run's folders are as stamped and the stamp can be trusted (settled, younger than
        :data:`TRUST_NS`): one ``stat`` per folder, nothing listed or read."""
        if not self.settled or time.time_ns() - self.taken_ns >= TRUST_NS:
            return False
        return all(_stat(folder) == (folder, ino, mtime) for folder, ino, mtime in self.folders)


def is_plain_file(path: StorePath | str) -> bool:
    """Whether a local ``path`` is a regular file, not a link (always true on an object store): what a store reads, as
    :func:`~entropy_watch.store.fs.listdir` keeps. A FIFO named like a segment would block its reader forever."""
    if fs.is_object(path):
        return True
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:  # gone since it was listed: the read that follows finds it gone (and retries)
        return True


def _stat(path: str) -> tuple[str, int, int]:
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return (path, 0, 0)
    return (path, st.st_ino, st.st_mtime_ns)


def _is_rank(name: str) -> bool:
    return name.startswith("rank=") and name[5:].isdigit()


def _is_visible(name: str) -> bool:
    return not name.startswith(".")


def _by_rank(rel: str) -> tuple[int, str]:
    """Sort key of ``rank=<r>/<file>``: rank as a number, then the name."""
    rank, _, name = rel.partition("/")
    return int(rank[5:]), name


def _is_data(name: str) -> bool:
    """A segment or part name (``rank=<r>/`` prefixed in an object-store table listing)."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".parquet") and base.startswith(("seg-", "part-"))
