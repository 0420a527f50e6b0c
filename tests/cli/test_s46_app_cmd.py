"""``entropy-watch app``: an empty ``--host`` is a usage error before anything starts, and the server child does not
outlive a ``kill -9`` of the command (Linux: a parent-death signal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from entropy_watch.cli import app_cmd

from ..waiting import WAIT_S, wait_until


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_a_usage_error_and_starts_nothing(
    ew: Callable[..., object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    started: list[object] = []
    monkeypatch.setattr(app_cmd, "run_child", lambda *a, **k: started.append(a) or 0)
    ran = ew("app", "--store", str(tmp_path), "--host", host)
    assert ran.code == 2, ran  # type: ignore[attr-defined]
    said = " ".join(ran.err.replace("│", " ").split())  # type: ignore[attr-defined]  # the usage box wraps lines
    assert "--host" in said and "every network interface" in said
    assert "http://" not in ran.err and started == []  # type: ignore[attr-defined]


def _gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (its parent, the test's launcher, was killed)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_the_server_child_goes_when_the_command_is_killed_with_sigkill(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The child stands in for Streamlit: it says who it is and serves forever (a real server stops on SIGTERM too).
    child = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    parent = (
        "import sys, os; from entropy_watch.cli.app_cmd import run_child; "
        f"sys.exit(run_child([sys.executable, '-c', {child!r}], dict(os.environ)))"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent])
    pid = 0
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().isdigit(), "the child to start")
        pid = int(pidfile.read_text())
        assert not _gone(pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(WAIT_S)
        wait_until(lambda: _gone(pid), f"the child {pid} to stop after its parent was SIGKILLed")
    finally:
        proc.kill()
        if pid and not _gone(pid):
            os.kill(pid, signal.SIGKILL)
