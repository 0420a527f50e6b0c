"""Ray ends a worker whose ``worker_process_setup_hook`` raises (``default_worker.py``: ``drain_and_exit_worker``), and
the OpenRLHF actor on it with the training. ``entropy_watch.hooks.openrlhf.install`` is that hook: Ray imports the
module by name and calls it. An entropy_watch whose recording side cannot import in the worker (numpy 1.x beside a
pyarrow built for numpy 2, a package missing on one node) raised in that import. Now the module imports without the
store, and ``install`` warns once, installs nothing and returns. No Ray needed: its import-and-call is done here."""

from __future__ import annotations

import importlib
import logging

import pytest

from ._fresh_import import afresh_without

NAME = "entropy_watch.hooks.openrlhf"


@pytest.fixture
def broken_store(monkeypatch):
    """``import entropy_watch.hooks.watch`` raises ImportError; the OpenRLHF hook module is imported afresh, as in a
    new Ray worker. Both modules, and the package attribute the import sets, are put back after the test."""
    yield from afresh_without(monkeypatch, "entropy_watch.hooks.watch", NAME)


def ray_setup_hook(key: str):
    """What Ray's ``load_and_execute_setup_hook_module`` does with a string hook: import the module, call the name."""
    module, _, attr = key.rpartition(".")
    return getattr(importlib.import_module(module), attr)()


def test_a_worker_whose_store_cannot_import_warns_once_and_trains(broken_store, monkeypatch, caplog):
    monkeypatch.delenv("ENTROPY_WATCH_STRICT", raising=False)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        report = ray_setup_hook(f"{NAME}.install")
    assert list(report) == ["import"] and "entropy_watch.hooks.watch" in report["import"]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "entropy_watch"]
    assert "nothing is recorded" in warning and "OpenRLHF trains without it" in warning and "\n" not in warning
    assert "pip install" in warning  # what to do


def test_strict_raises_it(broken_store, monkeypatch):
    monkeypatch.setenv("ENTROPY_WATCH_STRICT", "1")
    with pytest.raises(ImportError):
        ray_setup_hook(f"{NAME}.install")
