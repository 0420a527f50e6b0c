"""Two ``entropy-watch rm`` at once. The one that finds the run renamed away by the other says RunNotFound's one line
(before: a raw ``[Errno 2] ... -> .removing-...``). And one ``rm``'s housekeeping (``clean_leftovers``) deletes only
the hidden folders of ``rm`` runs that are gone: before, it deleted another live ``rm``'s fresh ``.removing-*``
between that one's ``mkdir`` and its rename, and that ``rm`` failed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entropy_watch.store import RunWriter, Store
from entropy_watch.store import remove as rm
from entropy_watch.store.remove import clean_leftovers

from ..cli_run import run_cli


def _run(root: Path, name: str) -> None:
    w = RunWriter(root, name)
    w.write("scalars", {"step": [0, 1], "name": ["entropy/mean"] * 2, "value": [1.0, 0.9]})
    w.close()


def test_the_second_of_two_rm_at_once_says_the_run_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    _run(root, "a")
    real, calls = rm.check_removable, []

    def racing(store: Store, run: str, *, force: bool = False) -> None:
        real(store, run, force=force)
        calls.append(run)
        if len(calls) == 2:  # remove_run's own check passed: the other rm renames the run away now
            rm.remove_run(root, run)

    monkeypatch.setattr(rm, "check_removable", racing)
    ran = run_cli(capsys, "--store", root, "rm", "a", "--yes")
    assert ran.code == 1
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1 and "'a' not found" in lines[0] and "Errno" not in lines[0], ran.err
    assert [r.name for r in Store(root).runs()] == []
    assert not list(root.glob(".removing-*"))


def _leftover(root: Path, name: str) -> Path:
    (root / name / "run=x").mkdir(parents=True)
    return root / name


def test_only_leftovers_whose_rm_is_gone_are_cleaned(tmp_path: Path) -> None:
    host, now = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32], time.time_ns()  # as rm names them
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # exited: not alive (unless reused within the test, which is vanishingly rare)
    hour_ago = now - int(2 * 3600 * 1e9)
    live = _leftover(tmp_path, f".removing-{host}-{os.getppid()}-{now}")  # a live rm's, this host
    other_host = _leftover(tmp_path, f".removing-{host}x-{dead_pid}-{now}")  # another host's: its pid means nothing
    old_live = _leftover(tmp_path, f".removing-{host}-{os.getppid()}-{hour_ago}")
    gone = _leftover(tmp_path, f".removing-{host}-{dead_pid}-{now}")
    earlier_fresh = _leftover(tmp_path, f".removing-{dead_pid}-{now}")  # an earlier version's name: no host
    earlier_old = _leftover(tmp_path, f".removing-{dead_pid}-{hour_ago}")
    stray = _leftover(tmp_path, ".removing-notours")
    mine = _leftover(tmp_path, f".removing-{host}-{os.getpid()}-{now}")  # an rm of this process stopped mid-way
    assert clean_leftovers(tmp_path) == 4
    assert live.exists() and other_host.exists() and earlier_fresh.exists() and stray.exists()
    assert not old_live.exists() and not gone.exists() and not earlier_old.exists() and not mine.exists()


CHILD = """
import sys, time
from pathlib import Path
from entropy_watch.store import remove
root, flag = Path(sys.argv[1]), Path(sys.argv[2])
real = remove._asides
def window(root_path, run):  # after the hidden folder's mkdir, before the rename
    flag.write_text("in")
    while flag.read_text() != "go":
        time.sleep(0.01)
    return real(root_path, run)
remove._asides = window
remove.remove_run(root, "a")
"""


def test_a_live_rms_hidden_folder_is_left_to_it(tmp_path: Path) -> None:
    root, flag = tmp_path / "store", tmp_path / "flag"
    _run(root, "a")
    flag.write_text("")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(flag)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while flag.read_text() != "in" and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    assert flag.read_text() == "in"
    assert clean_leftovers(root) == 0  # another rm's housekeeping meanwhile (before: deleted the child's folder)
    flag.write_text("go")
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert [r.name for r in Store(root).runs()] == [] and not list(root.glob(".removing-*"))
