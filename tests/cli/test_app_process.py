"""The app server as a user starts and stops it, with real processes: both entry points (``streamlit run
app/main.py`` from the repository root or elsewhere, ``entropy-watch app`` from anywhere) listen on 127.0.0.1 only and
collect no usage statistics; SIGTERM or Ctrl-C (SIGINT) to ``entropy-watch app`` leaves nothing serving its port.

Listening sockets are read from ``/proc/net/tcp{,6}`` (Linux), so the check sees every address the server bound,
not only the one a client happens to try.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ..app.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # a Streamlit start on a loaded 2-core machine
LISTEN = "0A"  # TCP state in /proc/net/tcp

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc/net/tcp"),
]


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as the kernel writes them) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == LISTEN and int(hex_port, 16) == port:
                found.add(addr)
    return found


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5).read() == b"ok":
                return
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"the app did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")


def _wait_port_free(port: int, timeout_s: float = 30.0) -> set[str]:
    deadline = time.monotonic() + timeout_s
    while (left := _listening(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _start(cmd: list[str], cwd: Path, log: Path, store: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}  # no settings from the outside
    env["ENTROPY_WATCH_DIR"] = str(store)
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def _assert_local_only(port: int, log: Path) -> None:
    addrs = _listening(port)
    assert addrs == {"0100007F"}, f"listening on {addrs}, want 127.0.0.1 only"  # 127.0.0.1, little-endian hex
    assert "usage statistics" not in log.read_text().lower()


@pytest.mark.parametrize("where", ["repo-root", "elsewhere"])
def test_streamlit_run_binds_localhost_without_stats(tmp_path: Path, where: str) -> None:
    """From the repository root as the README says, and from any other directory (which has no .streamlit/ of its
    own: the app's settings travel with main.py; it bound every interface and sent usage statistics)."""
    port, log = free_port(), tmp_path / "streamlit.log"
    script, cwd = ("app/main.py", REPO) if where == "repo-root" else (str(REPO / "app" / "main.py"), tmp_path)
    # Only what the README's command leaves to the user: the port, and headless so no browser opens in CI.
    cmd = [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.headless", "true"]
    proc = _start(cmd, cwd, log, tmp_path / "store")
    try:
        _wait_healthy(proc, port, log)
        _assert_local_only(port, log)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_entropy_watch_app_binds_localhost_and_a_signal_stops_its_server(tmp_path: Path, sig: signal.Signals) -> None:
    port, log = free_port(), tmp_path / "app.log"
    cmd = [sys.executable, "-m", "entropy_watch", "app", "--port", str(port)]  # the entropy-watch console script
    proc = _start(cmd, tmp_path, log, tmp_path / "store")  # cwd without a .streamlit/: the flags must do it
    try:
        _wait_healthy(proc, port, log)
        _assert_local_only(port, log)
        proc.send_signal(sig)  # to entropy-watch only, as a process manager or `kill` would
        assert proc.wait(30) == (130 if sig == signal.SIGINT else 0), log.read_text()[-3000:]  # Ctrl-C: 130
        assert _wait_port_free(port) == set(), f"port {port} still served after {sig.name}:\n{log.read_text()[-3000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
