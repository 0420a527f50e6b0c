"""A run resumed from a checkpoint taken before a collapse, that collapses again the same way: the live analysis knows
only what the history left standing raised (what the resume replaced is not part of the run, as the store reads it),
so the new trajectory's alerts are raised, acted on and sent; an alert at a step the resume kept is not, again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.hooks.live import LiveOptions
from entropy_watch.store import Store

from ..notify.webhook import Webhook, serve

OPTS = LiveOptions(max_duty=1.0, notify_backoff_s=0.01, notify_retries=1, close_timeout_s=10)
RESUME = 45  # after the collapse's warning (step 39 of this trajectory), before its critical alert (step 54)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with serve() as hook:
        yield hook


def collapse(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """1 nat for 30 steps, then an exponential fall to the floor (a fixed noise draw)."""
    t = np.arange(n)
    h = np.where(t < 30, 1.0, np.maximum(np.exp(-(t - 30) / 12.0), 0.02))
    return t, h * np.exp(np.random.default_rng(0).normal(0, 0.05, n))


def _log(w: Watch, steps: np.ndarray, h: np.ndarray) -> None:
    for s, x in zip(steps.tolist(), h.tolist(), strict=True):
        w.log(s, **{M.ENTROPY_MEAN: x, M.REWARD_MEAN: 0.5})


def _first_session(root: Path, webhook: Webhook) -> tuple[list, list]:
    """Collapses to step 59 with a warning and a critical alert, sent and acted on (stop), then closes."""
    steps, h = collapse()
    first = Watch("re", store=root, live=OPTS, notify=webhook.url(), on_alert={"critical": "stop"})
    _log(first, steps, h)
    first.live.flush(10)
    assert first.should_stop
    first.close()
    alerts = [(a.step, a.severity) for a in first.live.alerts if a.kind == "collapse"]
    assert any(s < RESUME for s, _ in alerts) and any(s >= RESUME and v == "critical" for s, v in alerts), alerts
    assert webhook.wait_for(2, 30)
    return first.live.alerts, webhook.bodies()


@pytest.mark.parametrize("known_first", [False, True], ids=["resume-then-log", "log-then-resume"])
def test_a_resume_before_a_collapse_that_collapses_again_alerts_acts_and_sends(
    tmp_path: Path, webhook: Webhook, known_first: bool
) -> None:
    """``known_first``: the stored history was already analysed (and the gate primed) when the resume event came (a
    driver that logs the step's entropy before it records the resume, as verl's does)."""
    earlier, sent = _first_session(tmp_path, webhook)
    steps, h = collapse()
    w = Watch("re", store=tmp_path, live=OPTS, notify=webhook.url(), on_alert={"critical": "stop"})
    if known_first:
        _log(w, steps[RESUME : RESUME + 1], h[RESUME : RESUME + 1])
        w.live.flush(10)
        assert not w.live.alerts and not w.should_stop
    w.event(RESUME, "resume", checkpoint=f"ckpt-{RESUME}")
    _log(w, steps[RESUME:], h[RESUME:])  # the same trajectory again
    w.live.flush(10)
    assert w.should_stop  # acted on
    w.close()
    kept = {a.key for a in earlier if a.step < RESUME}
    replaced = {a.key for a in earlier if a.step >= RESUME}
    again = {a.key for a in w.live.alerts}
    assert replaced and replaced <= again  # the new trajectory's alerts raised
    assert kept and not kept & again  # the history the resume kept: not raised again
    assert webhook.wait_for(len(sent) + 1, 5)
    new = {b["key"]: b["event"] for b in webhook.bodies()[len(sent) :]}
    assert sorted(k for k in new if k in replaced or k in kept) == sorted(k for k in replaced if "info" not in k)
    # the kept warning was sent by the earlier session: the new critical is its escalation, as it was then
    assert {new[k] for k in replaced if "critical" in k} == {"escalation"} == {b["event"] for b in sent[1:]}
    rows = Store(tmp_path).alerts("re")
    stored = {f"{r['step']}:{r['detector']}:{r['kind']}:{r['severity']}" for r in rows}
    assert replaced <= stored and kept <= stored  # the run's alerts, as the store reads them after the resume


def test_an_alert_of_the_kept_history_is_not_raised_again_after_the_resume(tmp_path: Path, webhook: Webhook) -> None:
    """Resumed after every alert of the earlier session (nothing replaced of what it raised): none is raised or sent
    again, and the run is not stopped for them."""
    earlier, sent = _first_session(tmp_path, webhook)
    steps, h = collapse()
    w = Watch("re", store=tmp_path, live=OPTS, notify=webhook.url(), on_alert={"critical": "stop"})
    w.event(59, "resume", checkpoint="ckpt-59")
    _log(w, steps[59:], h[59:])
    w.live.flush(10)
    assert not w.should_stop
    w.close()
    assert not {a.key for a in w.live.alerts} & {a.key for a in earlier}
    assert len(webhook.bodies()) == len(sent)
