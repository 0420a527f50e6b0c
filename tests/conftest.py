"""Suite-wide set-up, run before any test module imports a library: the tests are offline.

huggingface_hub reads its offline and telemetry switches once, at import; a TRL or transformers test that imports it
first would otherwise start a telemetry thread that resolves huggingface.co (a getaddrinfo in a background thread
crashed the interpreter with SIGSEGV on a machine without network).

The object-store tests (tests/store, tests/importers) share one S3-compatible server (moto) on 127.0.0.1 for the
session, and a fresh bucket per test (``s3_endpoint``, ``s3_root``); they skip where moto is not installed.

A suite started in the background of a shell without job control (``make test &``, a CI wrapper) inherits SIGINT
ignored, and so would every process it starts: the Ctrl-C tests (``watch``, ``app``) then waited for a signal that
never came. SIGINT is delivered again, as a terminal or a process manager delivers it (children get the default).

``COLUMNS`` and ``LINES`` are dropped: the CLI's tables and typer's error boxes take their width from ``COLUMNS``
when it is set, and a shell, a CI runner or pytest-xdist's workers (which set 80x24) exporting it made the tests that
read whole lines see them wrapped at that width; a test that is about ``COLUMNS`` sets it itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK")
for _name in OFFLINE:
    os.environ.setdefault(_name, "1")
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Fixed fake credentials; no profile, no instance metadata lookups (they would stall on a machine without them).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a ``moto_server`` process started for this session (skips without moto)."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if server is None:
        pytest.skip("moto is not installed (pip install -e '.[dev]'); S3 tests need its server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start (exit {proc.poll()}); see {log.name}")
            time.sleep(0.2)
    yield endpoint
    proc.kill()
    proc.wait()
    log.close()


@pytest.fixture
def s3_root(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/ew_runs`` with credentials and endpoint in the environment (inherited by workers)."""
    import pyarrow.fs as pafs

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    bucket = f"ew-{uuid.uuid4().hex[:12]}"
    url = urllib.parse.urlsplit(s3_endpoint)
    pafs.S3FileSystem(endpoint_override=url.netloc, scheme=url.scheme, allow_bucket_creation=True).create_dir(bucket)
    return f"s3://{bucket}/ew_runs"
