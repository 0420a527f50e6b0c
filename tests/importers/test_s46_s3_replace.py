"""``import --replace`` into a store on S3 (a moto server on 127.0.0.1, as tests/store does): the replaced run's
folder markers went with its files, so the store no longer counts ranks the import never wrote."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

from entropy_watch.importers import import_log
from entropy_watch.store import RunWriter, Store

pytestmark = pytest.mark.slow  # a moto server: ~2 s to start, each request ~15-50 ms


@pytest.fixture
def bucket(s3_root: str, s3_endpoint: str) -> tuple[str, pafs.FileSystem]:
    """The fresh bucket of ``s3_root`` (tests/conftest.py) and a filesystem on the moto server to look into it."""
    name = s3_root.split("/")[2]
    s3 = pafs.S3FileSystem(endpoint_override=s3_endpoint.split("://")[1], scheme="http")
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
