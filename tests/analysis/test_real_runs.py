"""The labelled real runs in shared/real_runs: collapse and explosion runs get the right kind; benign gets info."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entropy_watch.analysis import RunSeries, analyze

REAL = Path(__file__).resolve().parents[3] / "shared" / "real_runs"
LABELS = json.loads((REAL / "labels.json").read_text()) if (REAL / "labels.json").exists() else {}


# Short TRL logs (40 points) the detector does not decide from yet: issue 10 removes these marks when it does.
_ISSUE_10 = {
    "Sunshine535__nips-grpo-dynamics__qwen25-7b-exp1a-rho2.00_seed44.jsonl",
    "Sunshine535__nips-grpo-dynamics__qwen25-7b-exp2-best_static_rho3.0_seed42.jsonl",
}


def _case(fname: str) -> object:
    if fname in _ISSUE_10:
        reason = "issue 10: no collapse alert yet on a 40-point TRL log (detector windows too long for tens of points)"
        return pytest.param(fname, marks=pytest.mark.xfail(reason=reason, strict=False))
    return fname


@pytest.mark.skipif(not LABELS, reason="shared/real_runs not present")
@pytest.mark.parametrize("fname", [_case(f) for f in sorted(f for f, m in LABELS.items() if m["label"] != "ambiguous")])
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
