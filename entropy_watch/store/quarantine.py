"""Unreadable data files: found when a read fails, then skipped with one warning, and never deleted.

A segment can only be corrupt by outside action: a writer publishes complete files by rename, so a truncated or
overwritten ``seg-*.parquet`` means another program wrote there (issue 11: a ``COPY … TO`` aimed at a segment made
every read of its run fail with "too small to be a Parquet file"), a disk error, or a copy cut short. What a user
expects from a monitor then is the rest of the run, and to be told which file is broken: a read that fails checks
the files it listed (their Parquet footers; small files are read whole), and the unreadable ones are *quarantined*
in this process: listed never again (:func:`is_quarantined`), named once in a warning on the ``entropy_watch``
logger, left on disk for the user to inspect, and never merged or deleted by compaction. The query is then run
again without them. A file replaced or made readable since (new size or change time) is looked at afresh.

Where no listed file is unreadable the original error propagates unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator

import pyarrow.parquet as pq

from entropy_watch.store.fs import StorePath, is_object, refused

log = logging.getLogger("entropy_watch")

REFUSED = "permission denied"
"""How :func:`unreadable` starts the reason for a file this user may not open (not a damaged one)."""
REFUSED_ADVICE = "The file is not damaged: read the store as a user who may read it, or ask its owner to share it."
FULL_READ_BYTES = 64 * 2**20  # files up to this size are read whole when checked (a bad page behind a good footer)

_lock = threading.Lock()
# path -> ((size, ctime_ns locally / mtime_ns on an object store) when quarantined, why)
_bad: dict[str, tuple[tuple[int, int] | None, str]] = {}
_listed = threading.local()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Quarantine files found unreadable in this thread without the warning :func:`add` logs: for a command that names
    them itself, once each and with what it did about them (``compact``), reading :func:`found` after."""
    before = getattr(_listed, "quiet", False)
    _listed.quiet = True
    try:
        yield
    finally:
        _listed.quiet = before


def begin() -> None:
    """Start recording the files listed by this thread (called before each read attempt)."""
    _listed.paths = []


def note_listed(path: StorePath) -> None:
    paths = getattr(_listed, "paths", None)
    if paths is not None:
        paths.append(path)


def is_quarantined(path: StorePath) -> bool:
    """Whether ``path`` was found unreadable (and has not been replaced since)."""
    key = str(path)
    with _lock:
        entry = _bad.get(key)
    if entry is None:
        return False
    if entry[0] is not None and _stamp(path) != entry[0]:
        with _lock:
            _bad.pop(key, None)
        return False
    return True


def found() -> dict[str, str]:
    """Every file quarantined in this process so far: path -> why it is unreadable (a command that must report
    skipped files, like ``alerts`` as a CI gate, compares this before and after its reads)."""
    with _lock:
        return {path: why for path, (_, why) in _bad.items()}


def check_listed() -> list[StorePath]:
    """Check the files this thread listed since :func:`begin`; quarantine and return the unreadable ones."""
    return check(getattr(_listed, "paths", None) or [])


def check(paths: Iterable[StorePath]) -> list[StorePath]:
    """Quarantine (and return) the files among ``paths`` that cannot be read as Parquet."""
    found = []
    for path in dict.fromkeys(paths):
        why = unreadable(path)
        if why is not None:
            add(path, why)
            found.append(path)
    return found


def add(path: StorePath, why: str) -> None:
    """Quarantine ``path``; warn once (per file and process) naming it and what to do."""
    with _lock:
        new = str(path) not in _bad
        _bad[str(path)] = (_stamp(path), why)
    if new and not getattr(_listed, "quiet", False):
        log.warning(
            "entropy_watch: skipping unreadable data file %s (%s); its rows are left out of every read until it "
            "is replaced. %s",
            path,
            why,
            REFUSED_ADVICE
            if why.startswith(REFUSED)
            else "Move it out of the store to keep it for inspection, or delete it.",
        )


def unreadable(path: StorePath) -> str | None:
    """Why ``path`` is not a readable Parquet file, or None. A file that vanished is not unreadable (None); an object
    store that refuses to serve it (access denied, network, throttling: :func:`~.fs.refused`) says nothing about the
    file, and its error is raised: quarantining it would leave good rows out of every read for the process's life."""
    try:
        where, fs = (path.key, path.fs) if is_object(path) else (path, None)
        pq.read_metadata(where, filesystem=fs)
        if _size(path) <= FULL_READ_BYTES:
            pq.ParquetFile(where, filesystem=fs).read()
    except FileNotFoundError:
        return None
    except PermissionError:  # a sound file of another user's: never "delete it"
        return f"{REFUSED}: this user may not read it"
    except Exception as exc:  # noqa: BLE001 - whatever pyarrow raises for a broken file
        if is_object(path) and refused(exc):
            raise
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}" if str(exc) else type(exc).__name__
    return None


def _size(path: StorePath) -> int:
    stamp = _stamp(path)
    return stamp[0] if stamp is not None else 0


def _stamp(path: StorePath) -> tuple[int, int] | None:
    try:
        if is_object(path):
            info = path.fs.get_file_info(path.key)
            return (int(info.size or 0), int(info.mtime_ns or 0))
        st = path.stat()  # type: ignore[union-attr]
        return (st.st_size, st.st_ctime_ns)  # ctime: a file made readable again (chmod) is looked at afresh too
    except (OSError, AttributeError):
        return None
