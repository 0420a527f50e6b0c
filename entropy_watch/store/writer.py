"""RunWriter: the trainer side of the store. pyarrow only, no DuckDB, no locks shared with readers.

Why no DuckDB file in the writer: DuckDB allows one read-write process *or* many read-only ones on a ``.duckdb``
file, never both (notes/STORE_AND_APP §1.3). A trainer holding one would lock out the app and CLI, and a dashboard
holding a read-only handle would make the *next* training run fail to open it. Immutable Parquet segments need no
lock at all: the writer only ever creates new files, readers only ever read published ones.

Why tmp + ``os.replace`` (see :mod:`entropy_watch.store.atomic`): a SIGKILL at any instant leaves either a complete
segment under its final name or a hidden ``.seg-….parquet.tmp`` that readers never list, so every acknowledged
segment (``write`` returned its path) is readable and no read ever fails on a half-written file. What a crash loses
is only what the caller had not yet handed to :meth:`RunWriter.write`.

Segment names carry the writer session (``<time_ns>-<pid>``) and a per-table counter, so a restarted trainer never
overwrites, and a reader that has seen a name never needs to look at it again. A caller that retries a batch passes
the number it reserved (:meth:`RunWriter.next_seq`) as ``seq=``: the retry then *replaces* the segment if an earlier
attempt did publish it, so a batch is stored once however often it is sent.

Publishing a segment and refreshing the heartbeat are separate: :meth:`RunWriter.write` returns the published path
even when the heartbeat it owed fails afterwards (the failure is kept in ``heartbeat_error`` and raised by the next
explicit :meth:`RunWriter.heartbeat`), so no caller mistakes a published segment for a failed one and sends it again.

Each heartbeat also carries the rank's *summary*: ``last_step`` and, for the canonical metrics, the value at the
highest step logged (``latest``), folded from the segments this session published and from nothing else, and
``covers``: which of them it includes (per table ``[next, open]``: every segment numbered below ``next`` except the
reserved but unpublished numbers ``open``). Listing runs (``entropy-watch ls``) reads these small JSON files instead
of querying every run's segments, and for a rank that never closed folds in the few segments published after its
last heartbeat (:func:`~entropy_watch.store.summary.catch_up`): after a ``kill -9`` between two heartbeats the
listing still matches the rows stored.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from entropy_watch import metrics as M
from entropy_watch.errors import StoreUnwritable
from entropy_watch.store import fs, hive, layout, summary
from entropy_watch.store import meta as run_meta
from entropy_watch.store.atomic import clean_stale_tmp, flock, read_json, write_json_atomic, write_parquet_atomic
from entropy_watch.store.files import READ_LOCK, new_session, seg_name
from entropy_watch.store.schema import SCHEMA_VERSION, SEQ_COL, WRITER_COL, coerce_rows

log = logging.getLogger("entropy_watch")

DEFAULT_HEARTBEAT_S = 5.0
# terminated: SIGTERM (e.g. preemption); interrupted: KeyboardInterrupt (Ctrl-C), stopped on purpose, nothing broken
STATES = ("running", "finished", "failed", "terminated", "interrupted")
SUMMARY_NAMES = frozenset(M.CANONICAL)  # scalars whose latest value the summary keeps (bounded: ~50 names)


def exit_state(exc_type: type[BaseException] | None, exc: BaseException | None = None) -> str:
    """The state a run leaves a ``with`` block in: ``finished``, ``interrupted`` (Ctrl-C) or ``failed``.

    ``sys.exit()`` / ``sys.exit(0)`` (``exc``: a ``SystemExit`` whose code is None or 0) is a clean end, as its exit
    status says: ``finished`` (a loop that stops early on success read ``failed``); another code is ``failed``."""
    if exc_type is None:
        return "finished"
    if issubclass(exc_type, SystemExit) and getattr(exc, "code", 1) in (None, 0):
        return "finished"
    return "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"


class RunWriter:
    """Writes one rank of one run: segments, ``run.json`` and the rank's heartbeat file.

    Thread-safe (one lock per writer). Never two writers on one ``(run, rank)`` at once: each rank owns its folders.

    Args:
        root: store root (see :func:`layout.default_root`).
        run: run name, validated by :func:`layout.validate_run_name`.
        rank: data-parallel rank; its segments go under ``rank=<rank>``.
        fsync: flush files and directories to disk on every publish (power-loss safety; ~8 % slower at 10k rows).
        heartbeat_interval_s: how often :meth:`write` refreshes the heartbeat by itself; readers call a run
            "stalled" when its heartbeat is older than three intervals.
        heartbeat: ``False`` for a writer that adds rows to a run it does not own (stored alerts): it never
            touches the rank's status file.

    Raises:
        StoreUnwritable: the root cannot be created or written.
        InvalidRunName: the run name could escape the store or break a path.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        run: str,
        rank: int = 0,
        fsync: bool = False,
        *,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_S,
        heartbeat: bool = True,
    ) -> None:
        self.run = layout.validate_run_name(run)
        self.beats = heartbeat  # False for side writers (alerts from `entropy-watch alerts --write`): the run's state
        # belongs to the process that trains it, and an analysis must not mark a finished run "running"
        if int(rank) < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        self.root = layout.default_root(root)
        self.rank = int(rank)
        self.fsync = fsync
        self.heartbeat_interval_s = float(heartbeat_interval_s)
        self.session = new_session()
        self.started_at = time.time()
        self._seq: dict[str, int] = {}
        self._lock = threading.Lock()
        self._last_step: int | None = None
        self.earlier_last_step: int | None = None  # the last step this rank's previous session published (a resume)
        # the previous session's summary (last step; name -> (step, value)), carried until a resume replaces it
        self._carried: tuple[int | None, dict[str, tuple[int, float]]] = (None, {})
        self._resumed_at: int | None = None  # the lowest step of a resume event this session published
        self._logged = False  # whether this session published scalars (only then does its resume replace anything)
        self._latest: dict[str, tuple[int, float]] = {}  # canonical scalar name -> (step, value) at its highest step
        self._latest_wall: dict[str, float | None] = {}  # ... and that row's wall_time (None: null), as readers order
        self._open: dict[str, set[int]] = {}  # per table: numbers reserved by next_seq, not yet published
        self._last_beat = 0.0
        self._closed = False
        self._meta: dict[str, Any] = {}  # last run.json written, to restore it if the run folder was deleted
        self._meta_pending: dict[str, Any] = {}  # run.json fields a failed update could not write (retried)
        self._made: set[str] = set()  # tables whose folder this writer created or found (a later absence: deleted)
        self._warned_deleted = False
        self.heartbeat_error: StoreUnwritable | None = None  # the last heartbeat write() owed and could not write
        self._run_dir = layout.run_dir(self.root, self.run)
        self._own_meta: dict[str, Any] | None = None  # object stores: the fields this rank set (store/meta.py)
        self.clock_offset_s = 0.0  # added to this session's times: > 0 when this host's clock is behind the rank's
        # previous session's (a resume on another host), so the rank's times never go back (:meth:`_continue_clock`)
        self._refuse_links()
        try:
            fs.makedirs(layout.status_path(self.root, self.run, self.rank).parent)
            fs.probe(self._run_dir)
            hive.ensure_common_metadata(self.root)  # the columns Spark sees in `spark.read.parquet(ROOT)`
        except OSError as exc:
            raise StoreUnwritable(
                f"cannot write to store {self.root} ({fs.describe_error(exc)}); pass --store or set "
                f"{layout.ENV_STORE} to a writable folder"
            ) from None
        self._clean_tmp()
        self.update_run_meta()
        if self.beats:
            self._continue_summary()
            self.heartbeat(state="running")
        else:  # a side writer's rows follow the rank's clock too: a resume stamped later would hide them as replaced
            self._follow_clock()

    def _refuse_links(self) -> None:
        """Raise :class:`StoreUnwritable` when a folder this writer would write through is a symbolic link: readers
        never follow one (:func:`entropy_watch.store.fs.listdir`), so the rows would land outside the store, unseen."""
        rank_dirs = [layout.table_dir(self.root, self.run, t, self.rank) for t in layout.TABLES]
        folders = [self._run_dir, layout.status_dir(self.root, self.run), *(d.parent for d in rank_dirs), *rank_dirs]
        link = next((d for d in folders if fs.is_link(d)), None)
        if link is not None:
            raise StoreUnwritable(
                f"{link} is a symbolic link, which a store does not follow; move the run's folder into the store "
                "or remove the link"
            )

    def _continue_summary(self) -> None:
        """A restarted rank (a resumed run) starts its summary from its previous session's heartbeat, read before the
        first one of this session replaces it: the run's rows are both sessions', and ``ls`` read "N/A" until the new
        session published, then a last step lower than the rows stored after a shorter restart. What the previous
        session published after its last heartbeat (a flush, then a kill) is folded in as listings fold it
        (:func:`_caught_up`): carried as the heartbeat had it, ``ls`` read step 1 of a run whose rows reached 4 once
        the restarted session logged its first step."""
        earlier = self._earlier_status()
        if earlier is None:
            return
        self._continue_clock(earlier)
        last = earlier.get("last_step")
        carried_last = None
        if isinstance(last, int) and not isinstance(last, bool):
            carried_last = self.earlier_last_step = last
        latest = earlier.get("latest")
        parsed: summary.Latest = {}
        if isinstance(latest, Mapping):
            summary.merge_latest(parsed, latest)  # the on-disk form, read as every listing reads it
        self._carried = (carried_last, {name: (step, value) for name, (value, step) in parsed.items()})

    def _follow_clock(self) -> None:
        """A side writer (``heartbeat=False``: ``alerts --write``) stamps its rows no earlier than the rank's last time
        (:meth:`_continue_clock`, quietly): after a resume stamped ahead of this host's clock (its previous session ran
        on a host ahead), alerts written at real time predated the ``resume`` event and every reader left them out as
        raised on the replaced trajectory."""
        earlier = self._earlier_status()
        if earlier is not None:
            self._continue_clock(earlier, quiet=True)

    def _earlier_status(self) -> dict[str, Any] | None:
        """This rank's heartbeat as the previous session left it, with what it published after writing it folded in
        (:func:`_caught_up`); None when it cannot be read (only a head start: this session then starts afresh). In a
        run an older version wrote, that heartbeat is in its ``status/`` folder (:func:`.meta.rank_status`)."""
        try:
            earlier = run_meta.rank_status(self.root, self.run, self.rank) or {}
        except Exception:  # noqa: BLE001 - an unreadable heartbeat starts from nothing
            return None
        _caught_up(self.root, self.run, self.rank, earlier)
        return earlier

    def _continue_clock(self, earlier: Mapping[str, Any], *, quiet: bool = False) -> None:
        """Keep the rank's time monotone across sessions whatever the hosts' clocks say.

        Readers order a step logged twice by ``wall_time``, then by writer session (``reads.LATEST_FIRST``), and a
        ``resume`` replaces the sessions whose last row predates its ``wall_time`` (``reads.replaced_sql``): both
        assume that a later session has later times. A session resumed on a host whose clock is behind the previous
        session's (by more than the restart took) broke both on every reader: the replaced trajectory won every step
        logged again, and a resume replaced nothing. So this session's session id and times (rows' ``wall_time``,
        heartbeats) are shifted by :attr:`clock_offset_s`, just past the last time the previous session stamped:
        its last heartbeat, or a row it published after that heartbeat (``earlier`` is caught up:
        ``summary.LAST_WALL``)."""
        session = earlier.get("session")
        if not isinstance(session, str):
            return
        stamps = (earlier.get(key) for key in ("updated_at", summary.LAST_WALL))
        floor = max((float(t) for t in stamps if isinstance(t, int | float) and math.isfinite(t)), default=0.0)
        behind = floor - time.time()
        if behind >= 0:
            self.clock_offset_s = behind + 1e-3
            self.started_at += self.clock_offset_s
            (log.debug if quiet else log.warning)(
                "entropy_watch: this host's clock is %.3f s behind the previous session of run %r rank %d; this "
                "session's times are stamped %.3f s later so that its rows replace the earlier session's",
                behind,
                self.run,
                self.rank,
                self.clock_offset_s,
            )
        try:
            earlier_ns = int(session.split("-", 1)[0])
        except ValueError:
            return
        if self.session.split("-", 1)[0] <= session.split("-", 1)[0]:  # 19-digit ns: string order is time order
            self.session = new_session(at_least_ns=max(earlier_ns + 1, time.time_ns() + int(self.clock_offset_s * 1e9)))

    def _now(self) -> float:
        """This session's time (Unix s): the host's clock plus :attr:`clock_offset_s`."""
        return time.time() + self.clock_offset_s

    # -- run.json -------------------------------------------------------------------------------------------------
    def update_run_meta(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``run.json`` (created with ``created_at`` and ``schema_version``); returns the result.

        Ranks of one run may call this concurrently: the read-merge-write holds an advisory lock on a hidden
        ``.run.json.lock``, and the file itself is published atomically, so readers never see a partial document.
        On an object store (no locks) each rank publishes only its own fields, which readers merge
        (:mod:`~entropy_watch.store.meta`).

        Raises :class:`StoreUnwritable` when the file cannot be written (full, read-only or deleted store); the
        fields are then kept and written with the next segment this writer publishes, so a run whose disk filled up
        when it recorded its histogram bins (``hist_edges``, once per run) still has them once space returns.
        """
        if fs.is_object(self.root):
            return self._update_rank_meta(fields)
        path = layout.run_json_path(self.root, self.run)
        with self._lock:
            fields = {**self._meta_pending, **fields}
            try:
                with flock(self._run_dir / ".run.json.lock"):  # no lock without fcntl (Windows)
                    meta = run_meta.local_document(self.root, self.run)
                    meta.setdefault("name", self.run)
                    meta.setdefault("created_at", self.started_at)
                    meta.setdefault("schema_version", SCHEMA_VERSION)
                    meta.update(fields)
                    write_json_atomic(path, meta, fsync=self.fsync)
            except OSError as exc:
                self._meta_pending = fields
                raise StoreUnwritable(f"cannot write {path} ({fs.describe_error(exc)})") from None
            self._meta_pending = {}
            self._meta = meta
        return meta

    def _update_rank_meta(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Object stores: merge ``fields`` into this rank's own meta object; write it only when it adds something."""
        with self._lock:
            merged = run_meta.load(self.root, self.run)
            if self._own_meta is None:  # a restarted rank keeps what its previous session set
                self._own_meta = read_json(run_meta.rank_meta_path(self.root, self.run, self.rank)) or {}
            own = self._own_meta
            if fields or not merged:  # a side writer opening an existing run adds nothing
                own.setdefault("name", self.run)
                own.setdefault("created_at", self.started_at)
                own.setdefault("schema_version", SCHEMA_VERSION)
                own.update(fields)
                run_meta.save_rank(self.root, self.run, self.rank, own)
            self._meta = {**merged, **own}
            return dict(self._meta)

    # -- data -----------------------------------------------------------------------------------------------------
    def next_seq(self, table: str) -> int:
        """Reserve the next segment number of ``table`` (for a batch that may have to be retried)."""
        layout.validate_table(table)
        with self._lock:
            seq = self._seq.get(table, 0)
            self._seq[table] = seq + 1
            self._open.setdefault(table, set()).add(seq)  # not in the summary until published (``covers``)
            return seq

    def write(self, table: str, rows: pa.Table | Mapping[str, Any], *, seq: int | None = None) -> Path | None:
        """Publish ``rows`` as ONE segment of ``table``; returns its path once it is visible, None if empty.

        ``rows`` is a ``pa.Table`` or ``{column: list}``; core columns are cast to their declared types (see
        :func:`entropy_watch.store.schema.coerce_rows`), extra columns are kept. Each row gets ``_writer`` (this
        session) and ``_seq`` (this segment's number in this session and table). ``seq``: a number from
        :meth:`next_seq`; writing the same ``seq`` again replaces that segment (idempotent retries). Without it a new
        number is taken. Raises :class:`StoreUnwritable` only when the segment was *not* published.
        """
        layout.validate_table(table)
        tbl = coerce_rows(table, rows)
        if tbl.num_rows == 0:
            return None
        with self._lock:
            if self._closed:
                raise RuntimeError(f"RunWriter for run {self.run!r} rank {self.rank} is closed")
            if seq is None:
                seq = self._seq.get(table, 0)
            if self.clock_offset_s and "wall_time" in tbl.column_names:  # the rank's times never go back
                at = tbl.column_names.index("wall_time")
                tbl = tbl.set_column(at, "wall_time", pc.add(tbl.column(at), self.clock_offset_s))
            tbl = tbl.append_column(WRITER_COL, pa.array([self.session] * tbl.num_rows, type=pa.string()))
            tbl = tbl.append_column(SEQ_COL, pa.array(np.full(tbl.num_rows, seq, dtype=np.int64)))
            directory = layout.table_dir(self.root, self.run, table, self.rank)
            path = directory / seg_name(self.session, seq)
            try:
                if not fs.is_object(directory) and not directory.is_dir():
                    self._recreate(directory, table)
                self._made.add(table)
                write_parquet_atomic(path, tbl, fsync=self.fsync)
            except OSError as exc:
                raise StoreUnwritable(f"cannot write segment {path} ({fs.describe_error(exc)})") from None
            self._seq[table] = max(self._seq.get(table, 0), seq + 1)
            self._open.get(table, set()).discard(seq)
            if "step" in tbl.column_names and tbl.column("step").null_count < tbl.num_rows:
                top = pc.max(tbl.column("step")).as_py()
                if top is not None and (self._last_step is None or top > self._last_step):
                    self._last_step = int(top)
            if table == "scalars":
                self._logged = True
                self._track_latest(tbl)
            elif table == "events":
                self._resumed(tbl)
            due = self.beats and self._now() - self._last_beat >= self.heartbeat_interval_s
            meta_due = bool(self._meta_pending)
        if meta_due:  # run.json fields an earlier update could not write: the store takes writes again
            try:
                self.update_run_meta()
            except StoreUnwritable:
                pass  # kept for the next segment; the segment itself IS published
        if due:
            try:
                self.heartbeat()
                self.heartbeat_error = None
            except StoreUnwritable as exc:  # the segment IS published: never report it as a failed write
                self.heartbeat_error = exc
        return path

    def summary(self) -> dict[str, Any]:
        """``{"last_step": int | None, "latest": {name: [step, value]}, "covers": {table: [next, open]}}`` over what
        this writer published; ``covers`` names the segments folded in (module docstring)."""
        with self._lock:
            return self._summary()

    def _summary(self) -> dict[str, Any]:
        """:meth:`summary` with ``_lock`` held: the fields and the segments they cover are taken together."""
        carried_last, carried_latest = self._carried
        since = self._resumed_at
        if since is not None and self._logged:  # the rule the readers apply (reads.replaced_sql), to what was carried
            carried_last = None if carried_last is None else min(carried_last, since - 1)
            carried_latest = {name: (at, value) for name, (at, value) in carried_latest.items() if at < since}
        last = max((x for x in (carried_last, self._last_step) if x is not None), default=None)
        latest = dict(carried_latest)
        latest.update({k: own for k, own in self._latest.items() if k not in latest or own[0] >= latest[k][0]})
        return {
            "last_step": last,
            "latest": {k: [s, v] for k, (s, v) in sorted(latest.items())},
            "covers": {t: [n, sorted(self._open.get(t, ()))] for t, n in sorted(self._seq.items())},
        }

    def _track_latest(self, tbl: pa.Table) -> None:
        """Update ``_latest`` from a scalars segment: per canonical name, the value at its highest step, of that
        step's rows the one every reader keeps (:data:`~.reads.LATEST_FIRST` within a rank: the latest
        ``wall_time``, nulls last, then the later segment, then the later row). Keeping the step's last row in the
        file instead, ``ls`` listed 0.9 of ``value [0.5, 0.9], wall_time [12, 11]`` where ``show`` read 0.5."""
        names = tbl.column("name")
        present = sorted(SUMMARY_NAMES.intersection(pc.unique(names).to_pylist()))
        if not present:
            return
        sub = tbl.filter(pc.fill_null(pc.is_in(names, value_set=pa.array(present, pa.string())), False))
        steps = sub.column("step").to_numpy(zero_copy_only=False)
        values = sub.column("value").to_numpy(zero_copy_only=False)
        walls = (
            sub.column("wall_time").to_numpy(zero_copy_only=False).astype(np.float64)  # nulls read as NaN
            if "wall_time" in sub.column_names
            else np.full(len(steps), np.nan)
        )
        has_wall = (
            pc.is_valid(sub.column("wall_time")).to_numpy(zero_copy_only=False)
            if "wall_time" in sub.column_names
            else np.zeros(len(steps), dtype=bool)
        )
        codes = pc.dictionary_encode(sub.column("name")).combine_chunks()
        idx = codes.indices.to_numpy(zero_copy_only=False)
        for k, name in enumerate(codes.dictionary.to_pylist()):
            pos = np.flatnonzero(idx == k)
            top = pos[steps[pos] == steps[pos].max()]
            # DuckDB orders NaN above every number (DESC: first), NULL last: the key (has a time, time, row)
            j = max(top, key=lambda i: (bool(has_wall[i]), _wall_key(walls[i]), int(i)))
            step, value, wall = int(steps[j]), float(values[j]), (_wall_key(walls[j]) if has_wall[j] else None)
            old = self._latest.get(name)
            if old is None or step > old[0] or (step == old[0] and _later(wall, self._latest_wall.get(name))):
                self._latest[name] = (step, value)
                self._latest_wall[name] = wall

    def _resumed(self, events: pa.Table) -> None:
        """Note a ``resume`` event's step s: once this session has published scalars too, what the summary carried
        from the previous session at step s or later is a trajectory the resume replaced, which the readers leave out
        (:func:`~entropy_watch.store.reads.replaced_sql`), so ``ls`` no longer lists its last step and entropy
        (:meth:`_summary`). The lock is held."""
        kinds = events.column("kind").to_pylist()
        steps = [
            s for s, k in zip(events.column("step").to_pylist(), kinds, strict=True) if k == "resume" and s is not None
        ]
        if steps:
            self._resumed_at = min(steps) if self._resumed_at is None else min(self._resumed_at, *steps)

    def _recreate(self, directory: Path, table: str) -> None:
        """Create a table folder (and restore ``run.json`` if the run folder itself was deleted under us). A folder
        this writer had written to and finds gone was deleted mid-run: said once (what it held is gone; later rows
        are stored), as the deletion is not otherwise visible to the user until a chart starts late."""
        if table in self._made and not self._warned_deleted:
            self._warned_deleted = True
            log.warning(
                "entropy_watch: %s was deleted while run %r was writing to it; it is created again and later rows "
                "are stored there, but the rows stored before are gone (restore them from a backup if you have one)",
                directory,
                self.run,
            )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / READ_LOCK).touch()  # exists before the first segment (see query.read_locked)
        meta_path = layout.run_json_path(self.root, self.run)
        if self._meta and not meta_path.exists():
            write_json_atomic(meta_path, self._meta, fsync=self.fsync)

    # -- heartbeat ------------------------------------------------------------------------------------------------
    def heartbeat(self, step: int | None = None, state: str = "running", **extra: Any) -> None:
        """Publish ``status/rank=<r>.json``: the :meth:`summary` (last_step, latest, covers), pid, host, state,
        updated_at (Unix s), interval_s, session. ``step``: a step to count as reached although no row of it was
        published (the summary then claims it without data; the recorder never passes one)."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        if not self.beats:
            return
        with self._lock:
            if step is not None:
                self._last_step = int(step) if self._last_step is None else max(self._last_step, int(step))
            now = self._now()
            status = {
                "rank": self.rank,
                **self._summary(),
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "state": state,
                "updated_at": now,
                "started_at": self.started_at,
                "interval_s": self.heartbeat_interval_s,
                "session": self.session,
                **extra,
            }
            path = layout.status_path(self.root, self.run, self.rank)
            try:
                if not fs.is_object(path) and not path.parent.is_dir():  # the store was deleted mid-run
                    path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(path, status, fsync=self.fsync)
            except OSError as exc:
                raise StoreUnwritable(
                    f"cannot write heartbeat for run {self.run!r} ({fs.describe_error(exc)})"
                ) from None
            self._last_beat = now

    def close(self, state: str = "finished") -> None:
        """Write the final heartbeat (a state of :data:`STATES` other than ``running``); later writes raise.
        Idempotent."""
        if self._closed:
            return
        self.heartbeat(state=state)
        with self._lock:
            self._closed = True

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.close(exit_state(exc_type, exc))

    # -- housekeeping ---------------------------------------------------------------------------------------------
    def _clean_tmp(self) -> None:
        """Remove temporaries of dead writers: by pid in this rank's own folders, by age (1 h) elsewhere. In a rank
        folder only segment temporaries are this rank's: a ``.part-`` one belongs to a compactor, perhaps running on
        another host (its pid means nothing here), which removes its own dead ones under its lock; deleting it made
        that compaction fail at its rename."""
        clean_stale_tmp(self._run_dir, by_pid=False)
        clean_stale_tmp(layout.status_dir(self.root, self.run), by_pid=False)
        for table in layout.TABLES:
            clean_stale_tmp(layout.table_dir(self.root, self.run, table, self.rank), by_pid=True, prefix=".seg-")


def _caught_up(root: fs.StorePath, run: str, rank: int, status: dict[str, Any]) -> None:
    """Fold into ``status`` (a rank's heartbeat, in place) what its session published after writing it: the catch-up
    every listing does for a rank that never closed (:func:`.summary.catch_up`), one small query when anything is
    uncovered, none otherwise. Only informs: a failure leaves ``status`` as it was."""
    pending = summary.pending(run, rank, status)
    if pending is None:
        return
    from entropy_watch.store import query
    from entropy_watch.store.files import CoverageCache

    try:
        con = query.read_connection()  # bounded memory, spilling to $TMPDIR: this runs inside the trainer
        try:
            tails = summary.catch_up(con, threading.Lock(), root, [pending], CoverageCache(), SUMMARY_NAMES)
        finally:
            con.close()
    except Exception:  # noqa: BLE001 - a head start only
        return
    if (tail := tails.get((run, rank))) is not None:
        summary.fold_tail(status, tail)


def _wall_key(wall: float) -> float:
    """A ``wall_time`` as DuckDB orders it: NaN above every number, +inf included."""
    return math.inf if math.isnan(wall) else float(wall)


def _later(wall: float | None, old: float | None) -> bool:
    """Whether a row of ``wall`` (from a later segment of this writer) wins over one of ``old`` at the same step:
    readers keep the latest ``wall_time`` (NULL last; NaN first: :func:`_wall_key`), the later segment on ties."""
    if wall is None:
        return old is None
    if old is None:
        return True
    return wall >= old
