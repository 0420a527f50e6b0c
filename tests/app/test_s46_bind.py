"""The app never serves on every network interface by accident: ``streamlit run app/main.py --server.address ""``
(a launcher's ``--server.address "$HOST"`` with HOST unset) stops with one line instead of listening on 0.0.0.0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .conftest import APP_MAIN, free_port


def _answers(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok"
    except OSError:
        return False


def test_an_empty_server_address_stops_the_app_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP_MAIN), "--server.address", "", "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    env = dict(os.environ, ENTROPY_WATCH_DIR=str(tmp_path / "store"))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            assert not _answers(port), "the app served with an empty address (Streamlit binds it as 0.0.0.0)"
            time.sleep(0.3)
        assert proc.poll() is not None, "the server neither served nor stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0]
    assert proc.returncode == 2, out
    assert "server.address is empty" in out and "--server.address 127.0.0.1" in out, out
    assert "Traceback" not in out, out
