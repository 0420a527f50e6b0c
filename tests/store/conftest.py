"""Fixtures for the store tests: a fresh root per test and a launcher for real worker processes (_worker.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

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
