"""``verl_autoload`` is imported inside ``import verl`` (``verl/__init__.py`` imports every module named in
``VERL_USE_EXTERNAL_MODULES``, verl >= 0.6), and by Ray before any task when it is the ``worker_process_setup_hook``
(verl 0.4-0.5): an entropy_watch that cannot be imported there (numpy 1.x, which verl 0.5-0.8 pin, beside a pyarrow
that needs numpy 2; a package missing on one node) stopped verl from importing in every process. Now it is one
warning and verl trains. No verl needed: the import of ``entropy_watch.hooks.verl`` is made to fail."""

from __future__ import annotations

import importlib
import logging

import pytest

from ._fresh_import import afresh_without

NAME = "entropy_watch.hooks.verl_autoload"


@pytest.fixture
def broken_hooks(monkeypatch):
    """``import entropy_watch.hooks.verl`` raises ImportError; ``verl_autoload`` is imported afresh. Both modules,
    and the package attribute the import sets, are put back after the test."""
    yield from afresh_without(monkeypatch, "entropy_watch.hooks.verl", NAME)


def test_an_entropy_watch_that_cannot_import_never_stops_verl(broken_hooks, monkeypatch, caplog):
    monkeypatch.delenv("ENTROPY_WATCH_STRICT", raising=False)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        autoload = importlib.import_module(NAME)
    assert (
        list(autoload.INSTALLED) == ["import"]
        and "import of entropy_watch.hooks.verl halted" in autoload.INSTALLED["import"]
    )
    assert autoload.setup() is autoload.INSTALLED  # Ray's worker_process_setup_hook entry
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "entropy_watch"]
    assert "nothing is recorded" in warning and "verl trains without it" in warning and "\n" not in warning


def test_strict_raises_it(broken_hooks, monkeypatch):
    monkeypatch.setenv("ENTROPY_WATCH_STRICT", "1")
    with pytest.raises(ImportError):
        importlib.import_module(NAME)
