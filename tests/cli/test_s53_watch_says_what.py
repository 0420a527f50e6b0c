"""``watch`` in a terminal says once what it follows: it printed nothing until the first alert, which on a healthy
store is never, so a user could not tell it from a hang. Only where a person reads stderr (a terminal): scripts and
pipes see exactly what they did."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path


def _in_a_terminal(*args: object) -> tuple[int, str, str]:
    """``python -m entropy_watch ARGS`` with stderr on a pseudo-terminal: (exit status, stdout, stderr)."""
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "entropy_watch", *map(str, args)], stdout=subprocess.PIPE,
                           stderr=slave, stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
    finally:
        os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end is closed and everything was read
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    return p.returncode, p.stdout.decode(), err.decode().replace("\r\n", "\n")


def test_watch_in_a_terminal_says_what_it_follows(store: Path, tmp_path: Path) -> None:
    code, out, err = _in_a_terminal("--store", store, "watch", "--iterations", "1", "--interval", "0.01")
    assert code == 0, err
    said = f"watching every run in {store} (3 runs now, new ones too), every 0.01 s: new alerts at warning and up "
    assert err.startswith(said + "print here as they appear; Ctrl-C stops\n"), err
    code, _, err = _in_a_terminal("--store", store, "watch", "h", "--iterations", "1", "--interval", "2",
                                  "--min-severity", "critical")  # fmt: skip
    assert code == 0 and err.startswith(f"watching h in {store}, every 2 s: new alerts at critical and up"), err
    code, _, err = _in_a_terminal("--store", tmp_path / "none", "watch", "--iterations", "1", "--interval", "0.01")
    assert code == 0 and err.startswith(f"watching every run in {tmp_path / 'none'} (no runs yet, new ones too)"), err
    code, _, err = _in_a_terminal("--store", store, "watch", "--once")  # one poll: nothing to follow
    assert code == 0 and "watching" not in err, err


def test_watch_on_a_pipe_says_nothing_more(ew_proc, store: Path) -> None:
    r = ew_proc("--store", store, "watch", "h", "--iterations", "1", "--interval", "0.01")
    assert r.code == 0 and r.err == "", r.err
