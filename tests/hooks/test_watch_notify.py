"""Watch with live analysis: alerts found in-process (the same as post hoc), notifications to a local webhook, on_alert
actions (``should_stop``, ``should_checkpoint``, callbacks, events), and nothing of it blocks the training thread or
leaks the webhook URL."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert, RunSeries, analyze
from entropy_watch.hooks import Watch
from entropy_watch.hooks.actions import ActionSpecError
from entropy_watch.hooks.live import LiveOptions
from entropy_watch.notify import NotifyConfigError
from entropy_watch.store import Store

from ..notify.webhook import Webhook, serve

FAST = LiveOptions(notify_backoff_s=0.01, notify_retries=1, close_timeout_s=10)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with serve() as hook:
        yield hook


def collapse_then_recover(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(steps, entropy): 1 nat for 30 steps, an exponential fall to the floor, back at 1 nat from step 100."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    h = np.where(t < 30, 1.0, np.where(t < 100, np.maximum(np.exp(-(t - 30) / 12.0), 0.02), 1.0))
    return t, h * np.exp(rng.normal(0, 0.05, n))


def _log(w: Watch, steps: np.ndarray, h: np.ndarray) -> None:
    for s, x in zip(steps, h, strict=True):
        w.log(int(s), **{M.ENTROPY_MEAN: float(x), M.REWARD_MEAN: 0.5})


def _actions(root: Path, run: str) -> list[dict]:
    rows = Store(root).table(run, "events").to_pylist()
    return [json.loads(r["payload"]) | {"step": r["step"]} for r in rows if r["kind"] == "action"]


def test_live_alerts_are_the_post_hoc_alerts(tmp_path: Path) -> None:
    steps, h = collapse_then_recover()
    with Watch("live", store=tmp_path, live=True, flush_secs=0.1) as w:
        for lo, hi in ((0, 40), (40, 60), (60, 120), (120, 200)):  # several analyses of growing prefixes
            _log(w, steps[lo:hi], h[lo:hi])
            w.live.flush()
        live = sorted(a.key for a in w.live.alerts)
    post = analyze(RunSeries.from_arrays("live", steps, h, reward=np.full(steps.size, 0.5))).alerts
    assert live and live == sorted(a.key for a in post)
    stored = Store(tmp_path).table("live", "alerts").to_pylist()  # what fired, kept for the post-mortem
    assert sorted(Alert.from_row(r).key for r in stored) == live


def test_alert_escalation_recovery_and_actions(tmp_path: Path, webhook: Webhook) -> None:
    steps, h = collapse_then_recover()
    seen: list[Alert] = []
    targets = [webhook.url("/json/S"), "slack+" + webhook.url("/slack/S"), "discord+" + webhook.url("/discord/S")]
    w = Watch(
        "r1",
        store=tmp_path,
        notify=targets,
        on_alert={"critical": "stop", "warning": seen.append},
        app_url="http://127.0.0.1:8501",
        live=FAST,
    )
    for lo, hi in ((0, 60), (60, 130), (130, 200)):
        _log(w, steps[lo:hi], h[lo:hi])
        w.live.flush()
    w.close()
    alerts = w.live.alerts
    loud = [a for a in alerts if a.rank >= 1]
    first_crit = next(a for a in alerts if a.severity == "critical")
    # notifications: warning+ only; a critical after a warning of the same kind is an escalation; one recovery
    bodies = webhook.bodies("/json/S")
    events = [b["event"] for b in bodies]
    assert events[-1] == "recovery" and events.count("recovery") == 1
    assert {b["kind"] for b in bodies} == {"collapse"}
    assert all(b["severity"] != "info" for b in bodies if b["event"] != "recovery")
    if loud[0].severity == "warning":
        assert events[:2] == ["alert", "escalation"] and bodies[1]["step"] == first_crit.step
    assert bodies[0]["app_url"] == "http://127.0.0.1:8501/run?run=r1" and bodies[0]["alert"]["evidence"]
    assert bodies[0]["verdict"]["schema"] == 1 and bodies[0]["verdict"]["run"] == "r1"
    assert len(webhook.bodies("/slack/S")) == len(webhook.bodies("/discord/S")) == len(bodies)
    # actions: the callback saw every warning+ alert, stop fired on the first critical; each is an events row
    assert seen == loud and w.should_stop and w.live.actions.stop_alert is first_crit
    acts = _actions(tmp_path, "r1")
    stop = [e for e in acts if "stop" in e["actions"]]
    assert len(stop) == 1 and stop[0]["alert"]["key"] == first_crit.key
    assert stop[0]["did"] == ["set watch.should_stop = True"]
    assert sum("call" in e["actions"] for e in acts) == len(loud)


def test_a_polling_loop_stops_after_the_first_critical_alert(tmp_path: Path) -> None:
    steps, h = collapse_then_recover()
    stopped_at = None
    with Watch("poll", store=tmp_path, on_alert={"critical": "stop"}) as w:
        for s in steps:
            w.log(int(s), **{M.ENTROPY_MEAN: float(h[s])})
            if s % 5 == 4:
                w.live.flush()  # what the thread does between two real (slower) steps
            if w.should_stop:
                stopped_at = int(s)
                break
    crit = w.live.actions.stop_alert
    assert crit is not None and crit.severity == "critical"
    assert stopped_at is not None and crit.step <= stopped_at < crit.step + 5 < steps[-1]


def test_checkpoint_flag_for_a_plain_loop(tmp_path: Path) -> None:
    steps, h = collapse_then_recover()
    with Watch("ckpt", store=tmp_path, on_alert={"warning:collapse": "checkpoint"}) as w:
        _log(w, steps[:60], h[:60])
        w.live.flush()
        assert w.should_checkpoint
        w.checkpoint_saved(60, "ckpt/step-60")
        assert not w.should_checkpoint and not w.should_stop
    did = [d for e in _actions(tmp_path, "ckpt") for d in e["did"]]
    assert "set watch.should_checkpoint = True" in did and "checkpoint saved at step 60 to ckpt/step-60" in did


def test_a_hanging_webhook_never_blocks_logging(tmp_path: Path, webhook: Webhook) -> None:
    webhook.mode = "hang"
    steps, h = collapse_then_recover()
    opts = LiveOptions(notify_timeout_s=60, notify_retries=0, close_timeout_s=0.5)
    w = Watch("hang", store=tmp_path, notify=webhook.url(), live=opts)
    _log(w, steps[:60], h[:60])
    w.live.flush()
    assert webhook.wait_for(1)  # the first notification is stuck in the server...
    _log(w, steps[60:], h[60:])  # ...while training goes on: every call returns
    w.live.flush()
    assert webhook.hanging == 1 and w.live.notifier.delivery.sent == 0
    w.close()  # bounded by close_timeout_s; the run is finished all the same
    assert Store(tmp_path).run_info("hang").state == "finished"
    assert Store(tmp_path).series("hang", M.ENTROPY_MEAN)[0].size == steps.size
    webhook.release.set()
    # let the released request end inside this test: left to the server's shutdown, it fails and its thread's warning
    # lands in the next test's log capture
    w.live.notifier.delivery.close(30)


def test_server_errors_are_counted_and_the_url_never_leaks(
    tmp_path: Path, webhook: Webhook, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook.mode, webhook.status = "error", 500
    url = webhook.url("/services/T000/B000/SECRETSECRET")
    monkeypatch.setattr(sys, "argv", ["train.py", "--notify", url])
    monkeypatch.setenv("EW_TEST_HOOK", "slack+" + url)
    steps, h = collapse_then_recover()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        w = Watch("leak", store=tmp_path, config={"notify": url}, notify=[url, "env:EW_TEST_HOOK"], live=FAST)
        w.update_meta(extra={"hook": url})
        _log(w, steps, h)
        w.live.flush()
        text = " ".join([repr(w.live), repr(w.live.notifier), str(w.live.notifier.targets)])
        w.close()
    n_sent = len(w.live.notifier.sent)
    assert n_sent >= 2 and len(webhook.requests) == 2 * 2 * n_sent  # 2 targets, first try + 1 retry each
    assert w.live.notify_errors == 2 * n_sent
    _, errs = Store(tmp_path).series("leak", M.HOOKS_NOTIFY_ERRORS)
    assert errs[-1] == 2 * n_sent
    notes = [r.getMessage() for r in caplog.records if "notification" in r.getMessage()]
    assert len(notes) == 1 and "HTTP 500" in notes[0]  # warned once
    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and b"SECRETSECRET" in p.read_bytes()]
    assert leaks == []  # store segments, run.json, status files
    meta = Store(tmp_path).run_meta("leak")
    assert meta["argv"][2].endswith("/…") and meta["config"]["notify"].endswith("/…") and "extra" in meta
    everything = text + caplog.text + " ".join(str(c.message) for c in caught)
    assert "SECRETSECRET" not in everything and str(webhook.port) in text


def test_event_payloads_and_urls_in_argv_keep_no_secret(
    tmp_path: Path, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = webhook.url("/services/T000/B000/SECRETSECRET")
    monkeypatch.setattr(sys, "argv", ["train.py", "--data", "https://me:TOKENTOKEN@hub.example/d?sig=SIGSIG&n=1"])
    with Watch("quiet", store=tmp_path, notify=url, live=FAST) as w:
        w.event(3, "config_edit", note=f"posted to {url}", mirror="https://x.example/?api_key=KEYKEY")
        w.update_meta(source="https://me:TOKENTOKEN@hub.example/d")
    for secret in (b"SECRETSECRET", b"TOKENTOKEN", b"SIGSIG", b"KEYKEY"):
        assert [p.name for p in tmp_path.rglob("*") if p.is_file() and secret in p.read_bytes()] == []
    (event,) = Store(tmp_path).events("quiet")
    assert json.loads(event["payload"])["mirror"] == "https://x.example/?api_key=***"


def test_bad_specs_fail_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EW_NOT_SET", raising=False)
    for kw, exc in (
        ({"notify": "ftp://hooks.example/SECRET"}, NotifyConfigError),
        ({"notify": "env:EW_NOT_SET"}, NotifyConfigError),
        ({"on_alert": {"critical": "chekpoint"}}, ActionSpecError),
        ({"on_alert": {"critical:colapse": "stop"}}, ActionSpecError),
    ):
        with pytest.raises(exc) as e:
            Watch("bad", store=tmp_path, **kw)
        assert "\n" not in str(e.value) and "SECRET" not in str(e.value)
    assert not (tmp_path / "run=bad").exists()


def test_watch_without_live_options_runs_no_analysis(tmp_path: Path) -> None:
    with Watch("plain", store=tmp_path) as w:
        w.log(0, **{M.ENTROPY_MEAN: 1.0})
        assert w.live is None and not w.should_stop and not w.should_checkpoint


@pytest.mark.parametrize("crash_at", [45, 60])
def test_a_resumed_run_continues_its_live_analysis(tmp_path: Path, crash_at: int) -> None:
    """A process killed during a collapse and resumed from its checkpoint (step 40) under the same run: the new
    process's live analysis starts from the stored history, so it neither raises (nor sends, nor acts on) the earlier
    session's alerts of the steps the resume keeps (before 40) again nor takes H_ref at the fallen level ("H_ref
    0.065"); an alert of the replaced steps (40 on) is raised again when the new trajectory gives it, as the store
    reads the run; what both sessions raised live is what the whole run gives post hoc."""
    steps, h = collapse_then_recover()
    first = Watch("resumed", store=tmp_path, live=True, flush_secs=0.1)
    _log(first, steps[:crash_at], h[:crash_at])
    first.live.flush()
    raised = {a.key for a in first.live.alerts}
    first.close()  # the session's alerts table is what a killed process leaves once its last segment is written
    assert any(a.kind == "collapse" for a in first.live.alerts)
    with Watch("resumed", store=tmp_path, live=True, flush_secs=0.1) as w:
        assert w.earlier_last_step == crash_at - 1
        w.event(40, "resume", checkpoint="ckpt-40")
        for lo, hi in ((40, 70), (70, 200)):  # steps 40.. logged again, then on
            _log(w, steps[lo:hi], h[lo:hi])
            w.live.flush()
        again = {a.key for a in w.live.alerts}
    assert not {k for k in again & raised if int(k.split(":")[0]) < 40}  # what the resume kept: not said twice
    for a in w.live.alerts:
        assert a.evidence.get("h_ref", 1.0) > 0.5, a.message  # the run's H_ref (~1 nat), not the fallen level
    post = analyze(RunSeries.from_arrays("resumed", steps, h, reward=np.full(steps.size, 0.5))).alerts
    assert sorted(raised | again) == sorted(a.key for a in post)


def test_a_resume_leaves_out_the_stored_steps_it_replaced(tmp_path: Path) -> None:
    """The first process collapsed to step 99 and died; the run is resumed from its step-30 checkpoint and goes on
    healthy (1 nat) to step 59. The stored steps 30-99 are a trajectory the resume replaced: the live analysis reads
    0-29 stored and 30-59 observed (kept, it read 60-99 of the collapse after this session's newest point, and a
    collapse as the run's state), as the store's readers and the post-hoc analysis do."""
    steps, h = collapse_then_recover()
    first = Watch("again", store=tmp_path, flush_secs=0.1)
    _log(first, steps[:100], h[:100])
    first.close("failed")
    with Watch("again", store=tmp_path, live=True, flush_secs=0.1) as w:
        w.event(30, "resume", checkpoint="ckpt-30")
        _log(w, steps[30:60], np.ones(30))
        w.live.flush()
        live = w.live.analyzer.series()
        assert live is not None
        assert live.steps.tolist() == list(range(60)) and live.entropy[30:].tolist() == [1.0] * 30
        alerts = sorted(a.key for a in w.live.alerts)
    stored = RunSeries.from_reader(Store(tmp_path), "again")
    assert stored.steps.tolist() == list(range(60))
    np.testing.assert_allclose(stored.entropy, live.entropy)
    assert alerts == sorted(a.key for a in analyze(stored).alerts)
