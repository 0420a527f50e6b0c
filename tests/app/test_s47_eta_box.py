"""The Run page's ETA box writes the median as the headline beside it does (``outlook.by_step_text``): a real 7B GRPO
log's first 24 points read "beyond step 12,000" in the headline and "500,000,005,884" in the box."""

from __future__ import annotations

import pytest

from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.analysis.outlook import FAR_AHEAD, from_forecast, step_text
from entropy_watch.app.run_panels import eta_box_text

from ..forecasts import AT, decay_at
from ..real_runs import BEST_STATIC


@pytest.mark.parametrize(("median", "box"), [(5e11, f"beyond step {step_text(FAR_AHEAD * AT)}"), (290.0, "step 410")])
def test_the_eta_box_says_what_the_headline_says(median: float, box: str) -> None:
    o = from_forecast(decay_at(median, 0.0, float("inf")), "the absolute floor (0.02 nats)", 0.8, level=0.042)
    assert eta_box_text(o) == box and box in o.text, (eta_box_text(o), o.text)


def test_the_eta_box_without_an_eta() -> None:
    assert eta_box_text(None) == "—"
    off = from_forecast(decay_at(float("inf"), float("inf"), float("inf")), "the floor", 0.8, level=0.042)
    assert eta_box_text(off) == "never"
    past = from_forecast(decay_at(50.0, 0.0, 90.0), "the floor", 0.8, level=0.01)  # the level past it already
    assert past.now and eta_box_text(past) == "now"


@pytest.mark.skipif(not BEST_STATIC.exists(), reason="shared/real_runs not present")
def test_the_real_far_forecast_boxes_as_its_headline_reads() -> None:
    from entropy_watch.importers import load_log

    full = RunSeries.from_imported(load_log(BEST_STATIC)[0])
    v = analyze(full.prefix(int(full.steps[23]))).verdict  # its first 24 points, to step 120
    assert v is not None and v.forecast is not None and v.forecast.eta_step is not None
    assert v.forecast.eta_step > FAR_AHEAD * v.step  # the case this guards: the median far past the run
    box = eta_box_text(v.forecast)
    assert box.startswith("beyond step ") and box in v.headline, (box, v.headline)
