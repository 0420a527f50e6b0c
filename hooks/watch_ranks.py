"""Checks a ``Watch`` makes when it is created (``hooks.watch``): which rank this process is when
``torch.distributed`` is not initialised, whether the job's ranks agree on reducing, and whether another session is
writing the same run's rank now. Each one only informs (a warning): none keeps a training from starting. And the
open writing ``Watch`` of each run and rank in this process, closed when a newer one opens them (a notebook cell run
again)."""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
import weakref
from collections.abc import Mapping
from typing import Any

from entropy_watch.store import meta as run_meta
from entropy_watch.store.atomic import pid_alive
from entropy_watch.store.reader import rank_state


def launcher_rank() -> tuple[int, int]:
    """``(rank, world size)`` from the launcher's ``RANK`` and ``WORLD_SIZE`` (torchrun, accelerate, DeepSpeed set
    them), read when ``torch.distributed`` is not initialised; ``(0, 1)`` without them or when they make no sense."""
    try:
        rank, world = int(os.environ.get("RANK", "")), int(os.environ.get("WORLD_SIZE", ""))
    except ValueError:
        return 0, 1
    return (rank, world) if 0 <= rank < world else (0, 1)


def warn_not_initialised(run: str, rank: int, world: int) -> None:
    """A ``Watch`` that would reduce, made on one rank of a launched job while ``torch.distributed`` is not
    initialised: there is no group to reduce over, so each rank writes its own ``rank=`` folder (not rank 0's)."""
    logging.getLogger("entropy_watch").warning(
        "entropy_watch: Watch %r was created while torch.distributed is not initialised (before init_process_group, "
        "or after destroy_process_group), but the launcher says this process is rank %d of %d (RANK, WORLD_SIZE): "
        "its statistics are not all-reduced across the ranks; each rank writes its own rank= folder of the run "
        "(this one rank=%d). To reduce them and write from rank 0 only, create the Watch after init_process_group",
        run,
        rank,
        world,
        rank,
    )


_watches_made: dict[str, int] = {}  # Watches of each run this process made: the ranks' n-th Watch of a run meet


def check_same_mode(run: str, rank: int, reduce: bool) -> None:
    """Warn when ranks of this job disagree on reducing (``reduce``, ``process_group=False``): the ranks that reduce
    would wait forever in a collective the others never join. Two operations on the job's rendezvous store (the one
    ``init_process_group`` made), no collective: each rank counts itself under its mode, then reads the other
    mode's count; of two ranks that disagree, the later one always sees the earlier one. Never raises."""
    n = _watches_made[run] = _watches_made.get(run, 0) + 1
    mine, other = ("reduce", "local") if reduce else ("local", "reduce")
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        store = _get_default_store()
        key = f"entropy_watch/mode/{run}/{n}/"
        store.add(key + mine, 1)
        others = int(store.add(key + other, 0))
    except Exception as exc:  # noqa: BLE001 - only informs; a torch without it, a store without add
        logging.getLogger("entropy_watch").debug("entropy_watch: comparing the ranks' reduce settings: %s", exc)
        return
    if not others:
        return
    if reduce:
        what = (
            f"this rank ({rank}) all-reduces its statistics (reduce=True), while {others} rank(s) of this job "
            "record theirs locally (process_group=False or reduce=False): this rank's log_tokens will wait forever "
            "in a collective those ranks never join"
        )
    else:
        what = (
            f"this rank ({rank}) records its statistics locally (process_group=False or reduce=False), while "
            f"{others} rank(s) of this job all-reduce theirs (reduce=True): their log_tokens will wait forever in a "
            "collective this rank never joins"
        )
    logging.getLogger("entropy_watch").warning(
        "entropy_watch: run %r: %s. Pass the same reduce and process_group on every rank (reduce=False or "
        "process_group=False on all of them when ranks log unevenly)",
        run,
        what,
    )


def live_writer(root: Any, run: str, rank: int) -> dict[str, Any] | None:
    """This rank's heartbeat when the session that wrote it is still at work (:func:`_is_live`), read before this
    session's first heartbeat replaces it; None otherwise, or when it cannot be read (this only informs)."""
    try:
        status = dict(run_meta.statuses(root, run)).get(rank)
        return dict(status) if status is not None and _is_live(status) else None
    except Exception as exc:  # noqa: BLE001 - never keeps a training from starting
        logging.getLogger("entropy_watch").debug("entropy_watch: reading run %r's earlier session: %s", run, exc)
        return None


def _is_live(status: Mapping[str, Any]) -> bool:
    """Whether a rank's heartbeat is a writer still at work: ``running``, refreshed within the interval after which
    readers call it stalled, and (on this host) its process alive. A session killed a moment ago is not live."""
    if rank_state(status, time.time()) != "running":  # as `ls` reads it: not stalled
        return False
    pid = status.get("pid")
    same_host = os.name == "posix" and status.get("host") == socket.gethostname()
    return not (same_host and isinstance(pid, int)) or pid_alive(pid)


def warn_live_writer(run: str, rank: int, status: Mapping[str, Any]) -> None:
    """Another session is writing this run's rank now: both trainings' steps would merge into one run, a step both
    log keeping one value. Ranks of one job never meet here: each writes its own rank, or rank 0 writes for all."""
    ago = max(0.0, time.time() - float(status.get("updated_at") or 0.0))
    logging.getLogger("entropy_watch").warning(
        "entropy_watch: run %r already has a live writer on rank %d (pid %s on %s, heartbeat %.0f s ago): this "
        "session's steps merge with that training's, and at a step both log one value hides the other. Give this "
        "training another run name; the ranks of one torch.distributed job share a run by rank (reduce=True: rank 0 "
        "writes the reduced statistics; reduce=False: each rank its own)",
        run,
        rank,
        status.get("pid", "?"),
        status.get("host", "?"),
        ago,
    )


OPEN_WATCHES: dict[tuple[str, str, int], weakref.ref[Any]] = {}
"""The open writing ``Watch`` of each (store root, run, rank) in this process (``hooks.watch``)."""


def writer_key(root: Any, run: str, rank: int) -> tuple[str, str, int]:
    return (os.path.realpath(root) if isinstance(root, os.PathLike) else str(root), run, rank)


def open_watch(key: tuple[str, str, int] | None) -> Any:
    """The open ``Watch`` writing ``key`` (store root, run, rank) in this process, or None."""
    w = OPEN_WATCHES.get(key, lambda: None)() if key is not None else None
    return None if w is None or w.closed else w


def close_open_watch(key: tuple[str, str, int]) -> None:
    """A ``Watch`` opening a run and rank that an earlier ``Watch`` of this process still writes (a notebook cell run
    again, a sweep's trial left open by an exception) closes that one first: its rows are published, and it no longer
    beats. Left open, it kept refreshing the rank's status file as its own session ("running", its last step) over
    this one's, so ``ls`` listed the run as running after this one closed, and at exit it wrote the earlier session's
    state last. Its later calls record nothing and say why."""
    old = OPEN_WATCHES.pop(key, lambda: None)()
    if old is None or old.closed:
        return
    logging.getLogger("entropy_watch").warning(
        "entropy_watch: run %r already has a live writer on rank %d (pid %d on %s): an earlier Watch still open in "
        "this process (a notebook cell run again?). It is closed now, its rows published, and this Watch continues "
        "the run; the earlier one records nothing more. Close each Watch when its training ends (a with-block or "
        "close()); two trainings at once need another run name each (the ranks of one torch.distributed job share a "
        "run by rank: reduce=True or reduce=False)",
        key[1],
        key[2],
        os.getpid(),
        platform.node(),
    )
    old._closed_why = " (a newer Watch opened its run in this process)"
    old.close("interrupted")
