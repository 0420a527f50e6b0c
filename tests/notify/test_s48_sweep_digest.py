"""A sweep's notifications do not flood a channel: ``watch --notify`` notifies a few runs one by one and folds the
rest into digests (notify/digest.py) — criticals and recoveries included, never dropped, markup escaped, no secret."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from entropy_watch.cli import app
from entropy_watch.monitor import Monitor
from entropy_watch.notify import Notifier, NotifyConfigError
from entropy_watch.notify.digest import DigestPolicy, digest_notice
from entropy_watch.notify.payloads import Notice, render
from entropy_watch.store import RunWriter

from .test_cli_notify import _entropy, _write
from .webhook import Webhook


def _notice(run: str, severity: str = "critical", event: str = "alert", step: int = 50) -> Notice:
    return Notice(event, run, "collapse", severity if event != "recovery" else "info", step, f"{run} {event}",
                  key=f"{step}:collapse.decline:collapse:{severity}")  # fmt: skip


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class _Timers:
    """Timers the test fires by hand: (delay, fn) per schedule."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, object]] = []

    def __call__(self, delay: float, fn) -> None:
        self.calls.append((delay, fn))

    def fire(self) -> None:
        calls, self.calls = self.calls, []
        for _, fn in calls:
            fn()  # type: ignore[operator]


def _notifier(webhook: Webhook, policy: DigestPolicy, clock: _Clock, timers: _Timers) -> Notifier:
    n = Notifier.build(webhook.url("/hook/T0/SECRET-TOKEN"), backoff_s=0.01)
    assert n is not None
    n.use_digest(policy, clock=clock, timer=timers)
    return n


def test_a_sweep_of_collapsing_runs_is_a_few_messages(tmp_path, webhook: Webhook, monkeypatch) -> None:
    """6 runs collapse (critical) and recover after watch's first poll: 12 messages before; now the first 3 runs'
    own alert and recovery, and one digest that holds the other 3 runs' alerts and recoveries."""
    runs = []
    for i in range(6):
        w, h = RunWriter(tmp_path, f"sweep-lr{i}"), _entropy(seed=i)
        _write(w, h, 0, 45)
        runs.append((w, h))
    poll = Monitor.poll

    def grown(self: Monitor):
        if self.passes == 1:
            for w, h in runs:
                _write(w, h, 45, 200)
        return poll(self)

    monkeypatch.setattr(Monitor, "poll", grown)
    args = ["--store", str(tmp_path), "watch", "--interval", "0.01", "--iterations", "2"]
    r = CliRunner().invoke(app, [*args, "--notify", webhook.url("/hook/T0/SECRET-TOKEN")])
    assert r.exit_code == 0, r.output
    bodies = webhook.bodies()
    own = [(b["event"], b["run"]) for b in bodies if b["event"] != "digest"]
    assert sorted(own) == sorted((e, f"sweep-lr{i}") for e in ("alert", "recovery") for i in range(3)), own
    (digest,) = [b for b in bodies if b["event"] == "digest"]
    assert len(bodies) == 7 and bodies[-1] is digest  # sent when watch stopped, after the runs' own messages
    assert digest["runs"] == ["sweep-lr3", "sweep-lr4", "sweep-lr5"] and digest["severity"] == "critical"
    events = sorted((n["run"], n["event"], n["severity"]) for n in digest["notices"])
    assert events == sorted((f"sweep-lr{i}", e, s) for i in (3, 4, 5) for e, s in (("alert", "critical"),
                                                                                   ("recovery", "info")))  # fmt: skip
    assert digest["summary"].startswith("3 more runs warn of a critical collapse: sweep-lr3, sweep-lr4, sweep-lr5")
    assert "all have since recovered" in digest["summary"] and "entropy-watch alerts" in digest["summary"]
    assert "SECRET-TOKEN" not in str(bodies) and "SECRET-TOKEN" not in r.output


def test_criticals_and_recoveries_are_folded_never_dropped(webhook: Webhook) -> None:
    clock, timers = _Clock(), _Timers()
    n = _notifier(webhook, DigestPolicy(max_runs=1, gather_s=60, every_s=600), clock, timers)
    n.send(_notice("a", "warning"))  # a: its own messages from now on
    for run in ("b", "c"):
        assert n.send(_notice(run, "warning")) is not None  # admitted: said in the digest, not dropped
    n.send(_notice("b", "critical", step=60))  # an escalation of a folded run: folded too
    n.send(_notice("a", "critical", step=61))  # a's own escalation: its own message
    assert [d for d, _ in timers.calls] == [60.0]  # one digest scheduled, gather_s after the first folded notice
    assert webhook.wait_for(2) and [b["event"] for b in webhook.bodies()] == ["alert", "escalation"]
    clock.t += 60
    timers.fire()
    assert webhook.wait_for(3)
    d = webhook.bodies()[-1]
    assert d["event"] == "digest" and d["runs"] == ["b", "c"] and d["severity"] == "critical"
    assert [(x["run"], x["event"], x["severity"]) for x in d["notices"]] == [
        ("b", "alert", "warning"), ("c", "alert", "warning"), ("b", "escalation", "critical")]  # fmt: skip
    assert d["summary"].startswith("2 more runs warn of collapse (1 critical): b (critical), c.")
    # the recoveries of folded runs: folded the same way, at most one digest per every_s, the rest when closing
    clock.t += 10
    n.send(_notice("b", event="recovery", step=120))
    n.send(_notice("c", event="recovery", step=121))
    assert [round(d) for d, _ in timers.calls] == [590]  # every_s after the last digest, not gather_s
    assert n.close(10) and webhook.wait_for(4)
    last = webhook.bodies()[-1]
    assert last["event"] == "digest" and last["severity"] == "info" and last["runs"] == ["b", "c"]
    assert last["summary"].startswith("2 more runs recovered: b, c.")
    assert n.digest is not None and n.digest.folded == 5 and n.digest.digests == 2 and len(webhook.bodies()) == 4


def test_a_run_s_place_frees_after_the_window(webhook: Webhook) -> None:
    clock, timers = _Clock(), _Timers()
    n = _notifier(webhook, DigestPolicy(max_runs=1, window_s=3600), clock, timers)
    n.send(_notice("a"))
    assert n.digest is not None and n.digest.fold(_notice("b")) is True
    clock.t += 3600  # a said nothing for an hour: the next run gets its own message
    assert n.digest.fold(_notice("b")) is False and n.digest.fold(_notice("a")) is True


def test_the_digest_goes_out_on_its_own_timer(webhook: Webhook) -> None:
    """No further analysis comes (the sweep ended) and watch keeps running: the digest still goes out."""
    n = Notifier.build(webhook.url("/h"), backoff_s=0.01, digest=DigestPolicy(max_runs=0, gather_s=0.05))
    assert n is not None
    n.send(_notice("a"))
    assert webhook.wait_for(1, timeout=10) and webhook.bodies()[0]["event"] == "digest"
    assert webhook.bodies()[0]["summary"].startswith("1 run warns of a critical collapse: a.")
    n.close(5)


def test_run_names_in_a_digest_are_data(webhook: Webhook) -> None:
    """A run name cannot ping a channel or inject a link from a digest either."""
    bad = "<!channel> *x* [y](http://evil) @everyone"
    folded = [_notice(bad), _notice("ok", event="recovery")]
    d = digest_notice(folded, others=2, app_url="http://127.0.0.1:8501/")
    slack = json.loads(render("slack", d))
    assert "<!channel>" not in slack["text"] and "&lt;!channel&gt;" in slack["text"]  # mrkdwn: escaped
    assert all(b["text"]["type"] == "plain_text" for b in slack["blocks"] if "text" in b)  # plain text: as is
    assert slack["blocks"][-1]["elements"][0]["text"]["text"] == "Open app"
    discord = render("discord", d).decode()
    assert "[y](http" not in discord and '"allowed_mentions": {"parse": []}' in discord
    assert d.app_link == "http://127.0.0.1:8501" and '"runs": ["<!channel>' in render("json", d).decode()


def test_a_training_process_notifier_sends_each_message_as_before(webhook: Webhook) -> None:
    """``Watch(..., notify=...)``: one run per process, no digest (the budget is ``watch --notify``'s)."""
    n = Notifier.build(webhook.url("/h"), backoff_s=0.01)
    assert n is not None and n.digest is None
    for run in "abcde":
        n.send(_notice(run))
    assert n.close(10) and [b["run"] for b in webhook.bodies()] == list("abcde")


def test_the_policy_says_what_to_change() -> None:
    for bad in ({"max_runs": -1}, {"gather_s": float("nan")}, {"every_s": -1.0}):
        with pytest.raises(NotifyConfigError, match=next(iter(bad))):
            DigestPolicy(**bad)  # type: ignore[arg-type]


def test_a_timer_that_fires_early_waits_for_the_next_digest(webhook: Webhook) -> None:
    """A digest flushed in between (``flush``) moves the next one's due time: the old timer reschedules itself."""
    clock, timers = _Clock(), _Timers()
    n = _notifier(webhook, DigestPolicy(max_runs=0, gather_s=60, every_s=600), clock, timers)
    n.send(_notice("a"))
    assert n.digest is not None and n.digest.flush() is not None  # the first digest, by hand
    n.send(_notice("b"))  # the timer from "a" is still pending: no second one
    assert len(timers.calls) == 1
    clock.t += 60
    timers.fire()  # due only every_s after the first digest: rescheduled, nothing sent
    assert [round(d) for d, _ in timers.calls] == [540] and n.digest.digests == 1
    clock.t += 540
    timers.fire()
    assert n.digest.digests == 2 and n.close(10) and [b["runs"] for b in webhook.bodies()] == [["a"], ["b"]]
