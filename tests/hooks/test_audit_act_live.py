"""Audit of "Act on an alert": when an action fires (never for a problem the same analysis says cleared, never at
close), that a callback that hangs holds back neither a later ``stop`` nor the analysis, that a resumed run still
sends the recovery of what its earlier session alerted on, that notifications still unsent at close are counted,
and that bad options fail at construction (one line), not at the first alert."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.hooks.live import LiveOptions
from entropy_watch.notify import NotifyConfigError
from entropy_watch.store import Store

from ..notify.webhook import Webhook, serve

FAST = {"notify_backoff_s": 0.01, "notify_retries": 0, "close_timeout_s": 5}


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with serve() as hook:
        yield hook


def collapse_then_recover(n: int = 200) -> np.ndarray:
    """Entropy: 1 nat for 30 steps, an exponential fall to the floor (warning ~39, critical ~54), back at 1 nat from
    step 100 (the collapse clears ~106)."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    h = np.where(t < 30, 1.0, np.where(t < 100, np.maximum(np.exp(-(t - 30) / 12.0), 0.02), 1.0))
    return h * np.exp(rng.normal(0, 0.05, n))


def _log(w: Watch, h: np.ndarray, lo: int, hi: int) -> None:
    for s in range(lo, hi):
        w.log(s, **{M.ENTROPY_MEAN: float(h[s]), M.REWARD_MEAN: 0.5})


def _actions(root: Path, run: str) -> list[dict]:
    rows = Store(root).table(run, "events").to_pylist()
    return [json.loads(r["payload"]) for r in rows if r["kind"] == "action"]


def test_no_action_for_a_collapse_the_same_analysis_finds_cleared(tmp_path: Path) -> None:
    # the duty cap makes the analysis run every several steps (20+ on a tiny model), so one analysis can find the
    # collapse (warning, critical) and its clearing at once. Made certain here: no analysis runs before flush() (with
    # the default options a busy or quiet machine moved the analyses, and one landing mid-collapse rightly stopped the
    # run). The run is healthy again: it must not be stopped.
    h = collapse_then_recover()
    seen: list = []
    once = LiveOptions(every=10**6, interval_s=1e6)  # the one analysis is flush()'s
    w = Watch("cleared", store=tmp_path, on_alert={"critical": "checkpoint+stop", "warning": seen.append}, live=once)
    _log(w, h, 0, 160)
    w.live.flush(10)
    found = {a.severity for a in w.live.alerts if a.kind == "collapse"}
    assert found == {"warning", "critical"}  # found, stored and notified (history) ...
    assert not w.should_stop and not w.should_checkpoint and seen == []  # ... but not acted on
    w.close()
    assert _actions(tmp_path, "cleared") == []


def test_an_alert_first_found_at_close_is_recorded_not_acted_on(tmp_path: Path) -> None:
    h = collapse_then_recover()
    seen: list = []
    never = LiveOptions(every=10**6, interval_s=1e6)  # no analysis before close()
    w = Watch("atclose", store=tmp_path, on_alert={"critical": "stop", "warning": seen.append}, live=never)
    _log(w, h, 0, 70)
    w.close()
    assert any(a.severity == "critical" for a in w.live.alerts)
    assert Store(tmp_path).table("atclose", "alerts").num_rows == len(w.live.alerts)  # recorded
    assert seen == [] and not w.should_stop and _actions(tmp_path, "atclose") == []  # training is over


def test_a_hanging_callback_holds_back_neither_stop_nor_analysis(tmp_path: Path, caplog) -> None:
    h = collapse_then_recover()
    release = threading.Event()
    calls: list = []

    def hang(alert) -> None:
        calls.append(alert.key)
        release.wait(30)

    opts = LiveOptions(max_duty=1.0, close_timeout_s=1.0)
    w = Watch("hang", store=tmp_path, on_alert={"warning": hang, "critical": "stop"}, live=opts)
    stopped = None
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        for lo in range(0, 100, 10):
            _log(w, h, lo, lo + 10)
            # the analysis goes on (before: its thread sat in the callback, and this timed out)
            assert w.live.analyzer.flush(10)
            if w.should_stop:
                stopped = lo + 9
                break
        t0 = time.monotonic()
        w.close()
        took = time.monotonic() - t0
    release.set()
    crit = w.live.actions.stop_alert
    assert crit is not None and crit.severity == "critical" and stopped is not None and stopped < 80
    assert calls and calls[0].endswith(":warning")  # the warning's call is the one still hanging
    assert took < 15  # bounded by close_timeout_s (1 s, a few such bounds in a row), not by the 30 s hang
    said = [r.getMessage() for r in caplog.records if "on_alert callback" in r.getMessage()]
    assert len(said) == 1 and "hang" in said[0] and "still running" in said[0] and w.errors >= 1  # counted, said once
    time.sleep(0.1)  # the released call returns after close: it records nothing and says nothing
    assert not [r for r in caplog.records if "not recorded" in r.getMessage()]


def test_a_callback_that_hangs_is_reported_after_callback_timeout_s(tmp_path: Path, caplog) -> None:
    release = threading.Event()
    opts = LiveOptions(max_duty=1.0, callback_timeout_s=0.2, close_timeout_s=1.0)
    w = Watch("slow", store=tmp_path, on_alert={"warning": lambda a: release.wait(30)}, live=opts)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        _log(w, collapse_then_recover(), 0, 70)
        w.live.flush(5)  # returns once the call is reported stuck, not after 5 s
        time.sleep(0.3)
        w.log(70, **{M.ENTROPY_MEAN: 0.1})  # a training step notices a call past callback_timeout_s: said once
        w.close()
    release.set()
    said = [r.getMessage() for r in caplog.records if "on_alert callback" in r.getMessage()]
    assert len(said) == 1 and "has not returned after" in said[0]


def test_a_failing_notification_does_not_cost_the_stop(tmp_path: Path, webhook: Webhook) -> None:
    h = collapse_then_recover()
    w = Watch("nfail", store=tmp_path, notify=webhook.url(), on_alert={"critical": "stop"}, live=LiveOptions(**FAST))

    def broken(*a, **k):
        raise RuntimeError("renderer broke")

    w.live.notifier.alert = broken  # any failure while notifying (before: the actions after it never ran)
    _log(w, h, 0, 70)
    w.live.flush(10)
    assert w.should_stop and w.errors >= 1
    w.close()


def test_a_resumed_run_sends_the_recovery_of_what_its_earlier_session_sent(tmp_path: Path, webhook: Webhook) -> None:
    h = collapse_then_recover()
    opts = LiveOptions(max_duty=1.0, **FAST)
    first = Watch("res", store=tmp_path, notify=webhook.url(), live=opts)
    _log(first, h, 0, 90)  # the collapse alerted (warning, escalation), not yet cleared
    first.live.flush(10)
    first.close()
    sent = [(b["event"], b["key"]) for b in webhook.bodies()]
    assert [e for e, _ in sent] == ["alert", "escalation"]
    w = Watch("res", store=tmp_path, notify=webhook.url(), live=opts)  # restarted from its checkpoint at step 80
    w.event(80, "resume", checkpoint="ckpt/80")
    _log(w, h, 80, 200)
    w.live.flush(10)
    w.close()
    assert webhook.wait_for(3, 30)
    bodies = webhook.bodies()
    assert [(b["event"], b["key"]) for b in bodies[:2]] == sent  # nothing sent again
    assert [b["event"] for b in bodies[2:]] == ["recovery"] and bodies[2]["key"] == sent[0][1]
    assert w.live.notifier.gate.held["recovery"] == 0


def test_notifications_still_unsent_at_close_are_counted_and_warned(tmp_path: Path, webhook: Webhook, caplog) -> None:
    webhook.mode = "hang"
    h = collapse_then_recover()
    opts = LiveOptions(notify_timeout_s=30, notify_retries=0, close_timeout_s=0.3)
    w = Watch("unsent", store=tmp_path, notify=webhook.url(), live=opts)
    _log(w, h, 0, 70)
    w.live.flush(10)
    assert webhook.wait_for(1, 30)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        w.close()
    n = len(w.live.notifier.sent)
    assert n >= 2
    steps, values = Store(tmp_path).series("unsent", M.HOOKS_NOTIFY_ERRORS)
    assert values.size and values[-1] == n  # before: nothing, though none was delivered
    said = [r.getMessage() for r in caplog.records if "notification" in r.getMessage()]
    assert len(said) == 1 and "still being sent when the run closed" in said[0] and "SECRET" not in said[0]
    webhook.release.set()
    assert webhook.wait_for(1)
    time.sleep(0.2)  # let the released request end here (see test_watch_notify)


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"notify": "https://x.example/h", "app_url": 8501}, NotifyConfigError, "app_url: a value of type int"),
        ({"notify": "https://x.example/h", "app_url": "127.0.0.1:8501"}, NotifyConfigError, "not the app's address"),
        ({"on_alert": "stop", "live": {"notify_policy": {"min_severity": "high"}}}, NotifyConfigError, "min_severity"),
        ({"on_alert": "stop", "live": {"notify_policy": "warning"}}, TypeError, "notify_policy must be"),
        ({"notify": "https://x.example/h", "live": {"notify_timeout_s": 0}}, ValueError, "notify_timeout_s > 0"),
        ({"notify": "https://x.example/h", "live": {"notify_retries": -1}}, ValueError, "notify_retries >= 0"),
        ({"notify": 3}, NotifyConfigError, "expected a webhook URL, env:NAME or a list of them, got int"),
        ({"on_alert": "stop", "live": "yes"}, TypeError, "live must be a LiveOptions"),
    ],
)
def test_bad_options_fail_at_construction(tmp_path: Path, kwargs: dict, error: type, says: str) -> None:
    with pytest.raises(error) as e:
        Watch("cfg", store=tmp_path, **kwargs)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run=cfg").exists()  # before anything is written


def test_live_false_with_on_alert_says_so_once(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        w = Watch("off", store=tmp_path, on_alert={"critical": "stop"}, live=False)
    w.close()
    said = [r.getMessage() for r in caplog.records if "live=False" in r.getMessage()]
    assert len(said) == 1 and "on_alert=" in said[0] and w.live is None


def test_live_false_under_a_trainer_callback_says_so_once(tmp_path: Path, caplog) -> None:
    pytest.importorskip("transformers")
    from entropy_watch.hooks.hf import EntropyWatchCallback

    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        cb = EntropyWatchCallback(run="off", store=tmp_path, notify="https://x.example/h", live=False)
        cb.ensure_watch().close()  # the callback built a Live to validate, then its Watch built another
    said = [r.getMessage() for r in caplog.records if "live=False" in r.getMessage()]
    assert len(said) == 1 and "notify=" in said[0]
