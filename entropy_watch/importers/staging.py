"""Hidden folders of an import in progress, and their removal after a crash (issue 11: a killed ``import`` left
``.staging-*`` folders of up to 5 MB that nothing removed).

An import writes each run under ``ROOT/.staging-<host>-<pid>-<time_ns>/`` and, with ``--replace``, moves the old
run aside to ``ROOT/.replaced-<run>-<host>-<pid>-<time_ns>`` until the new one is in place. Store readers ignore
hidden folders. :func:`clean_stale` runs at the start of every import and removes the folders of imports that can
no longer finish, with the rule the store uses for temporary files (:mod:`entropy_watch.store.atomic`):

* its process is gone: same host (the name says which) and the pid is not alive; or
* it is older than :data:`~entropy_watch.store.atomic.STALE_TMP_AGE_S` (one hour), whatever host wrote it.

A live import's folders, on this host or another one sharing the store, are never touched. A stale
``.replaced-<run>-…`` folder whose run is missing (the import died between moving the old run aside and renaming
the new one in) is moved back to ``run=<run>``, not deleted: it is the user's only copy.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

from entropy_watch.store.atomic import STALE_TMP_AGE_S, pid_alive

_OWNER = r"(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-(?P<ns>\d+)"
_STAGING = re.compile(rf"^\.staging-{_OWNER}$")
_REPLACED = re.compile(rf"^\.replaced-(?P<run>.+)-{_OWNER}$")


def host_id() -> str:
    """This machine's name, letters and digits only (at most 32), as it appears in staging folder names."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]


def owner() -> str:
    return f"{host_id()}-{os.getpid()}-{time.time_ns()}"


def staging_dir(root: Path) -> Path:
    """A new, unique staging folder name under ``root`` (not created)."""
    return root / f".staging-{owner()}"


def aside_dir(root: Path, run: str) -> Path:
    """Where ``run=<run>`` is moved while its replacement is renamed in."""
    return root / f".replaced-{run}-{owner()}"


def clean_stale(root: Path, *, max_age_s: float = STALE_TMP_AGE_S) -> int:
    """Remove (or restore, see the module docstring) the hidden folders of dead imports; returns how many."""
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith((".staging-", ".replaced-"))]
    except OSError:
        return 0
    me, now, done = host_id(), time.time_ns(), 0
    for entry in entries:
        m = _STAGING.match(entry.name) or _REPLACED.match(entry.name)
        if m is None or not entry.is_dir(follow_symlinks=False):
            continue
        dead = m["host"] == me and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"]))
        old = (now - int(m["ns"])) / 1e9 > max_age_s
        if not (dead or old):
            continue
        run = m.groupdict().get("run")
        target = root / f"run={run}" if run else None
        try:
            if target is not None and not target.exists():
                os.rename(entry.path, target)
            else:
                shutil.rmtree(entry.path)
            done += 1
        except OSError:
            continue
    return done
