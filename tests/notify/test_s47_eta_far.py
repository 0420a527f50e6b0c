"""A notification's ETA line writes the median as the verdict does (``outlook.by_step_text``): a median far past the
step the forecast was made at reads "beyond step N", never "step 500,000,000,120" (a real 7B GRPO log's first 24
points: the verdict read "beyond step 12,000 (80% interval 120–never)", its notification "step 500,000,005,884")."""

from __future__ import annotations

import pytest

from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.analysis.outlook import FAR_AHEAD, from_forecast, step_text
from entropy_watch.notify.notifier import eta_from_outlook, notice_for
from entropy_watch.notify.payloads import Eta

from ..forecasts import AT, decay_at
from ..real_runs import BEST_STATIC


def test_a_far_median_reads_beyond_step_in_the_eta_line() -> None:
    far = f"beyond step {step_text(FAR_AHEAD * AT)}"
    text = Eta(step=5e11 + AT, lo=119.0, hi=float("inf"), interval=0.8, at=AT).text()
    assert text == f"{far} (80% interval 119–never)", text
    assert Eta(460.0, 442.0, float("inf"), 0.9, at=AT).text() == "step 460 (90% interval 442–never)"  # near: as is


@pytest.mark.parametrize(("median", "lo", "hi"), [(5e11, 0.0, float("inf")), (290.0, 120.0, 900.0)])
def test_the_eta_line_is_the_verdicts_own_words(median: float, lo: float, hi: float) -> None:
    o = from_forecast(decay_at(median, lo, hi), "the absolute floor (0.02 nats)", 0.8, level=0.042)
    eta = eta_from_outlook(o)
    assert eta is not None and eta.text() in o.text, (eta.text(), o.text)


@pytest.mark.skipif(not BEST_STATIC.exists(), reason="shared/real_runs not present")
def test_the_real_far_forecast_notifies_as_the_verdict_reads() -> None:
    from entropy_watch.importers import load_log

    full = RunSeries.from_imported(load_log(BEST_STATIC)[0])
    s = full.prefix(int(full.steps[23]))  # its first 24 points, to step 120
    res = analyze(s)
    v = res.verdict
    assert v is not None and v.forecast is not None and v.forecast.eta_step is not None
    assert v.forecast.eta_step > FAR_AHEAD * v.step  # the case this guards: the median far past the run
    a = next(a for a in res.alerts if a.kind == v.kind)
    n = notice_for(s.name, a, verdict=v)
    assert n.eta is not None
    line = dict(n.lines())[f"ETA to {n.eta.target}"]
    assert line.startswith("beyond step ") and step_text(v.forecast.eta_step) not in line, line
    assert line in v.headline, (line, v.headline)
