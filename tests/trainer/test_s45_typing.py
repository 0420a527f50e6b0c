"""The reference trainer refuses an object-store root (``s3://``) up front: checkpoints and policies are local files.

``train`` used to crash with ``internal error (AttributeError) ... 'ObjectPath' object has no attribute 'exists'``;
``compare`` wrote its runs to the bucket but its SFT policies and ``_compare-*.json`` into a local folder named
``s3:``. No request reaches S3 here: the endpoint is a closed port and the refusal comes before any I/O.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from entropy_watch.cli import main
from entropy_watch.errors import ConfigError
from entropy_watch.trainer.config import local_store, preset

BUCKET = "s3://bucket/ew_runs"


@pytest.fixture
def offline_s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """S3 settings that make no request (a region given, an endpoint nobody listens on); cwd in tmp_path."""
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("ENTROPY_WATCH_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def test_local_store_keeps_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local_store(tmp_path / "runs") == tmp_path / "runs"
    assert local_store("~/runs") == tmp_path / "runs"  # as every other command reads --store


@pytest.mark.usefixtures("offline_s3")
def test_local_store_refuses_an_object_store() -> None:
    with pytest.raises(ConfigError, match=r"s3://bucket/ew_runs is an object store; train into a local folder"):
        local_store(BUCKET)


@pytest.mark.usefixtures("offline_s3")
def test_train_refuses_an_s3_store_before_training(tmp_path: Path) -> None:
    from entropy_watch.trainer.loop import train

    cfg = preset("tiny", "grpo", run="g")
    with pytest.raises(ConfigError, match="object store"):
        train(cfg, store=BUCKET)
    assert list(tmp_path.iterdir()) == []  # nothing written locally either


@pytest.mark.usefixtures("offline_s3")
def test_compare_refuses_an_s3_store_before_training(tmp_path: Path) -> None:
    from entropy_watch.trainer.compare import compare

    with pytest.raises(ConfigError, match="object store"):
        compare("tiny", ["grpo"], [0], BUCKET, iterations=1, sft_steps=1, precision=False)
    assert list(tmp_path.iterdir()) == []  # no local folder named "s3:" with the policies in it


@pytest.mark.usefixtures("offline_s3")
@pytest.mark.parametrize("command", ["train", "compare"])
def test_cli_says_one_line_for_an_s3_store(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the console script's error boundary (``main``): exit 1 and one line, not an internal error."""
    with pytest.raises(SystemExit) as stop:
        main(["--store", BUCKET, command, "--steps", "1", "--sft-steps", "1"])
    err = capsys.readouterr().err
    assert stop.value.code == 1, err
    assert "internal error" not in err and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if "object store" in x]
    assert line.startswith("error: ") and line.endswith("train into a local folder (--store PATH or ENTROPY_WATCH_DIR)")
