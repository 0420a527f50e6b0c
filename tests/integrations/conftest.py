"""Shared fixtures for the trainer integrations: the tiny offline TRL setup from ``examples/trl_grpo.py``."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trl_grpo.py"


@pytest.fixture(scope="session")
def tiny_trl() -> ModuleType:
    """The example script as a module: ``build_trainer``, ``tiny_model``, ``tiny_tokenizer``, ``tiny_dataset``."""
    pytest.importorskip("trl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    spec = importlib.util.spec_from_file_location("ew_example_trl_grpo", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
