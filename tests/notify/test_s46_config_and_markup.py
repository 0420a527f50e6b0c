"""Config mistakes that would leak or expose a webhook's token, and run text that would ping a Slack channel."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from entropy_watch.analysis import Alert
from entropy_watch.cli import app
from entropy_watch.notify import NotifyConfigError, notice_for, parse_targets, render

SLACK = "https://hooks.slack.com/services/T000/B000/XOXSECRET"
DISCORD = "https://discord.com/api/webhooks/123/XOXSECRET"


@pytest.mark.parametrize(
    "spec",
    [
        f"env:{SLACK}",
        "env:hooks.slack.com/services/T000/B000/XOXSECRET",
        f"env: {DISCORD}",
        "env:xoxb-1234567890-1234567890123-XOXSECRETabcdefghij",
    ],
)
def test_an_env_spec_holding_the_url_itself_never_prints_it(spec: str) -> None:
    """``--notify env:$EW_SLACK`` (the shell expands the variable) quoted the whole URL in its error."""
    with pytest.raises(NotifyConfigError) as e:
        parse_targets(spec, {})
    msg = str(e.value)
    assert "XOXSECRET" not in msg and "not an environment variable name" in msg and "\n" not in msg


def test_the_cli_refuses_it_with_exit_2_and_no_secret(tmp_path) -> None:
    r = CliRunner().invoke(app, ["--store", str(tmp_path), "watch", "--iterations", "1", "--notify", f"env:{SLACK}"])
    assert r.exit_code == 2 and "--notify" in r.output and "XOXSECRET" not in r.output


@pytest.mark.parametrize("url", [SLACK, DISCORD, "https://discordapp.com/api/webhooks/1/XOXSECRET"])
def test_slack_and_discord_webhooks_need_https(url: str) -> None:
    """``http://hooks.slack.com/...`` was accepted: the token went over the network unencrypted."""
    plain = "http://" + url.removeprefix("https://")
    for spec in (plain, f"slack+{plain}", plain.replace("http://", "HTTP://")):
        with pytest.raises(NotifyConfigError) as e:
            parse_targets(spec, {})
        assert "https://" in str(e.value) and "XOXSECRET" not in str(e.value)
    assert len(parse_targets(url, {})) == 1
    assert len(parse_targets("slack+http://127.0.0.1:9/hook", {})) == 1  # a local relay may be plain http


def test_slack_fallback_text_cannot_ping_or_link() -> None:
    """Slack parses the top-level ``text`` (the push notification) as mrkdwn: a run named ``<!channel>`` pinged the
    channel from there, and ``<http://x|click>`` became a link. Slack's formatting docs: escape &, < and >."""
    run = "<!channel> <http://evil.example|click> & <@U123>"
    alert = Alert(7, "guard.floor", "collapse", "critical", "entropy at the floor <!here>")
    body = json.loads(render("slack", notice_for(run, alert)))
    text = body["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt; &lt;http://evil.example|click&gt; &amp; &lt;@U123&gt;" in text
    assert "&lt;!here&gt;" in text
    header = body["blocks"][0]["text"]
    assert header["type"] == "plain_text" and run in header["text"]  # plain_text is shown as it is, never parsed


@pytest.mark.parametrize("junk", ["\u200b", "\u201d", "é"])
def test_a_url_pasted_with_an_invisible_or_smart_character_is_refused_when_given(junk: str) -> None:
    """A zero-width space or a closing smart quote copied with the URL was accepted, then every message failed at
    send time as "unexpected UnicodeEncodeError" (http.client sends only ASCII)."""
    with pytest.raises(NotifyConfigError) as e:
        parse_targets(f"{SLACK}{junk}", {})
    msg = str(e.value)
    assert "non-ASCII" in msg and "XOXSECRET" not in msg and "\n" not in msg
    assert len(parse_targets("https://bücher.example/hook", {})) == 1  # a non-ASCII host is sent (IDNA)


def test_an_env_variable_of_separators_only_is_refused(tmp_path) -> None:
    """``EW_SLACK=" , "`` gave no target: ``watch --notify env:EW_SLACK`` ran without notifying and said nothing."""
    with pytest.raises(NotifyConfigError, match="EW_SLACK holds no webhook URL"):
        parse_targets("env:EW_SLACK", {"EW_SLACK": " , ,"})
    r = CliRunner().invoke(
        app, ["--store", str(tmp_path), "watch", "--iterations", "1", "--notify", "env:EW_SLACK"], env={"EW_SLACK": ","}
    )
    flat = " ".join(r.output.replace("│", " ").split())  # the error box wraps its line
    assert r.exit_code == 2 and "EW_SLACK holds no webhook URL" in flat
