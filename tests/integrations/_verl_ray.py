"""Ray for verl's imports in the tests: verl's modules import ``ray`` at the top (``verl/protocol.py``, for
``DataProtoFuture``'s ``ray.ObjectRef``) but nothing the tests run calls it, and ``make setup`` leaves Ray out. Where it
is not installed, :func:`ray_if_missing` puts an empty stand-in in ``sys.modules`` for a block and removes it after."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator


def _ray_stand_in() -> types.ModuleType:
    ray = types.ModuleType("ray", "entropy_watch tests: stands in for Ray, which verl imports, never run here")
    ray.__spec__ = importlib.machinery.ModuleSpec("ray", None)
    ray.ObjectRef = type("ObjectRef", (), {})
    return ray


@contextlib.contextmanager
def ray_if_missing() -> Iterator[None]:
    """``ray`` in ``sys.modules`` for the block: Ray where installed, else the stand-in (removed after the block)."""
    if "ray" in sys.modules or importlib.util.find_spec("ray") is not None or importlib.util.find_spec("verl") is None:
        yield
        return
    stand_in = sys.modules["ray"] = _ray_stand_in()
    try:
        yield
    finally:
        if sys.modules.get("ray") is stand_in:
            del sys.modules["ray"]
