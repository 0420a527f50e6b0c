"""Segment and part files: their names, their coverage, and which ones a reader must read.

A *key* is ``(writer, seq)``: one segment published by one writer session. Every row of that segment carries it in
``_writer``/``_seq``. A segment file ``seg-<writer>-<seq>.parquet`` covers exactly its own key (read from the name).
A compacted ``part-<session>-<n>.parquet`` covers all keys of the files merged into it; the set is stored in the
part's Parquet key-value metadata under :data:`COVERAGE_KEY` as ``{"writer": [[lo, hi], ...]}`` (inclusive ranges).

Compaction publishes a part *before* deleting what it merged, so at any moment every key is in at least one listed
file, and possibly in several (a part and its segments, or a final part and the parts it merged). Every file holding
a key holds *all* its rows (segments are merged whole), so a reader is correct as long as it reads each key from
exactly one file: :func:`select_files` does that, preferring the files that cover most.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from entropy_watch.store import quarantine
from entropy_watch.store.fs import StorePath, is_object, listdir, refused, walk_files

READ_LOCK = ".read.lock"  # readers hold it shared while listing + reading; compaction exclusive while deleting
COVERAGE_KEY = b"entropy_watch.coverage"
FINAL_KEY = b"entropy_watch.final"

SEG_RE = re.compile(r"^seg-(\d+-\d+)-(\d+)\.parquet$")
PART_RE = re.compile(r"^part-(\d+-\d+)-(\d+)\.parquet$")

Key = tuple[str, int]

_session_lock = threading.Lock()
_last_session_ns = 0
_part_counter = itertools.count()


def new_session(at_least_ns: int = 0) -> str:
    """A writer-session id ``"<time_ns>-<pid>"``, strictly increasing within this process (unique across restarts).

    ``time_ns`` has 19 digits until the year 2286, so string order is time order (readers use it as "latest").
    ``at_least_ns``: a floor for the time (a resumed rank's session must follow its previous one, whatever the clock).
    """
    global _last_session_ns
    with _session_lock:
        now = max(time.time_ns(), _last_session_ns + 1, int(at_least_ns))
        _last_session_ns = now
    return f"{now}-{os.getpid()}"


def seg_name(session: str, seq: int) -> str:
    return f"seg-{session}-{seq:06d}.parquet"


def part_name(session: str) -> str:
    return f"part-{session}-{next(_part_counter):06d}.parquet"


def encode_coverage(keys: set[Key] | frozenset[Key]) -> str:
    """Keys as JSON ``{"writer": [[lo, hi], ...]}`` with inclusive, merged ranges."""
    by_writer: dict[str, list[int]] = {}
    for writer, seq in keys:
        by_writer.setdefault(writer, []).append(seq)
    out: dict[str, list[list[int]]] = {}
    for writer, seqs in sorted(by_writer.items()):
        seqs.sort()
        ranges: list[list[int]] = []
        for s in seqs:
            if ranges and s == ranges[-1][1] + 1:
                ranges[-1][1] = s
            elif not ranges or s > ranges[-1][1]:
                ranges.append([s, s])
        out[writer] = ranges
    return json.dumps(out, separators=(",", ":"))


def decode_coverage(text: str | bytes) -> frozenset[Key]:
    data = json.loads(text)
    return frozenset((w, s) for w, ranges in data.items() for lo, hi in ranges for s in range(int(lo), int(hi) + 1))


@dataclass(frozen=True)
class FileRef:
    """One published data file. ``keys`` is what it covers; ``kind`` is ``"seg"`` or ``"part"``."""

    path: StorePath
    kind: str
    keys: frozenset[Key] = field(compare=False)


@dataclass
class Selection:
    """Files to read: ``whole`` in full, ``partial`` restricted to the listed keys (only after overlapping parts)."""

    whole: list[FileRef] = field(default_factory=list)
    partial: list[tuple[FileRef, frozenset[Key]]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.whole and not self.partial


class CoverageCache:
    """Coverage of part files by path. Part names are unique and parts immutable, so entries never go stale."""

    def __init__(self) -> None:
        self._cache: dict[str, frozenset[Key]] = {}
        self._lock = threading.Lock()

    def get(self, path: StorePath) -> frozenset[Key]:
        """Read (once) the coverage of a part; raises ``FileNotFoundError`` if it vanished (caller retries)."""
        k = str(path)
        with self._lock:
            hit = self._cache.get(k)
        if hit is not None:
            return hit
        if is_object(path):
            schema = pq.read_schema(path.key, filesystem=path.fs)
        else:
            schema = pq.read_schema(path)
        meta = schema.metadata or {}
        raw = meta.get(COVERAGE_KEY)
        keys = decode_coverage(raw) if raw else frozenset()
        with self._lock:
            self._cache[k] = keys
        return keys


def list_data_files(rank_dir: StorePath, coverage: CoverageCache) -> list[FileRef]:
    """Published segments and parts in one ``rank=<r>`` folder (hidden temporaries are never listed)."""
    try:
        entries = sorted((e for e in listdir(rank_dir) if not e.name.startswith(".")), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    return [ref for e in entries if (ref := file_ref(e.path, coverage)) is not None]


def file_ref(path: StorePath, coverage: CoverageCache) -> FileRef | None:
    """The :class:`FileRef` of a segment or part file, None for any other name."""
    m = SEG_RE.match(path.name)
    part = m is None and PART_RE.match(path.name) is not None
    if (m is None and not part) or quarantine.is_quarantined(path):
        return None
    quarantine.note_listed(path)
    if m is not None:
        return FileRef(path, "seg", frozenset({(m.group(1), int(m.group(2)))}))
    try:
        keys = coverage.get(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - a part whose footer cannot be read: skipped, named once
        if is_object(path) and refused(exc):  # the store refused the read (access denied, network): not the file
            raise
        quarantine.add(path, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
        return None
    return FileRef(path, "part", keys)


def list_table_files(table_dir: StorePath, coverage: CoverageCache) -> list[FileRef]:
    """Published segments and parts of every rank under one ``table=<name>`` folder, by rank then name.

    On an object store this is one recursive LIST (paginated) instead of one per rank folder.
    """
    if not is_object(table_dir):
        return [f for rdir in rank_dirs(table_dir) for f in list_data_files(rdir, coverage)]
    found: list[tuple[int, str, StorePath]] = []
    for rel, path in walk_files(table_dir):
        rank, _, name = rel.partition("/")
        if rank.startswith("rank=") and rank[5:].isdigit() and "/" not in name and not name.startswith("."):
            found.append((int(rank[5:]), name, path))
    return [ref for *_, path in sorted(found, key=lambda t: t[:2]) if (ref := file_ref(path, coverage)) is not None]


def rank_dirs(table_dir: StorePath) -> list[StorePath]:
    """The ``rank=<int>`` folders under one ``table=<name>`` folder, by rank."""
    try:
        entries = [e for e in listdir(table_dir) if e.is_dir and e.name.startswith("rank=")]
    except FileNotFoundError:
        return []
    found = []
    for e in entries:
        try:
            found.append((int(e.name[5:]), e.path))
        except ValueError:
            continue
    return [p for _, p in sorted(found, key=lambda t: t[0])]


def select_files(files: list[FileRef], exclude: set[Key] | frozenset[Key] = frozenset()) -> Selection:
    """Choose files so that each key not in ``exclude`` is read from exactly one file *of its folder*.

    A key is one segment of one rank folder: compaction merges within a folder, so only files of one folder can hold
    the same rows. Files of two folders holding the same key are two copies of the segment that are both data (a run
    copied under another name, ``cp -r run=a run=b``): each is read. Choosing across folders kept one of them, and the
    other run listed no rows at all.

    Greedy per folder, largest coverage first (parts before segments, newer names first on ties). With one compactor
    per folder coverages are nested or disjoint, so every file is either read whole or skipped; a file that only partly
    overlaps what is already chosen (two compactors raced on a shared filesystem) is read restricted to its missing
    keys.
    """
    folders: dict[str, list[FileRef]] = {}
    for ref in files:
        folders.setdefault(str(ref.path.parent), []).append(ref)
    sel = Selection()
    for refs in folders.values():
        _select_folder(refs, exclude, sel)
    return sel


def _select_folder(files: list[FileRef], exclude: set[Key] | frozenset[Key], sel: Selection) -> None:
    """:func:`select_files` over the files of one folder, appended to ``sel``."""
    chosen: set[Key] = set()  # not a copy of ``exclude``: a tail reader's grows with everything it ingested
    for ref in sorted(files, key=lambda r: (len(r.keys), r.kind == "part", r.path.name), reverse=True):
        if not ref.keys:
            continue
        missing = frozenset(k for k in ref.keys if k not in chosen and k not in exclude)
        if not missing:
            continue
        if len(missing) == len(ref.keys):
            sel.whole.append(ref)
        else:
            sel.partial.append((ref, frozenset(missing)))
        chosen |= missing
