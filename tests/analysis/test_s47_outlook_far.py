"""A median ETA far past the run reads "beyond step N" in every sentence the outlook writes, as the interval's late end
already did: a fit whose draws mostly never reach the floor falls back to its central fit's crossing, and a real 7B
GRPO log (its first 24 points) read "at this rate the absolute floor (0.02 nats) by step 500,000,005,884 (80%
interval 119–never)" in `show`, `alerts`, the report and the collapse alert's message."""

from __future__ import annotations

from entropy_watch.analysis.outlook import FAR_AHEAD, from_forecast, step_text

from ..forecasts import AT, decay_at


def test_a_far_median_eta_reads_beyond_step() -> None:
    far = FAR_AHEAD * AT
    o = from_forecast(decay_at(5e11), "the absolute floor (0.02 nats)", 0.8, level=0.042)
    assert o.eta_step == AT + 5e11  # the figure stays in the evidence
    assert f"beyond step {step_text(far)} (80% interval" in o.text, o.text
    assert step_text(AT + 5e11) not in o.text
    assert o.eta_evidence()["eta_step_median"] == AT + 5e11


def test_a_near_median_eta_reads_by_step() -> None:
    o = from_forecast(decay_at(290.0, 120.0, 900.0), "the absolute floor (0.02 nats)", 0.8, level=0.042)
    assert f"by step {step_text(AT + 290.0)} (80% interval {step_text(AT + 120)}–{step_text(AT + 900)})" in o.text


def test_the_back_text_and_the_ahead_text_read_beyond_too() -> None:
    far = f"beyond step {step_text(FAR_AHEAD * AT)}"
    back = from_forecast(decay_at(5e11), "the absolute floor (0.02 nats)", 0.8, level=0.05).back_text()
    assert far in back and "by step" not in back, back
    ahead = from_forecast(decay_at(5e11), "the absolute floor (0.02 nats)", 0.8, level=0.01)  # past it already
    assert ahead.ahead and f"there {far}" in ahead.text and "by step" not in ahead.text, ahead.text


def test_by_step_text_bounds() -> None:
    from entropy_watch.analysis.outlook import by_step_text

    assert by_step_text(FAR_AHEAD * AT, AT) == f"by step {step_text(FAR_AHEAD * AT)}"
    assert by_step_text(FAR_AHEAD * AT + 1, AT) == f"beyond step {step_text(FAR_AHEAD * AT)}"
    assert by_step_text(1e15, None) == f"by step {step_text(1e15)}"  # no step known: the figure as it is
