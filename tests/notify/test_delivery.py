"""Delivery against a local webhook: bodies on the wire, retries, failures counted and warned once, hangs, caps."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from entropy_watch.analysis import Alert
from entropy_watch.notify import Delivery, Notifier, NotifyPolicy, Undelivered, parse_targets

from .webhook import Webhook

ALERT = Alert(120, "guard.floor", "collapse", "critical", "entropy at the floor for 5 steps")


def _notifier(hook: Webhook, **kw) -> Notifier:
    specs = [f"slack+{hook.url('/slack/SECRET')}", f"discord+{hook.url('/discord/SECRET')}", hook.url("/json/SECRET")]
    kw.setdefault("backoff_s", 0.01)
    return Notifier.build(specs, policy=NotifyPolicy(cooldown_s=0), **kw)


def test_each_kind_receives_its_body(webhook: Webhook) -> None:
    n = _notifier(webhook)
    assert n.alert("run-1", ALERT) is not None
    assert n.close(10)
    assert n.errors == 0 and n.delivery.sent == 3
    (slack,) = webhook.bodies("/slack/SECRET")
    (discord,) = webhook.bodies("/discord/SECRET")
    (generic,) = webhook.bodies("/json/SECRET")
    assert "text" in slack and slack["blocks"][0]["type"] == "header"
    assert discord["embeds"][0]["title"] == "CRITICAL collapse · run-1"
    assert generic["alert"]["detector"] == "guard.floor" and generic["step"] == 120
    headers = webhook.requests[0][1]
    assert headers["Content-Type"].startswith("application/json") and headers["User-Agent"].startswith("entropy-")


def test_server_errors_are_retried_then_counted_and_warned_once(webhook: Webhook, caplog) -> None:
    webhook.mode, webhook.status = "error", 500
    seen: list[int] = []
    n = Notifier.build(webhook.url(), retries=2, backoff_s=0.01, on_error=seen.append)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        n.alert("r", ALERT)
        n.alert("r", Alert(130, "guard.explosion", "explosion", "critical", "x"))
        assert n.close(10)
    assert len(webhook.requests) == 2 * 3  # first try + 2 retries, for each message
    assert n.errors == 2 and seen == [1, 2]
    warnings = [r.getMessage() for r in caplog.records if "notification" in r.getMessage()]
    assert len(warnings) == 1
    assert "HTTP 500 after 3 attempts" in warnings[0] and "hooks/notify_errors" in warnings[0]
    assert "SECRET" not in caplog.text and str(webhook.port) in warnings[0]  # kind and host, never the path


def test_client_errors_are_not_retried(webhook: Webhook) -> None:
    webhook.mode, webhook.status = "error", 404
    n = Notifier.build(webhook.url(), retries=3, backoff_s=0.01)
    n.alert("r", ALERT)
    n.close(10)
    assert len(webhook.requests) == 1 and n.errors == 1


def test_429_waits_for_retry_after(webhook: Webhook) -> None:
    webhook.mode, webhook.status, webhook.retry_after = "error", 429, "0.2"
    d = Delivery(retries=1, backoff_s=0.0, max_backoff_s=5)
    (t,) = parse_targets(webhook.url())
    d.submit(t, b"{}")
    d.close(10)
    assert len(webhook.requests) == 2 and d.errors == 1


def test_a_hanging_webhook_never_blocks_the_caller(webhook: Webhook) -> None:
    webhook.mode = "hang"
    d = Delivery(timeout_s=30, retries=0, max_queue=4)
    (t,) = parse_targets(webhook.url())
    for _ in range(20):  # returns at once each time, though the first POST is stuck in the server
        d.submit(t, b"{}")
    assert webhook.wait_for(1)
    assert webhook.hanging == 1 and d.sent == 0
    assert d.errors >= 20 - 4 - 1  # beyond the bounded queue (and the one in flight) messages are dropped, counted
    assert d.close(0.2) is False  # closing does not wait past its bound either
    webhook.release.set()


def test_timeout_counts_as_a_failure(webhook: Webhook) -> None:
    webhook.mode = "hang"
    d = Delivery(timeout_s=0.3, retries=1, backoff_s=0.01)
    (t,) = parse_targets(webhook.url())
    t0 = time.monotonic()
    d.submit(t, b"{}")
    assert d.close(10)
    assert d.errors == 1 and len(webhook.requests) == 1  # sent in full, no answer: never posted twice
    assert time.monotonic() - t0 < 10


def test_unreachable_host_is_counted(caplog) -> None:
    d = Delivery(timeout_s=1, retries=0)
    (t,) = parse_targets("http://127.0.0.1:9/SECRET")  # discard port: nothing listens
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        d.submit(t, b"{}")
        d.close(10)
    assert d.errors == 1 and "SECRET" not in caplog.text


@pytest.mark.parametrize("closed_first", [True, False])
def test_submit_after_close_is_refused(webhook: Webhook, closed_first: bool) -> None:
    d = Delivery()
    (t,) = parse_targets(webhook.url())
    if closed_first:
        d.close()
        assert d.submit(t, b"{}") is False
    else:
        assert d.submit(t, b"{}") is True
        assert d.close(10)


def test_the_training_wording_is_the_default(webhook: Webhook, caplog) -> None:
    webhook.mode, webhook.status = "error", 404
    n = Notifier.build(webhook.url(), backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        n.alert("r", ALERT)
        assert n.close(10)
    (warning,) = [r.getMessage() for r in caplog.records if "notification" in r.getMessage()]
    assert warning == (
        f"entropy_watch: a notification to json:http://127.0.0.1:{webhook.port}/… was not delivered: HTTP 404, not "
        "retried: check the webhook URL; training continues, later failures are counted as hooks/notify_errors"
    )


def test_on_failure_says_it_instead(webhook: Webhook, caplog) -> None:
    webhook.mode, webhook.status = "error", 500
    said: list[Undelivered] = []
    n = Notifier.build(webhook.url(), retries=1, backoff_s=0.01, on_failure=said.append)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        n.alert("r", ALERT)
        n.alert("r", Alert(130, "guard.explosion", "explosion", "critical", "x"))
        assert n.close(10)
    label = f"json:http://127.0.0.1:{webhook.port}/…"
    assert said == [Undelivered(label, "HTTP 500 after 2 attempts", "", 1), Undelivered(label, said[1].reason, "", 2)]
    assert "notification" not in caplog.text  # the creator's wording replaces the training process' warning


def test_close_without_a_bound_waits_for_the_answer(webhook: Webhook) -> None:
    webhook.mode = "hang"
    d = Delivery(timeout_s=30, retries=0)
    (t,) = parse_targets(webhook.url())
    d.submit(t, b"{}")
    assert webhook.wait_for(1)
    threading.Timer(0.5, webhook.release.set).start()  # the answer comes later; close(None) waits for it
    assert d.close(None) and d.sent == 1 and d.abandoned == 0
