"""A heartbeat (``_status/rank=<r>.json``) is data its writer chose — a hand edit, a foreign tool, a damaged file: a
field of the wrong type is ignored for that run, never an error for the whole store (``ls`` and every app page list
every run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter, Store
from entropy_watch.store.layout import status_path

FIELDS: list[dict[str, Any]] = [
    {"state": "running", "interval_s": "abc"},
    {"state": "running", "interval_s": None, "updated_at": "yesterday"},
    {"state": "running", "updated_at": [1]},
    {"state": 5},
    {"last_step": "x"},
    {"latest": "x"},
    {"state": "running", "covers": "x", "session": 7},
    {"state": "running", "latest": {"entropy/mean": "x"}, "covers": {"scalars": "x"}},
]


@pytest.mark.parametrize("fields", FIELDS, ids=[json.dumps(f) for f in FIELDS])
def test_a_wrong_heartbeat_value_lists_every_run(tmp_path: Path, fields: dict[str, Any]) -> None:
    for name in ("good", "bad"):
        w = RunWriter(tmp_path, name)
        w.write("scalars", {"step": np.arange(5), "name": [M.ENTROPY_MEAN] * 5, "value": np.linspace(1, 0.5, 5)})
        w.close()
    path = status_path(tmp_path, "bad", 0)
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    runs = {r.name: r for r in Store(tmp_path).runs()}
    assert set(runs) == {"good", "bad"}
    assert runs["good"].last_step == 4
