"""Payload shapes: what Slack, Discord and a generic JSON webhook receive for an alert and for a recovery."""

from __future__ import annotations

import json

import numpy as np

from entropy_watch.analysis import Alert, Analyzer, RunSeries
from entropy_watch.notify import SCHEMA, Eta, notice_for, render
from entropy_watch.notify.notifier import recovery_notice

RUN = "grpo <@everyone> *s0*"  # run names are data: no pings, no markup


def _forecast_alert() -> Alert:
    return Alert(
        step=412,
        detector="forecast.eta",
        kind="collapse",
        severity="critical",
        message="entropy fell from 0.91 to 0.20 nats since step 300 (−78%); at this rate it reaches the floor",
        evidence={"eta_step_median": 460.0, "eta_step_lo": 442.0, "eta_step_hi": None, "eta_interval": 0.9},
    )


def test_generic_json_carries_the_alert_object() -> None:
    a = _forecast_alert()
    n = notice_for(RUN, a, verdict={"health": "critical", "headline": "x", "nan": float("nan")}, app_url="http://h:1/")
    body = json.loads(render("json", n))
    assert body["schema"] == SCHEMA and body["event"] == "alert"
    assert (body["run"], body["kind"], body["severity"], body["step"]) == (RUN, "collapse", "critical", 412)
    assert body["summary"] == a.message
    assert body["eta"] == {"step": 460.0, "lo": 442.0, "hi": None, "interval": 0.9, "target": "the floor", "now": False}
    assert body["action"] == a.actions[0]
    assert body["app_url"] == "http://h:1/run?run=grpo%20%3C%40everyone%3E%20%2As0%2A"
    assert body["alert"]["step"] == 412 and body["alert"]["actions"] == a.actions
    assert body["key"] == body["alert"]["key"] and "412" in body["key"]
    assert body["verdict"]["health"] == "critical" and body["verdict"]["nan"] is None


def test_slack_is_plain_text_blocks() -> None:
    body = json.loads(render("slack", notice_for(RUN, _forecast_alert(), app_url="http://h:1")))
    assert "CRITICAL collapse" in body["text"] and "grpo &lt;@everyone&gt; *s0*" in body["text"]  # mrkdwn: escaped
    texts = []
    for block in body["blocks"]:
        for t in [block.get("text"), *block.get("fields", []), *(e.get("text") for e in block.get("elements", []))]:
            if t is not None:
                assert t["type"] == "plain_text"  # never mrkdwn: run text cannot format or link
                texts.append(t["text"])
    joined = "\n".join(texts)
    assert "Step: 412" in joined and "ETA to the floor: step 460 (90% interval 442–never)" in joined
    assert "Try: raise the upper clip bound" in joined
    assert body["blocks"][-1]["elements"][0]["url"].startswith("http://h:1/run?run=")


def test_discord_embed_escapes_markdown_and_disables_mentions() -> None:
    body = json.loads(render("discord", notice_for(RUN, _forecast_alert())))
    assert body["allowed_mentions"] == {"parse": []}
    (embed,) = body["embeds"]
    assert embed["title"].startswith("CRITICAL collapse · ")
    assert embed["color"] == 0xD93025
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Step"] == "412" and "interval" in fields["ETA to the floor"]
    assert "url" not in embed  # no app URL configured, no link
    long = notice_for("r", Alert(1, "d", "cliff", "warning", "m" * 5000))
    assert len(json.loads(render("discord", long))["embeds"][0]["description"]) == 4096


def test_recovery_message() -> None:
    n = recovery_notice("r1", "collapse", 520, "entropy is back above the floor at step 520")
    for kind in ("slack", "discord", "json"):
        body = render(kind, n).decode()
        assert "recovered: collapse" in body or '"event": "recovery"' in body
    assert json.loads(render("json", n))["eta"] is None


def test_the_verdict_gives_summary_and_eta_when_it_names_the_alert() -> None:
    a = _forecast_alert()
    verdict = {
        "health": "critical",
        "kind": "collapse",
        "headline": "critical collapse: entropy 0.2 nats (22% of H_ref 0.91); at this rate ...",
        "forecast": {"eta_step": 455.0, "eta_lo_step": 440.0, "eta_hi_step": 470.0, "interval": 0.8},
    }
    n = notice_for("r", a, verdict=verdict)
    assert n.summary == verdict["headline"] and n.eta.text() == "step 455 (80% interval 440–470)"
    other = notice_for("r", Alert(400, "cliff.cusum", "cliff", "warning", "entropy jumped"), verdict=verdict)
    assert other.summary == "entropy jumped" and other.eta is None and other.verdict == verdict


def test_an_explosion_notice_gives_the_eta_to_its_critical_line_and_now_when_past_it() -> None:
    """An explosion's ETA is to its critical line, never "ETA to floor", and reads "now" where the summary does (the
    rasbt ch07 7_3 climb logged every 12 steps: a warning at step 252 quoting 16.0× H_ref read "ETA to floor: step
    252 (80% interval 252–314)", and without the verdict "step 252 (90% interval never–never)")."""
    t = np.arange(40, dtype=np.float64)
    h = 0.14 * np.exp(np.where(t < 24, 0.0, 0.35 * (t - 23)) + 0.05 * np.sin(7 * t))  # calm, then a climb
    s = RunSeries.from_arrays("r", t.astype(int) * 12, h)
    live = Analyzer()
    alerts = [a for a in live.analyze(s).alerts if a.kind == "explosion" and a.severity != "info"]
    assert alerts
    nows = 0
    for a in alerts:
        v = live.verdict(s, at_step=a.step)
        assert v.kind == "explosion"
        for n in (notice_for("r", a, verdict=v), notice_for("r", a)):
            assert not any(label == "ETA to floor" or label == "ETA to the floor" for label, _ in n.lines())
            if n.eta is not None:
                assert "H_ref" in n.eta.target and "never–never" not in n.eta.text()
                nows += n.eta.text() == "now"
        same = notice_for("r", a, verdict=v)
        if v.forecast is not None:
            assert same.eta is not None and same.eta.target == v.forecast.target_label
            assert (same.eta.text() == "now") == (" now" in v.forecast.text)
    assert nows  # the case this guards: a warning or critical past the line


def test_the_eta_line_writes_its_interval_as_the_verdict_does() -> None:
    """One rendering (``outlook.interval_range``): thousands separated, an open end "never", and a late end past
    FAR_AHEAD times the step the forecast was made at "beyond step N" (without that step, the figure as it is)."""
    from entropy_watch.analysis.outlook import interval_range

    assert interval_range(412.0, 380.0, 460.0, 300) == "380–460"
    assert interval_range(5108.0, 3477.0, None, 1380) == "3,477–never"
    assert interval_range(5108.0, 3477.0, 289_555_561.0, 1380) == "3,477 to beyond step 138,000"
    assert interval_range(5108.0, 3477.0, 289_555_561.0, None) == "3,477–289,555,561"
    assert Eta(5108.0, 3477.0, 289_555_561.0, 0.8, at=1380).text() == (
        "step 5,108 (80% interval 3,477 to beyond step 138,000)"
    )
    assert Eta(460.0, 442.0, float("inf"), 0.9).text() == "step 460 (90% interval 442–never)"
