"""``entropy-watch watch --notify``: the monitor's analyses relayed to a local webhook (baseline, new alerts,
recovery once), the option's errors (usage errors that never echo the URL), and what watch says and exits with when
a notification is not delivered."""

from __future__ import annotations

import functools
import threading

import numpy as np
from typer.testing import CliRunner

from entropy_watch import metrics as M
from entropy_watch.cli import app, watch_cmd
from entropy_watch.monitor import Monitor
from entropy_watch.notify import Delivery, Notifier
from entropy_watch.notify import notifier as notifier_module
from entropy_watch.notify.relay import MonitorRelay
from entropy_watch.store import RunWriter, Store

from .webhook import Webhook


def _entropy(n: int = 200, seed: int = 0) -> np.ndarray:
    """1 nat for 30 steps, an exponential fall to the floor, back at 1 nat from step 100."""
    t = np.arange(n)
    h = np.where(t < 30, 1.0, np.where(t < 100, np.maximum(np.exp(-(t - 30) / 12.0), 0.02), 1.0))
    return h * np.exp(np.random.default_rng(seed).normal(0, 0.05, n))


def _write(w: RunWriter, h: np.ndarray, lo: int, hi: int) -> None:
    steps = list(range(lo, hi))
    w.write("scalars", {"step": steps, "name": [M.ENTROPY_MEAN] * len(steps), "value": h[lo:hi].tolist(),
                        "wall_time": [0.0] * len(steps)})  # fmt: skip


def test_relay_sends_what_appears_after_the_baseline(tmp_path, webhook: Webhook) -> None:
    h = _entropy()
    w = RunWriter(tmp_path, "live-run")
    relay = MonitorRelay(Notifier.build(webhook.url(), backoff_s=0.01))
    monitor = Monitor(Store(tmp_path), ["live-run"], on_analysis=relay.on_analysis)
    _write(w, h, 0, 45)  # the collapse warning is already there when watch starts: the baseline
    monitor.poll()
    baseline = {a.step for a in monitor.state("live-run").result.alerts}
    for lo, hi in ((45, 70), (70, 130), (130, 200)):
        _write(w, h, lo, hi)
        monitor.poll()
    assert relay.close(10)
    bodies = webhook.bodies()
    crit = [a for a in monitor.state("live-run").result.alerts if a.severity == "critical" and a.kind == "collapse"]
    assert crit and crit[0].step not in baseline
    assert [(b["event"], b["kind"], b["step"]) for b in bodies] == [
        ("alert", "collapse", crit[0].step),  # the warning was in the baseline: the critical is news
        ("recovery", "collapse", bodies[-1]["step"]),
    ]
    assert bodies[-1]["step"] >= 100 and isinstance(bodies[0]["verdict"], dict)


def test_watch_notify_option(tmp_path, webhook: Webhook) -> None:
    w = RunWriter(tmp_path, "r")
    _write(w, _entropy(), 0, 40)
    runner = CliRunner()
    url = webhook.url("/services/T0/B0/SECRET123")
    ok = runner.invoke(app, ["--store", str(tmp_path), "watch", "r", "--once", "--notify", url])
    assert ok.exit_code == 0, ok.output
    assert f"notifying: json:http://127.0.0.1:{webhook.port}/…" in ok.output and "SECRET123" not in ok.output
    for bad in ("ftp://x/SECRET123", "env:EW_SURELY_NOT_SET_123"):
        r = runner.invoke(app, ["--store", str(tmp_path), "watch", "r", "--once", "--notify", bad])
        assert r.exit_code == 2 and "--notify" in r.output and "SECRET123" not in r.output


def test_an_app_url_mistake_names_where_it_came_from(tmp_path, webhook: Webhook, monkeypatch) -> None:
    """A bad --app-url was reported against --notify; a bad ENTROPY_WATCH_APP_URL too, as a usage error of an option
    the user did not give. Now: --app-url's usage error (exit 2), and the variable's one line (exit 1)."""
    w = RunWriter(tmp_path, "r")
    _write(w, _entropy(), 0, 40)
    args = ["--store", str(tmp_path), "watch", "r", "--once", "--notify", webhook.url("/h")]
    r = CliRunner().invoke(app, [*args, "--app-url", "127.0.0.1:8501"])
    assert r.exit_code == 2 and "--app-url" in r.output and "--notify" not in r.output, r.output
    monkeypatch.setenv(notifier_module.APP_URL_ENV, "127.0.0.1:8501")
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and notifier_module.APP_URL_ENV in str(r.exception), (r.exception, r.output)


def _grow_between_polls(monkeypatch, w: RunWriter, h: np.ndarray, *, stop_at: int | None = None) -> None:
    """``watch`` polls once with steps 0-44 (the baseline), then with the collapse and its recovery (sent); with
    ``stop_at``, that pass is Ctrl-C."""
    poll = Monitor.poll

    def grown(self: Monitor):
        if self.passes == 1:
            _write(w, h, 45, 200)
        if stop_at is not None and self.passes == stop_at:
            raise KeyboardInterrupt
        return poll(self)

    monkeypatch.setattr(Monitor, "poll", grown)


def _watch(tmp_path, *notify: str, once: bool = False):
    args = ["--store", str(tmp_path), "watch", "r", "--interval", "0.01"]
    args += ["--once"] if once else ["--iterations", "2"]
    for spec in notify:
        args += ["--notify", spec]
    return CliRunner().invoke(app, args)


def _run(tmp_path) -> tuple[RunWriter, np.ndarray]:
    w, h = RunWriter(tmp_path, "r"), _entropy()
    _write(w, h, 0, 45)
    return w, h


def test_watch_exits_1_when_a_notification_is_not_delivered(tmp_path, webhook: Webhook, monkeypatch) -> None:
    webhook.mode, webhook.status = "error", 404
    w, h = _run(tmp_path)
    _grow_between_polls(monkeypatch, w, h)
    slack, generic = f"slack+{webhook.url('/services/T0/B0/SECRET1?t=SECRET2')}", webhook.url("/hook/SECRET3")
    r = _watch(tmp_path, slack, generic)
    assert r.exit_code == 1, r.output
    label = f"http://127.0.0.1:{webhook.port}/…"
    lines = [x for x in r.stderr.splitlines() if "could not deliver" in x]
    assert sorted(lines) == sorted(  # once per destination, however many messages failed
        f"entropy-watch: could not deliver a notification to {kind}:{label} (HTTP 404, not retried): check the "
        "webhook URL"
        for kind in ("slack", "json")
    )
    sent = len(webhook.requests)
    assert sent >= 2 and r.stderr.splitlines()[-1] == f"error: {sent} of {sent} notifications could not be delivered"
    assert "SECRET" not in r.output and "training continues" not in r.output and "notify_errors" not in r.output


def test_watch_names_a_host_that_refuses(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(notifier_module, "Delivery", functools.partial(Delivery, timeout_s=2, backoff_s=0.01))
    w, h = _run(tmp_path)
    _grow_between_polls(monkeypatch, w, h)
    r = _watch(tmp_path, "http://127.0.0.1:9/hook/SECRET")  # discard port: nothing listens
    assert r.exit_code == 1, r.output
    (line,) = [x for x in r.stderr.splitlines() if "could not deliver" in x]
    assert line.startswith("entropy-watch: could not deliver a notification to json:http://127.0.0.1:9/… (")
    assert "after 4 attempts): check the URL's host and port, and the network" in line
    assert "could not be delivered" in r.stderr.splitlines()[-1] and "SECRET" not in r.output


def test_watch_exits_0_when_every_notification_is_delivered(tmp_path, webhook: Webhook, monkeypatch) -> None:
    w, h = _run(tmp_path)
    _grow_between_polls(monkeypatch, w, h)
    r = _watch(tmp_path, webhook.url())
    assert r.exit_code == 0, r.output
    assert [b["event"] for b in webhook.bodies()] == ["alert", "recovery"] and webhook.bodies()[0]["run"] == "r"
    assert "could not" not in r.output


def test_ctrl_c_reports_notifications_still_being_sent(tmp_path, webhook: Webhook, monkeypatch) -> None:
    webhook.mode = "hang"
    monkeypatch.setattr(watch_cmd, "STOP_WAIT_S", 0.3)
    w, h = _run(tmp_path)
    _grow_between_polls(monkeypatch, w, h, stop_at=2)
    args = ["--store", str(tmp_path), "watch", "r", "--interval", "0.01", "--notify", webhook.url()]
    r = CliRunner().invoke(app, args)
    webhook.release.set()
    for t in threading.enumerate():  # the released request ends inside this test
        if t.name == "entropy_watch-notify":
            t.join(10)
    assert r.exit_code == 130, r.output
    last = r.stderr.splitlines()[-1]
    assert last.startswith("error: 2 of 2 notifications could not be delivered (2 still being sent when watch")


def test_watch_once_says_it_sends_nothing(tmp_path, webhook: Webhook) -> None:
    _run(tmp_path)
    r = _watch(tmp_path, webhook.url(), once=True)
    assert r.exit_code == 0 and webhook.requests == []
    assert "note: --once sends no notifications" in r.stderr
