"""The labelled real runs in shared/real_runs: collapse and explosion runs get the right kind; benign gets info."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entropy_watch.analysis import RunSeries, analyze

REAL = Path(__file__).resolve().parents[3] / "shared" / "real_runs"
LABELS = json.loads((REAL / "labels.json").read_text()) if (REAL / "labels.json").exists() else {}


@pytest.mark.skipif(not LABELS, reason="shared/real_runs not present")
@pytest.mark.parametrize("fname", sorted(f for f, m in LABELS.items() if m["label"] != "ambiguous"))
def test_real_run_gets_the_right_verdict(fname: str) -> None:
    from entropy_watch.importers import load_log

    spec = LABELS[fname]
    runs = load_log(REAL / fname)
    assert len(runs) == 1
    res = analyze(RunSeries.from_imported(runs[0]))
    alarms = [a for a in res.alerts if a.severity != "info"]
    label = spec["label"]
    if label in ("collapse", "explosion"):
        assert any(a.kind == label for a in alarms), [a.message for a in alarms]
        assert not [a for a in alarms if a.kind in ("collapse", "explosion") and a.kind != label]
    if label == "collapse":
        first = next(a for a in alarms if a.kind == "collapse")
        s = RunSeries.from_imported(runs[0])
        early = float(sorted(s.entropy[:5])[2])
        under = s.steps[s.entropy < 0.1 * early]
        assert under.size == 0 or first.step < under[0] or len(under) < 5
    if label == "collapse-benign":
        assert alarms == [] and any(a.kind == "saturation" for a in res.alerts)
