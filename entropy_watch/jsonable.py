"""One conversion of Python values to plain JSON values, for run.json configs, ``--json`` output and saved tables."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """Configs and results -> JSON values: ``to_dict()`` objects (HF configs and training arguments, a verdict, an
    alert: their own JSON form, the schema docs/CONTRACTS.md gives, not their attributes), dataclasses, mappings,
    sequences, numpy scalars and arrays, paths; non-finite floats become ``None`` (JSON has no NaN); anything else
    its ``str``."""
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if not isinstance(obj, type | Mapping) and callable(getattr(obj, "to_dict", None)) and not hasattr(obj, "tolist"):
        try:
            d = obj.to_dict()
        except Exception:  # noqa: BLE001 - fall back to the fields or attributes
            d = obj
        if d is not obj:
            return to_jsonable(d)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalars and arrays, torch tensors
        return to_jsonable(obj.tolist())
    if hasattr(obj, "__dict__") and not callable(obj):  # argparse.Namespace and plain objects
        return {k: to_jsonable(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return str(obj)
