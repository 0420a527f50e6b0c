"""Webhook specs: kinds detected or prefixed, env: specs, and the URL kept out of every text."""

from __future__ import annotations

import pickle

import pytest

from entropy_watch.notify import DEFAULT_ENV, NotifyConfigError, Target, parse_targets, redact, scrub

SLACK = "https://hooks.slack.com/services/T0001/B0002/XXXXSECRETXXXX"
DISCORD = "https://discord.com/api/webhooks/123/SECRETTOKEN"


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (SLACK, "slack"),
        (DISCORD, "discord"),
        ("https://discordapp.com/api/webhooks/1/TOKEN", "discord"),
        ("https://ops.example.org/hooks/ew?token=abc", "json"),
        ("https://discord.com/channels/1/2", "json"),  # not a webhook path
        ("slack+https://chat.example.org/hooks/abc", "slack"),  # Mattermost & co speak Slack's format
        ("discord+http://127.0.0.1:9/x", "discord"),
        ("json+" + SLACK, "json"),  # the prefix wins over the host
    ],
)
def test_kind_is_detected_or_prefixed(spec: str, kind: str) -> None:
    (t,) = parse_targets(spec)
    assert t.kind == kind
    prefix, _, rest = spec.partition("+")
    assert t.url == (rest if prefix in ("slack", "discord", "json") else spec)


def test_env_specs_read_the_variable_and_the_default() -> None:
    env = {"EW_SLACK_URL": SLACK, DEFAULT_ENV: f"{DISCORD}, json+https://a.example/x"}
    assert [t.kind for t in parse_targets("env:EW_SLACK_URL", env)] == ["slack"]
    assert [t.kind for t in parse_targets("env", env)] == ["discord", "json"]
    assert len(parse_targets(["env:EW_SLACK_URL", SLACK], env)) == 1  # duplicates dropped


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("env:EW_MISSING", "EW_MISSING is not set"),
        ("env:1BAD", "not an environment variable name"),
        ("ftp://hooks.example/SECRET", "ftp://… is not a webhook URL"),
        ("hooks.slack.com/services/SECRET", "a value without http(s)://"),
        ("teams+https://x.example/SECRET", "is not a webhook URL"),
    ],
)
def test_bad_specs_are_one_line_without_the_secret(spec: str, says: str) -> None:
    with pytest.raises(NotifyConfigError) as e:
        parse_targets(spec, {})
    msg = str(e.value)
    assert says in msg and "\n" not in msg
    assert "SECRET" not in msg


def test_target_never_shows_its_url() -> None:
    (t,) = parse_targets(SLACK)
    for text in (repr(t), str(t), t.label, repr([t]), f"{t}"):
        assert "XXXXSECRETXXXX" not in text and "hooks.slack.com" in text
    with pytest.raises(TypeError):
        pickle.dumps(t)
    assert redact(SLACK) == "https://hooks.slack.com/…"
    assert Target("json", "http://127.0.0.1:8080/a/b").label == "json:http://127.0.0.1:8080/…"


def test_scrub_removes_urls_from_json_values() -> None:
    meta = {"argv": ["train.py", "--notify", "slack+" + SLACK], "config": {"hooks": [SLACK, 3], "lr": 0.1}, "n": 1}
    clean = scrub(meta, [SLACK])
    assert "XXXXSECRETXXXX" not in repr(clean)
    assert clean["argv"][2] == "slack+https://hooks.slack.com/…"
    assert clean["config"]["lr"] == 0.1 and clean["n"] == 1
    assert scrub(meta, []) == clean  # any Slack/Discord webhook URL is a credential, in use or not


def test_scrub_strips_the_credentials_every_url_carries() -> None:
    argv = ["train.py", "--data=https://user:ghp_TOKEN1@github.com/o/r.git", "s3://AKIA:SECRET2@bucket/k",
            "https://h.example/d?page=2&access_token=TOKEN3&api_key=KEY4&X-Amz-Signature=SIG5#frag",
            "https://h.example/p?monkey=1&keyword=2", "http://localhost:8000/v1/completions?max_tokens=512&num_tokens=8",
            "no url: user:pass"]  # fmt: skip
    clean = scrub({"argv": argv, "n": 1})
    for secret in ("TOKEN1", "SECRET2", "TOKEN3", "KEY4", "SIG5"):
        assert secret not in repr(clean)
    assert clean["argv"][1] == "--data=https://***@github.com/o/r.git"
    assert clean["argv"][3] == "https://h.example/d?page=2&access_token=***&api_key=***&X-Amz-Signature=***#frag"
    assert clean["argv"][4:] == argv[4:] and clean["n"] == 1  # what carries no credential is kept as it is


@pytest.mark.parametrize(
    "spec",
    ["json+http://127.0.0.1:9:9/SECRET", "http://hooks.example:99999/SECRET", "http://h/SEC RET", "http://h/a\tb"],
)
def test_a_url_that_can_never_be_sent_is_refused_when_given(spec: str) -> None:
    """A port that is no port or whitespace in the URL passed the check and failed at delivery, retried 4 times as if
    transient; it is a usage mistake, said at once, without the secret."""
    with pytest.raises(NotifyConfigError) as e:
        parse_targets([spec])
    assert "SECRET" not in str(e.value) and "SEC RET" not in str(e.value)


def test_two_webhooks_on_one_host_are_told_apart_by_position() -> None:
    a, b, c = (parse_targets(["https://hooks.slack.com/services/T0/B0/SECRET1", "https://hooks.slack.com/services/T0/B1/"
                              "SECRET2", "https://example.org/hook/SECRET3"]))  # fmt: skip
    assert [a.label, b.label, c.label] == [
        "slack:https://hooks.slack.com/… (#1)",
        "slack:https://hooks.slack.com/… (#2)",
        "json:https://example.org/…",
    ]
    assert "SECRET" not in repr([a, b, c])


def test_the_app_url_is_checked_as_a_webhook_url_is() -> None:
    """One rule for an http(s) URL that can be sent to (``targets.is_http_url``): the app's address took a port that
    is no port or a space, which every message's link then carried."""
    from entropy_watch.notify.notifier import check_app_url

    assert check_app_url("http://127.0.0.1:8501") == "http://127.0.0.1:8501"
    for bad in ("http://127.0.0.1:99999", "http://host name:8501", "127.0.0.1:8501"):
        with pytest.raises(NotifyConfigError):
            check_app_url(bad)
