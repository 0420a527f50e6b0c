"""Where notifications go: webhook URLs, their kind (Slack, Discord, generic JSON), and keeping them secret.

A target spec is one of

* a URL whose host says its kind: ``https://hooks.slack.com/services/…`` (Slack incoming webhook),
  ``https://discord.com/api/webhooks/…`` or ``https://discordapp.com/api/webhooks/…`` (Discord); any other
  ``http(s)://`` URL gets the generic JSON POST;
* a URL with an explicit kind prefix: ``slack+https://…`` (any Slack-compatible endpoint: Mattermost, Rocket.Chat,
  a proxy), ``discord+https://…``, ``json+https://…``;
* ``env:NAME`` — the spec is read from the environment variable ``NAME`` when the notifier is built, and ``env``
  alone reads :data:`DEFAULT_ENV` (``ENTROPY_WATCH_NOTIFY``). A variable may hold several specs separated by
  whitespace or commas.

A spec is checked when it is given, not at the first alert: a Slack or Discord host needs ``https://`` (``http://``
would send the token in the clear), and nothing after the host may be non-ASCII (a smart quote or zero-width space
pasted with the URL made every send fail).

Webhook URLs are credentials (anyone holding a Slack webhook URL can post to the channel). A :class:`Target` keeps
the URL in a private slot and shows only its kind and host (``repr``, ``str``, :attr:`Target.label`); errors never
quote it; :func:`scrub` removes it from any text or JSON value (``run.json``'s ``argv`` and config, event payloads,
log lines), and with it every other credential in them (URLs' ``user:TOKEN@``/``?token=…``, credential-named keys,
``--flag value`` pairs, key shapes): :mod:`entropy_watch.credentials`, the one credential filter.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from entropy_watch.credentials import redact, scrub, strip_credentials  # noqa: F401 - re-exported (their home)
from entropy_watch.errors import EntropyWatchError

KINDS: tuple[str, ...] = ("slack", "discord", "json")
DEFAULT_ENV = "ENTROPY_WATCH_NOTIFY"
"""Environment variable read by the spec ``env`` (``--notify env`` / ``notify="env"``)."""

_SLACK_HOSTS = ("hooks.slack.com",)
_DISCORD_HOSTS = ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")
_SPLIT = re.compile(r"[\s,]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class NotifyConfigError(EntropyWatchError, ValueError):
    """A notification target or policy that cannot be used; the message never contains the URL itself."""


class Target:
    """One webhook: its ``kind`` (slack | discord | json) and its URL, which only :attr:`url` returns."""

    __slots__ = ("kind", "_url", "label")

    def __init__(self, kind: str, url: str) -> None:
        if kind not in KINDS:
            raise NotifyConfigError(f"notify: unknown kind {kind!r} (use one of {', '.join(KINDS)})")
        self.kind = kind
        self._url = url
        self.label = f"{kind}:{redact(url)}"

    @property
    def url(self) -> str:
        """The secret URL (for the delivery thread only; never log or store it)."""
        return self._url

    def __repr__(self) -> str:
        return f"Target({self.label})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and (self.kind, self._url) == (other.kind, other._url)

    def __hash__(self) -> int:
        return hash((self.kind, self._url))

    def __reduce__(self) -> Any:  # pickling would copy the secret into wherever the pickle goes
        raise TypeError("notification targets are not picklable (they hold a webhook URL)")


def kind_of(url: str) -> str:
    """The kind a bare URL implies from its host: slack, discord, else json."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _SLACK_HOSTS:
        return "slack"
    if host in _DISCORD_HOSTS and urlsplit(url).path.startswith("/api/webhooks/"):
        return "discord"
    return "json"


def is_http_url(value: Any) -> bool:
    """Whether ``value`` is an ``http(s)://host[:port]...`` URL that can be sent to: a port that is no port ("h:9:9",
    ":99999") or whitespace/control characters fail here, not at send time after the retries (http.client refuses
    them)."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises for a port that is no port
    except ValueError:
        return False
    return ok and not any(c.isspace() or ord(c) < 32 for c in value)


def parse_target(spec: str, environ: Mapping[str, str] | None = None) -> list[Target]:
    """Targets for one spec (``env:NAME`` may expand to several). Raises :class:`NotifyConfigError`."""
    env = os.environ if environ is None else environ
    spec = spec.strip()
    if spec == "env" or spec.startswith("env:"):
        name = spec[4:].strip() or DEFAULT_ENV
        if not _ENV_NAME.fullmatch(name):
            # `env:$EW_SLACK` expands to the URL itself: quoting it would print the secret
            shown = "a URL" if "/" in name else f"{name!r}" if len(name) <= 32 else "a long value (a token?)"
            raise NotifyConfigError(
                f"notify: {shown} is not an environment variable name (env:NAME, e.g. env:EW_SLACK_URL, reads the "
                "webhook URL from $NAME)"
            )
        value = env.get(name, "").strip()
        if not value:
            raise NotifyConfigError(f"notify: environment variable {name} is not set (or empty)")
        out: list[Target] = []
        for part in _SPLIT.split(value):
            if part.startswith("env"):
                raise NotifyConfigError(f"notify: environment variable {name} must hold URLs, not another env: spec")
            if part:
                out.extend(parse_target(part, env))
        if not out:  # only separators: no notifier was built and nothing said so
            raise NotifyConfigError(f"notify: environment variable {name} holds no webhook URL (only commas or spaces)")
        return out
    kind: str | None = None
    head, sep, rest = spec.partition("+")
    if sep and head in KINDS and "://" in rest:
        kind, spec = head, rest
    if not is_http_url(spec):
        shown = spec.split("://", 1)[0][:16] + "://…" if "://" in spec else "a value without http(s)://"
        raise NotifyConfigError(
            f"notify: {shown} is not a webhook URL (use https://…, slack+https://…, discord+https://…, "
            "json+https://… or env:NAME)"
        )
    parts = urlsplit(spec)
    if not all(p.isascii() for p in (parts.path, parts.query, parts.fragment, parts.username or "")):
        # http.client refuses it at every send ("unexpected UnicodeEncodeError"): say so now
        raise NotifyConfigError(
            f"notify: {parts.scheme}://… has a non-ASCII character after its host (a smart quote or an invisible "
            "space copied with it?); percent-encode it or copy the URL again"
        )
    host = (parts.hostname or "").lower()
    if spec.lower().startswith("http://") and host in _SLACK_HOSTS + _DISCORD_HOSTS:
        raise NotifyConfigError(f"notify: a webhook URL on {host} needs https:// (http:// sends its token unencrypted)")
    return [Target(kind or kind_of(spec), spec)]


def parse_targets(
    specs: str | Target | Iterable[str | Target] | None, environ: Mapping[str, str] | None = None
) -> list[Target]:
    """Targets for ``None`` (none), one spec or several; duplicates are dropped, order kept. Targets whose labels
    would be equal (two Slack webhooks: the host is all a label shows) get their position among the targets in their
    label, ``slack:https://hooks.slack.com/… (#2)``, so a message about one names which."""
    if specs is None:
        return []
    if not isinstance(specs, str | Target | Iterable) or isinstance(specs, bytes | Mapping):
        raise NotifyConfigError(
            f"notify: expected a webhook URL, env:NAME or a list of them, got {type(specs).__name__}"
        )
    items: Iterable[str | Target] = [specs] if isinstance(specs, str | Target) else specs
    out: list[Target] = []
    for item in items:
        for t in [item] if isinstance(item, Target) else parse_target(str(item), environ):
            if t not in out:
                out.append(t)
    labels = [t.label for t in out]
    for i, t in enumerate(out):
        if labels.count(t.label) > 1:
            t.label = f"{t.label} (#{i + 1})"
    return out
