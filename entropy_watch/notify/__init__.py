"""entropy_watch.notify: tell someone when a run needs attention — Slack, Discord or any JSON webhook.

targets.py (URL kinds, ``env:`` specs, redaction), payloads.py (what a message says, per channel), policy.py
(minimum severity, cooldown, escalation, recovery once, hourly cap), delivery.py (background POSTs with timeout,
retries and backoff), digest.py (watch's store-wide budget: past a few runs, one digest), notifier.py (the facade),
follow.py (new alerts and recoveries between analyses), relay.py
(``entropy-watch watch --notify``).
Core tier: standard library and numpy only, so the CLI sends notifications without torch.
"""

from __future__ import annotations

from entropy_watch.notify.delivery import Delivery, Undelivered
from entropy_watch.notify.digest import Digest, DigestPolicy
from entropy_watch.notify.follow import Changes, Follower, Recovery
from entropy_watch.notify.notifier import APP_URL_ENV, Notifier, notice_for
from entropy_watch.notify.payloads import SCHEMA, Eta, Notice, render
from entropy_watch.notify.policy import Gate, NotifyPolicy
from entropy_watch.notify.targets import DEFAULT_ENV, NotifyConfigError, Target, parse_targets, redact, scrub

__all__ = [
    "APP_URL_ENV",
    "DEFAULT_ENV",
    "SCHEMA",
    "Changes",
    "Delivery",
    "Digest",
    "DigestPolicy",
    "Eta",
    "Follower",
    "Gate",
    "Notice",
    "Notifier",
    "NotifyConfigError",
    "NotifyPolicy",
    "Recovery",
    "Target",
    "Undelivered",
    "notice_for",
    "parse_targets",
    "redact",
    "render",
    "scrub",
]
