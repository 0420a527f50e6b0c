"""to_jsonable: the one conversion used for run.json configs, --json output and saved comparison tables."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from entropy_watch.jsonable import to_jsonable


@dataclass
class Inner:
    lr: float = 1e-3
    bad: float = math.nan


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    eps: tuple[float, float] = (0.2, 0.28)


class HFLike:
    def to_dict(self) -> dict:
        return {"vocab_size": 15, "path": Path("/tmp/m")}


def test_nested_values_become_plain_json() -> None:
    obj = {
        "cfg": Outer(),
        "ns": argparse.Namespace(seed=3, _private=1),
        "hf": HFLike(),
        "np": np.float32(0.5),
        "arr": np.arange(3),
        "inf": float("inf"),
        1: {2},
    }
    out = to_jsonable(obj)
    assert out == {
        "cfg": {"name": "x", "inner": {"lr": 1e-3, "bad": None}, "eps": [0.2, 0.28]},
        "ns": {"seed": 3},
        "hf": {"vocab_size": 15, "path": "/tmp/m"},
        "np": 0.5,
        "arr": [0, 1, 2],
        "inf": None,
        "1": [2],
    }
    json.dumps(out, allow_nan=False)  # strictly valid JSON
