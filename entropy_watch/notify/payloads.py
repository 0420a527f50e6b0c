"""What a notification says, and its JSON for Slack, Discord and a generic webhook.

A :class:`Notice` is one message: an alert (new, or an escalation from warning to critical) or a recovery ("back
above the floor"). It carries what every channel shows — run, kind, severity, step, the one-line verdict, the ETA
with its interval, the first suggested action and a link to the run's app page when an app URL is configured — and,
for the generic JSON POST, the whole alert and verdict objects.

Generic JSON body (schema ``entropy_watch.notification/1``; documented in README "Act on an alert")::

    {"schema": "entropy_watch.notification/1", "event": "alert" | "escalation" | "recovery",
     "run": str, "kind": str, "severity": "info" | "warning" | "critical", "step": int, "summary": str,
     "eta": {"step": float | null, "lo": float | null, "hi": float | null, "interval": float, "target": str,
             "now": bool} | null,
     "action": str | null, "app_url": str | null, "key": str,
     "alert": {step, detector, kind, severity, message, evidence, actions, key} | null,
     "verdict": {...} | null, "sent_at": float (Unix seconds)}

A **digest** (``watch --notify``'s store-wide budget, :mod:`entropy_watch.notify.digest`) is one message for many
runs: ``"event": "digest"``, ``"run": null``, ``"runs": [str]`` (each run it covers, in order), ``"notices": [...]``
(every notice folded into it: the body above without ``schema``, ``alert`` and ``verdict``), ``severity`` the worst
alert's (``info``: recoveries only), ``kind`` the kinds joined by ``/``, ``step`` the smallest, ``eta`` null and
``action`` the command that lists every run's alerts.

Text taken from runs (messages, run names) is sent as data: Slack gets ``plain_text`` objects only and its mrkdwn
``text`` (the notification's fallback) with ``&``, ``<`` and ``>`` escaped, Discord gets its markdown characters
escaped and ``allowed_mentions`` off, so a run name cannot ping a channel or inject a link.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from entropy_watch.analysis.outlook import by_step_text, interval_range

SCHEMA = "entropy_watch.notification/1"
EVENTS: tuple[str, ...] = ("alert", "escalation", "recovery", "digest")
_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵", "ok": "🟢"}
_COLOR = {"critical": 0xD93025, "warning": 0xF29900, "info": 0x1A73E8, "ok": 0x188038}
_DISCORD_MD = re.compile(r"([\\*_~`|>#\[\]()@])")


@dataclass(frozen=True)
class Eta:
    """When the forecast says ``target`` is reached — the collapse floor ("10% of H_ref (0.047 nats)") or an
    explosion's critical line ("6× H_ref (0.84 nats)") — the median step and an interval (steps; inf = never); ``now``
    when the entropy the alert quotes is already past it (the summary says "now")."""

    step: float
    lo: float
    hi: float
    interval: float = 0.9
    target: str = "the floor"
    now: bool = False
    at: float | None = None  # the step the forecast was made at (a far late end reads "beyond step N"), if known

    def text(self) -> str:
        """``step 412 (90% interval 380–460)``, ``beyond step 12,000 (80% interval 120–never)`` for a median far
        past the step it was forecast at, or ``now``; the step and the interval as the verdict's sentence writes them
        (:func:`~entropy_watch.analysis.outlook.by_step_text`,
        :func:`~entropy_watch.analysis.outlook.interval_range`)."""
        if self.now:
            return "now"
        lo, hi = (x if math.isfinite(x) else None for x in (self.lo, self.hi))
        span = interval_range(self.step, lo, hi, self.at)
        when = by_step_text(self.step, self.at, by="") if math.isfinite(self.step) else "step never"
        return f"{when} ({100 * self.interval:.0f}% interval {span})"

    def to_dict(self) -> dict[str, Any]:
        return {"step": _num(self.step), "lo": _num(self.lo), "hi": _num(self.hi), "interval": self.interval,
                "target": self.target, "now": self.now}  # fmt: skip


@dataclass(frozen=True)
class Notice:
    """One notification. ``event``: alert | escalation | recovery | digest; ``key`` identifies the alert (Alert.key).
    A digest (:mod:`entropy_watch.notify.digest`) has no ``run`` and holds the notices it folds in ``folded``."""

    event: str
    run: str
    kind: str
    severity: str
    step: int
    summary: str
    key: str = ""
    detector: str = ""
    eta: Eta | None = None
    action: str | None = None
    app_link: str | None = None
    alert: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    sent_at: float = field(default_factory=time.time)
    folded: tuple[Notice, ...] = ()

    @property
    def title(self) -> str:
        """``CRITICAL collapse · grpo-s0`` (``recovered: collapse · grpo-s0`` for a recovery; ``CRITICAL collapse ·
        61 runs`` for a digest)."""
        if self.event == "digest":
            n = len({x.run for x in self.folded})
            alerts = any(x.event != "recovery" for x in self.folded)
            what = f"{self.severity.upper()} {self.kind}" if alerts else f"recovered: {self.kind}"
            return f"{what} · {n} run{'' if n == 1 else 's'}"
        what = f"recovered: {self.kind}" if self.event == "recovery" else f"{self.severity.upper()} {self.kind}"
        return f"{what} · {self.run}"

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) pairs every channel shows below the summary."""
        if self.event == "digest":
            return [("Runs", str(len({x.run for x in self.folded}))), ("See", self.action or "")]
        out = [("Step", str(self.step))]
        if self.eta is not None:
            out.append((f"ETA to {self.eta.target}", self.eta.text()))
        if self.action:
            out.append(("Try", self.action))
        return out


def app_link(app_url: str | None, run: str) -> str | None:
    """The app page of ``run`` (``<app_url>/run?run=<run>``), or None without an app URL."""
    if not app_url:
        return None
    return f"{app_url.rstrip('/')}/run?run={quote(run, safe='')}"


def to_json(n: Notice) -> dict[str, Any]:
    """The generic JSON body (schema in the module docstring)."""
    if n.event == "digest":  # the runs and every notice folded, each without its alert and verdict objects
        folded = [{k: v for k, v in to_json(x).items() if k not in ("schema", "alert", "verdict")} for x in n.folded]
        runs = list(dict.fromkeys(x.run for x in n.folded))
        return {"schema": SCHEMA, "event": "digest", "run": None, "runs": runs, "kind": n.kind,
                "severity": n.severity, "step": n.step, "summary": n.summary, "eta": None, "action": n.action,
                "app_url": n.app_link, "key": n.key, "alert": None, "verdict": None, "notices": folded,
                "sent_at": n.sent_at}  # fmt: skip
    return {
        "schema": SCHEMA,
        "event": n.event,
        "run": n.run,
        "kind": n.kind,
        "severity": n.severity,
        "step": n.step,
        "summary": n.summary,
        "eta": n.eta.to_dict() if n.eta is not None else None,
        "action": n.action,
        "app_url": n.app_link,
        "key": n.key,
        "alert": n.alert,
        "verdict": n.verdict,
        "sent_at": n.sent_at,
    }


def to_slack(n: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` (the push notification) and Block Kit blocks, plain text only."""
    icon = _ICON[_tone(n)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"{icon} {n.title}", 150)},
        {"type": "section", "text": _plain(n.summary, 3000)},
        {"type": "section", "fields": [_plain(f"{k}: {v}", 2000) for k, v in n.lines()]},
    ]
    if n.app_link:
        button = {
            "type": "button",
            "text": _plain("Open app" if n.event == "digest" else "Open run", 75),
            "url": n.app_link[:3000],
        }
        blocks.append({"type": "actions", "elements": [button]})
    # `text` (the push notification, and the message where blocks do not show) is mrkdwn: Slack parses `<!channel>`,
    # `<http://x|click>` and `<@U…>` in it, so its control characters are escaped as Slack's formatting docs ask
    return {"text": _slack_escape(_clip(f"{icon} {n.title}: {n.summary}", 3000)), "blocks": blocks}


def to_discord(n: Notice) -> dict[str, Any]:
    """A Discord webhook body: one embed (title, description, fields, colour), mentions disabled."""
    embed: dict[str, Any] = {
        "title": _clip(n.title, 256),
        "description": _clip(_md(n.summary), 4096),
        "color": _COLOR[_tone(n)],
        "fields": [{"name": k, "value": _clip(_md(v), 1024), "inline": k == "Step"} for k, v in n.lines()],
        "footer": {"text": "entropy_watch"},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(n.sent_at)),
    }
    if n.app_link:
        embed["url"] = n.app_link
    return {"username": "entropy_watch", "embeds": [embed], "allowed_mentions": {"parse": []}}


RENDERERS = {"slack": to_slack, "discord": to_discord, "json": to_json}


def render(kind: str, n: Notice) -> bytes:
    """The UTF-8 JSON body for a target of ``kind`` (slack | discord | json)."""
    return json.dumps(RENDERERS[kind](n), ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")


def _tone(n: Notice) -> str:
    """critical | warning | info | ok (a recovery, or a digest of recoveries only)."""
    if n.event == "recovery" or (n.event == "digest" and all(x.event == "recovery" for x in n.folded)):
        return "ok"
    return n.severity


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _clip(text, limit) or " ", "emoji": True}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md(text: str) -> str:
    return _DISCORD_MD.sub(r"\\\1", text)


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
