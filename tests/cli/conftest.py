"""Fixtures for the command-line tests: the console entry point in-process and as a real process, and a store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from entropy_watch.store import RunWriter
from entropy_watch.synthetic import write_to_store

from ..cli_run import Ran, run_cli


@pytest.fixture
def ew(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """``ew("--store", d, "ls")`` runs the console script's ``main`` in this process (the error boundary included;
    stdout and stderr are not terminals)."""
    return lambda *args: run_cli(capsys, *args)


def _proc(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Ran:
    r = subprocess.run(
        [sys.executable, "-m", "entropy_watch", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Ran(r.returncode, r.stdout, r.stderr)


@pytest.fixture
def ew_proc() -> Callable[..., Ran]:
    """``ew_proc("--store", d, "ls")`` runs ``python -m entropy_watch`` as a real process (stdout/stderr are pipes)."""
    return _proc


def write_no_entropy_run(root: Path, run: str = "sft-s0") -> None:
    """A run that logged scalars but no entropy (like the demo's SFT warm-up run)."""
    w = RunWriter(root, run)
    w.write("scalars", {"step": [0, 1, 2], "name": ["loss/sft"] * 3, "value": [1.0, 0.9, 0.8]})
    w.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a collapsing run ``g``, a healthy run ``h`` and a run without entropy ``sft-s0``."""
    root = tmp_path_factory.mktemp("store")
    write_to_store(root, "g", kind="collapse_exp", seed=1, n_steps=300)
    write_to_store(root, "h", kind="healthy", seed=1, n_steps=300)
    write_no_entropy_run(root)
    return root
