"""Audit of what an unsettled explosion's headline says: "but K of its last W points are past <line>" must be true
of the points and the line(s) it quotes, checked here against the raw log (rasbt ch07 7_6-v1, whose warning line
moved within those points: the sentence read "9 of its last 31 points are past 8.76× H_ref (3.77 nats)" where only 4
were)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.analysis import RunSeries, analyze

from ..real_runs import REAL

V1 = REAL / "rasbt__reasoning-from-scratch__ch07-7_6-format-reward-v1-c41b85c.csv"
NATS = r"(\d+(?:\.\d+)?)"


def _raw_entropy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, entropy) as logged: the last row of a repeated step kept."""
    by_step: dict[int, float] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            by_step[int(float(row["step"]))] = float(row["entropy_avg"])
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[s] for s in steps])


def _claim(text: str) -> tuple[int, int, float, float]:
    """(K, W, lowest line, highest line) in nats from "K of its last W points are past a× H_ref (x nats)" or, where
    the line moved, "... past a–b× H_ref (x–y nats), the warning line as it stood at their steps (...)"."""
    m = re.search(rf"but (\d+) of its last (\d+) points are past [\d.–]+× H_ref \({NATS}(?:–{NATS})? nats\)", text)
    assert m, text
    lo = float(m.group(3))
    return int(m.group(1)), int(m.group(2)), lo, float(m.group(4) or lo)


@pytest.mark.skipif(not V1.exists(), reason="shared/real_runs not present")
def test_unsettled_count_is_true_of_the_lines_it_quotes() -> None:
    from entropy_watch.importers import load_log

    series = RunSeries.from_imported(load_log(V1)[0])
    v = analyze(series).verdict
    assert v.unsettled, v.headline
    k, w, lo, hi = _claim(v.unsettled)
    _, h = _raw_entropy(V1)
    last = h[-w:]
    # the quoted lines are rounded to 2 significant digits: allow that rounding either way
    assert int(np.sum(last > hi * 1.01)) <= k <= int(np.sum(last > lo * 0.99)), (
        f"{v.unsettled!r}: {int(np.sum(last > hi))} of the last {w} raw points are past {hi} nats, "
        f"{int(np.sum(last > lo))} past {lo}"
    )
    top = re.search(rf"up to {NATS} nats", v.unsettled)
    assert top and abs(float(top.group(1)) - float(last.max())) <= 0.006
    # the line the chart draws (Verdict.unsettled_line) is one every counted point is past
    assert v.unsettled_line is not None and int(np.sum(last > v.unsettled_line)) >= k
