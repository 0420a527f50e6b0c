"""A store root is a local (or shared) folder or ``s3://``: any other ``scheme://`` root is refused in one line
before anything is written, where it became a local folder named ``gs:`` that the run's rows went into."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entropy_watch.cli import main
from entropy_watch.store import Store
from entropy_watch.store.layout import default_root


@pytest.mark.parametrize("root", ["gs://bucket/ew_runs", "hdfs://namenode/x", "az://c/x", "file:///tmp/x"])
def test_other_schemes_are_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="store is not supported"):
        Store(root).writer("r1")
    assert os.listdir(tmp_path) == []


def test_the_cli_says_it_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["--store", "gs://bucket/x", "ls"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "gs:// store is not supported" in err
    assert os.listdir(tmp_path) == []


def test_local_paths_stay_local(tmp_path: Path) -> None:
    assert default_root(str(tmp_path / "a:b")) == tmp_path / "a:b"
    assert default_root("~/x") == Path("~/x").expanduser()
