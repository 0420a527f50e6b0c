"""Trials with real processes (slow): ``kill -9`` a recording loop at random moments under a polling reader, and
delete its store mid-run. What a kill may lose is bounded (README, "The store"): the rows of the last ``flush_secs``
plus the time one publish takes; nothing published is ever unreadable, and no row is ever stored twice.

Each trial prints its numbers (``pytest -s -m slow tests/store/test_kill_trials.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import Store, quarantine
from entropy_watch.store.layout import status_dir

pytestmark = pytest.mark.slow

FLUSH_S = 0.5
# One publish, on a loaded 2-core CI machine (issue 11 measured first publishes of 0.5-2.3 s under load). The loss
# bound asserted is FLUSH_S + PUBLISH_SLACK_S; the trials print what was really lost.
PUBLISH_SLACK_S = 2.5


class Poller(threading.Thread):
    """Reads the store every 20 ms while the trial runs; any read error is a failure."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.stop, self.errors, self.polls = root, threading.Event(), [], 0

    def run(self) -> None:
        store = Store(self.root)
        while not self.stop.is_set():
            try:
                if (self.root / "run=k").is_dir():
                    store.series("k", "x")
                    self.polls += 1
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))
            time.sleep(0.02)


def _logged(lines: list[str]) -> dict[int, float]:
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "L":
            out[int(parts[1])] = float(parts[2])
    return out


@pytest.mark.parametrize("seed", range(8))
def test_kill_9_loses_at_most_the_stated_window(root: Path, spawn: Callable, seed: int) -> None:
    rng = np.random.default_rng(seed)
    kill_after = float(rng.choice([rng.uniform(0.05, 0.6), rng.uniform(0.6, 4.0)]))  # half in the first publish
    quarantine._bad.clear()
    poller = Poller(root)
    poller.start()
    proc = spawn("recorder", root, "k", FLUSH_S, 1_000_000, 0.005)
    lines: list[str] = []
    first = proc.stdout.readline()
    assert first.startswith("L 0 "), proc.stderr.read()
    lines.append(first)
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    time.sleep(kill_after)
    t_kill = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(timeout=10)
    poller.stop.set()
    poller.join(timeout=10)

    logged = _logged(lines)
    steps, values = Store(root).series("k", "x")
    stored = steps.tolist()
    assert len(stored) == len(set(stored)) and values.tolist() == [float(s) for s in stored]
    assert stored == list(range(len(stored))), "published in order: what is stored is a prefix"
    lost = sorted(set(logged) - set(stored))
    worst_age = max((t_kill - logged[s] for s in lost), default=0.0)
    print(
        f"\nkill at {kill_after:.2f} s: logged {len(logged)}, stored {len(stored)}, lost {len(lost)} rows "
        f"(oldest {worst_age:.2f} s old at the kill); reader polls {poller.polls}, errors {len(poller.errors)}"
    )
    assert not poller.errors, poller.errors[:3]
    assert not quarantine._bad, "a published file is unreadable"
    assert worst_age <= FLUSH_S + PUBLISH_SLACK_S, f"lost a row logged {worst_age:.2f} s before the kill"


def test_a_session_killed_in_its_first_seconds_keeps_its_first_rows(root: Path, spawn: Callable) -> None:
    """Issue 11: with the first publish due only after a whole interval, a session killed early lost everything."""
    proc = spawn("recorder", root, "k", 30.0, 1_000_000, 0.005)  # an interval far longer than the trial
    assert proc.stdout.readline().startswith("L 0 ")
    time.sleep(2.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    steps, _ = Store(root).series("k", "x")
    assert steps.size >= 1 and steps[0] == 0, "the session's first rows are published at once"


def test_store_deleted_mid_run_stores_each_later_row_once(root: Path, spawn: Callable) -> None:
    proc = spawn("recorder", root, "k", 0.2, 400, 0.01)
    lines = [proc.stdout.readline()]
    while len(_logged(lines)) < 150:
        lines.append(proc.stdout.readline())
    shutil.rmtree(root, ignore_errors=True)  # the writer may publish meanwhile: a real race
    t_deleted = time.time()
    rest, err = proc.communicate(timeout=120)
    lines += rest.splitlines()
    assert lines[-1].strip() == "DONE", err
    logged = _logged(lines)
    steps, _ = Store(root).series("k", "x")
    raw = Store(root).scalars("k", ["x"]).column("step").to_pylist()
    assert len(raw) == len(set(raw)), "no row stored twice"
    after = [s for s, t in logged.items() if t > t_deleted + 0.05]
    assert set(after) <= set(steps.tolist()), "every row logged after the deletion is stored"
    assert Store(root).run_info("k").state == "finished"
    print(f"\nstore deleted at step ~150: {len(raw)} rows stored after it, {len(after)} logged after it")


def test_an_unwritable_status_folder_never_duplicates_rows(root: Path, spawn: Callable) -> None:
    """The heartbeat cannot be written (its folder is replaced by a file) while segments can: rows once each."""
    proc = spawn("recorder", root, "k", 0.1, 300, 0.01)
    lines = [proc.stdout.readline()]
    while len(_logged(lines)) < 50:
        lines.append(proc.stdout.readline())
    status = status_dir(root, "k")
    while not status.is_file():  # the writer recreates a missing folder: retry until the file wins the race
        shutil.rmtree(status, ignore_errors=True)
        try:
            status.write_text("not a folder")
        except OSError:
            continue
    rest, err = proc.communicate(timeout=120)
    assert rest.splitlines()[-1] == "DONE", err
    raw = Store(root).scalars("k", ["x"]).column("step").to_pylist()
    assert sorted(raw) == list(range(300)), "every row stored exactly once"
    assert "heartbeat" in err and "disk space" not in err
    status.unlink()
