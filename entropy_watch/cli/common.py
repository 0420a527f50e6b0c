"""Shared CLI pieces: the global state object, one-line errors, JSON/table output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer


@dataclass
class State:
    """Global options, passed to every command through ``ctx.obj``."""

    store: str | None = None
    debug: bool = False

    def root(self) -> Path:
        from entropy_watch.store.layout import default_root

        return default_root(self.store)


def state(ctx: typer.Context) -> State:
    """The global options of this invocation (defaults when a command is invoked without the callback)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


def fail(err: BaseException | str, *, prefix: str = "error", code: int = 1) -> NoReturn:
    """Print ``error: <one line>`` to stderr and exit with ``code``."""
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    typer.echo(f"{prefix}: {msg}", err=True)
    sys.exit(code)


def echo_json(obj: Any) -> None:
    """Print ``obj`` as JSON (NaN/inf become null), the shared ``--json`` output of listing commands."""
    from entropy_watch.jsonable import to_jsonable

    typer.echo(json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False))


def fmt_value(v: float | None) -> str:
    """A metric value readable at a glance: 4 significant digits, N/A for missing."""
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "N/A"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e12):
        return str(int(v))
    return f"{v:.4g}"
