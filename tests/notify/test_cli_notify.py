"""``entropy-watch watch --notify``: the monitor's analyses relayed to a local webhook (baseline, new alerts,
recovery once), and the option's errors (usage errors that never echo the URL)."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from entropy_watch import metrics as M
from entropy_watch.cli import app
from entropy_watch.monitor import Monitor
from entropy_watch.notify import Notifier
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
