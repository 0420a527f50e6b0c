"""The console script's ``main`` run in this process, as the tests run it (the error boundary included; stdout and
stderr are not terminals): :func:`run_cli` and what one invocation did, :class:`Ran`."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from entropy_watch.cli import main


class Ran(NamedTuple):
    """What one invocation did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> Ran:
    """``main([...args])`` with ``capsys`` capturing: its exit code (0 when it returns), stdout and stderr."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    got = capsys.readouterr()
    return Ran(code, got.out, got.err)
