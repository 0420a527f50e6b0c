"""_run.json's ``versions`` name the release of a trainer module that has no ``__version__`` (OpenRLHF): the advice
spells OpenRLHF's flags by its release, and "?" told it nothing."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest

pytest.importorskip("torch")


def _not_installed(name: str) -> str:
    raise importlib.metadata.PackageNotFoundError(name)


def test_a_module_without_version_gets_its_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    from entropy_watch.hooks import watch

    monkeypatch.setitem(sys.modules, "openrlhf", types.ModuleType("openrlhf"))  # no __version__, as OpenRLHF
    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"openrlhf": "0.9.10"}[name])
    assert watch._versions()["openrlhf"] == "0.9.10"
    monkeypatch.setattr(importlib.metadata, "version", _not_installed)
    assert watch._versions()["openrlhf"] == "?"
