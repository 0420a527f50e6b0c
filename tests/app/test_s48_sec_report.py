"""A shared store's ``run.json`` is any writer's JSON: a ``created_at`` integer too large for a float (``1`` and 400
zeros is valid JSON) made ``entropy-watch report`` fail ("int too large to convert to float"). The run's times are
metadata, never a reason for the report to fail: the report is written and leaves the start out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import RunWriter, layout

from ..cli_run import run_cli

pytest.importorskip("plotly")


@pytest.mark.parametrize(
    "value",
    [10**400, -(10**400), 1e308, "2026-01-01", [1], None],
    ids=["huge", "-huge", "1e308", "text", "list", "null"],
)
def test_a_report_is_written_whatever_created_at_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: object
) -> None:
    root = tmp_path / "store"
    w = RunWriter(root, "r")
    steps = np.arange(120)
    w.write("scalars", {"step": steps, "name": ["entropy/mean"] * 120, "value": 1.2 * np.exp(-steps / 50.0) + 0.05})
    w.close()
    path = layout.run_json_path(root, "r")
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["created_at"] = value
    path.write_text(json.dumps(meta), encoding="utf-8")
    out = tmp_path / "r.html"
    ran = run_cli(capsys, "--store", root, "report", "r", "-o", out)
    assert ran.code == 0, ran.err
    line = re.search(r"<p class='muted'>(report written [^<]*)</p>", out.read_text(encoding="utf-8"))
    assert line is not None and "run started" not in line.group(1)
    assert "run last written" in line.group(1)
