"""``import --replace`` into a store on S3 (a moto server on 127.0.0.1, as tests/store does): the replaced run's
folder markers went with its files, so the store no longer counts ranks the import never wrote."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from entropy_watch.importers import import_log
from entropy_watch.store import RunWriter, Store

pytestmark = pytest.mark.slow  # a moto server: ~2 s to start, each request ~15-50 ms

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if server is None:
        pytest.skip("moto is not installed (pip install -e '.[dev]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start; see {log.name}")
            time.sleep(0.2)
    yield url
    proc.kill()
    proc.wait()
    log.close()


@pytest.fixture
def bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, pafs.FileSystem]:
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    name = f"ew-{uuid.uuid4().hex[:12]}"
    s3 = pafs.S3FileSystem(endpoint_override=endpoint.split("://")[1], scheme="http", allow_bucket_creation=True)
    s3.create_dir(name)
    return name, s3


def test_replace_on_s3_leaves_no_old_ranks_or_folders(bucket: tuple[str, pafs.FileSystem], tmp_path: Path) -> None:
    name, s3 = bucket
    root = f"s3://{name}/ew_runs"
    for rank in (0, 1, 2):  # a live run of three ranks, replaced by an imported log of the same name
        RunWriter(root, "r", rank=rank).write(
            "scalars", {"step": [1, 2], "name": ["entropy/mean"] * 2, "value": [0.5, 0.4]}
        )
    assert next(i for i in Store(root).runs() if i.name == "r").ranks == [0, 1, 2]
    log = tmp_path / "m.csv"
    log.write_text("step,entropy\n" + "".join(f"{i},{1 - i / 100}\n" for i in range(1, 31)))
    import_log(root, log, run="r", replace=True)
    info = next(i for i in Store(root).runs() if i.name == "r")
    assert info.ranks == [0] and info.state == "imported" and info.last_step == 30
    listed = s3.get_file_info(pafs.FileSelector(f"{name}/ew_runs/run=r", recursive=True))
    folders = sorted(i.path.split("run=r/")[1] for i in listed if i.type == pafs.FileType.Directory)
    assert folders == ["table=scalars", "table=scalars/rank=0"], folders
    assert set(Store(root).scalars("r").column("step").to_pylist()) == set(range(1, 31))  # no step of the old run
