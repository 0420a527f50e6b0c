"""A hook module imported afresh, as in a new Ray worker or verl process, while another module's import fails."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


def afresh_without(monkeypatch: pytest.MonkeyPatch, broken: str, name: str) -> Iterator[None]:
    """For a fixture to ``yield from``: ``import <broken>`` raises ImportError and module ``name`` (an
    ``entropy_watch.hooks`` module) is imported afresh by the test. Both modules, and the package attribute the import
    sets, are put back after the test: as before it, the module or none (never the one imported here)."""
    import entropy_watch.hooks as package

    monkeypatch.setitem(sys.modules, broken, None)  # `import` of it raises ImportError
    attr = name.rsplit(".", 1)[1]
    saved = [(sys.modules, name, sys.modules.pop(name, None))]
    saved.append((vars(package), attr, vars(package).pop(attr, None)))
    yield
    for where, key, value in saved:
        if value is None:
            where.pop(key, None)
        else:
            where[key] = value
