"""Run a worker script as real ``torch.distributed`` ranks, each its own process, as a launcher would start them.

The worker takes its output folder as ``sys.argv[1]`` and its rank from ``RANK`` (``WORLD_SIZE`` is set too); it
usually rendezvous through a file in that folder (``init_method="file://" + os.path.join(out, "rdv")``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


def run_ranks(
    worker: str, out: Path, world: int = 2, *, hung: str = "a rank hung", timeout: float = 120
) -> list[tuple[str, str]]:
    """Write ``worker`` to ``out/worker.py`` and run it as ranks ``0 .. world-1`` (``OMP_NUM_THREADS=1``): each
    rank's (stdout, stderr), every rank exited 0. Ranks still running ``timeout`` seconds after the start are killed
    and the test fails with ``hung`` (collectives that do not match wait forever)."""
    script = out / "worker.py"
    script.write_text(worker)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": str(world)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(out)],
            env={**env, "RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for r in range(world)
    ]
    deadline = time.monotonic() + timeout
    try:
        outs = [p.communicate(timeout=max(0.1, deadline - time.monotonic())) for p in procs]
    except subprocess.TimeoutExpired:
        pytest.fail(hung)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0] * world, outs
    return outs
