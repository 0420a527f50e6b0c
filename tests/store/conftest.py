"""Fixtures for the store tests: a fresh root per test (a local folder, or a bucket on a moto S3 server started for
the session), and a launcher for real worker processes (_worker.py)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

WORKER = Path(__file__).with_name("_worker.py")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "ew_runs"


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``_worker.py ROLE ARGS`` with piped text stdout; every process still alive at teardown is killed."""
    procs: list[subprocess.Popen[str]] = []

    def start(role: str, *args: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), role, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# -- object store (issue 15): a real S3-compatible server (moto) on 127.0.0.1, one fresh bucket per test ------------
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
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    bucket = f"ew-{uuid.uuid4().hex[:12]}"
    url = urllib.parse.urlsplit(s3_endpoint)
    pafs.S3FileSystem(endpoint_override=url.netloc, scheme=url.scheme, allow_bucket_creation=True).create_dir(bucket)
    return f"s3://{bucket}/ew_runs"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def any_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a local folder and on an S3 bucket (the crash and concurrency harness runs on both; the S3
    variants are slow: moto answers a request in ~15-50 ms)."""
    if request.param == "local":
        return str(tmp_path / "ew_runs")
    return request.getfixturevalue("s3_root")


# Fixed fake credentials; no profile, no instance metadata lookups (they would stall on a machine without them).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}
