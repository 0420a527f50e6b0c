"""Fixtures for the store tests: a fresh root per test (a local folder, or a bucket on the moto S3 server that
tests/conftest.py starts for the session), and a launcher for real worker processes (_worker.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("_worker.py")


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The previous release (tests/store/test_s48_mixed_versions_kit.py) driven in a process of its own, per module."""
    from .test_s48_mixed_versions_kit import Side, old_tree

    side = Side(old_tree(tmp_path_factory), "old")
    yield side
    side.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "ew_runs"


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The writer's Parquet segments meet a full disk (ENOSPC, nothing written) while ``state["full"]`` is set (it
    starts set); ``state["tries"]`` counts the writes refused."""
    from entropy_watch.store import writer as writer_mod

    real = writer_mod.write_parquet_atomic
    state: dict[str, Any] = {"full": True, "tries": 0}

    def disk(path: Any, table: Any, **kwargs: Any) -> Any:
        if state["full"]:
            state["tries"] += 1
            raise OSError(28, "No space left on device")
        return real(path, table, **kwargs)

    monkeypatch.setattr(writer_mod, "write_parquet_atomic", disk)
    return state


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


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def any_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a local folder and on an S3 bucket (the crash and concurrency harness runs on both; the S3
    variants are slow: moto answers a request in ~15-50 ms)."""
    if request.param == "local":
        return str(tmp_path / "ew_runs")
    return request.getfixturevalue("s3_root")
