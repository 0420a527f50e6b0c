"""A read that may block on a FIFO planted in a store, run so that a hang fails the test instead of hanging the run:
:func:`within`."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def within(fn: Callable[[], Any], fifos: list[Path], seconds: float = 10.0) -> Any:
    """``fn()``'s result; fails when it is still running after ``seconds`` (then frees it by opening each FIFO's
    writing end, so a blocked read sees end of file and the test run goes on)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    while thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(0.1)
    assert not hung, "blocked on a FIFO in the store"
    if "error" in box:
        raise box["error"]
    return box["value"]
