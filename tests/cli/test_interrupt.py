"""Ctrl-C: `watch` (and any command) stops quietly with exit 130, whatever was running when the signal came."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entropy_watch.synthetic import write_to_store


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("delay_s", [0.0, 0.3, 0.9])
def test_watch_ctrl_c_exits_130_quietly(tmp_path: Path, delay_s: float) -> None:
    for i in range(3):
        write_to_store(tmp_path, f"r{i}", kind="collapse_exp", seed=i, n_steps=200)
    proc = subprocess.Popen(
        [sys.executable, "-m", "entropy_watch", "--store", str(tmp_path), "watch", "--interval", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # the first alert: watch is polling (reads and analyses under way)
        assert first, proc.stderr.read()
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "internal error" not in err and "error:" not in err, err


def test_an_error_raised_while_interrupted_is_no_bug(ew, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB (and others) can turn a KeyboardInterrupt into their own exception: still a quiet exit 130."""
    from entropy_watch.store import Store

    write_to_store(tmp_path, "g", kind="healthy", seed=0, n_steps=100)

    def interrupted_read(self, *a, **k):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the signal arrives here
        except KeyboardInterrupt:
            raise RuntimeError("INTERRUPT Error: Interrupted! (KeyboardInterrupt)") from None
        raise AssertionError("SIGINT was not delivered")

    monkeypatch.setattr(Store, "runs", interrupted_read)
    r = ew("--store", tmp_path, "ls")
    assert r.code == 130 and r.err == "", r.err


def test_ctrl_c_in_any_command_exits_130(ew, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from entropy_watch.store import Store

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "runs", interrupted)
    r = ew("--store", tmp_path, "ls")
    assert r.code == 130 and "Aborted" not in r.err and "Traceback" not in r.err
