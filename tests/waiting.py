"""Waiting on a condition, never on a duration: :func:`wait_until` (a loaded 2-core machine is slow, not wrong)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

WAIT_S = 60.0
"""Generous: the bound on a condition that holds within a second on a quiet machine."""


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``condition`` every 50 ms until it is true; fail the test, naming ``what``, after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)
