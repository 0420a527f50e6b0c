"""An alert stored before its evidence carried absolute ETA steps (``eta_step_lo``/``hi``/``eta_interval``) reads a far
median as the verdict's sentence does ("beyond step N"), not as a twelve-digit step."""

from __future__ import annotations

from entropy_watch.analysis import Alert
from entropy_watch.analysis.outlook import by_step_text
from entropy_watch.notify.notifier import eta_of


def _older(median: float) -> Alert:
    ev = {"step": 120, "eta_steps_to_floor": median - 120, "eta_step_median": median, "eta_lo": 0.0, "eta_hi": 1e12}
    return Alert(120, "collapse.forecast", "collapse", "warning", "m", evidence=ev)


def test_far_median_of_older_evidence_reads_beyond():
    eta = eta_of(_older(5e11))
    assert eta is not None and eta.text().startswith(by_step_text(5e11, 120, by=""))
    assert "500,000,000,000" not in eta.text()


def test_near_median_of_older_evidence_keeps_its_step():
    eta = eta_of(_older(460.0))
    assert eta is not None and eta.text().startswith("step 460 ")
