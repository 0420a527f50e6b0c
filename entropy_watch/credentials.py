"""The one credential filter: what may be stored or shown of a value that may carry a secret.

Everything a hook writes into ``run.json`` (the config, ``argv``, meta, event payloads) passes :func:`scrub` — a
custom loop's ``Watch(run, config=vars(args))`` holding ``--wandb_key KEY`` or ``hf_token`` too, not only the
configs a framework hook prunes itself (verl's ``run_config`` drops what :func:`names_secret` /
:func:`secret_text` flag instead of masking it). A secret is

* the value of a key that names a credential (:func:`names_secret`: ``hf_token``, ``WANDB_API_KEY``, ``accessToken``,
  ``client_secret``, ``password``, ``webhook_url``, ``logger.wandb.key``, ``use_wandb`` — OpenRLHF before 0.11 took
  the W&B key as its value), in snake, kebab, dotted or camel case, or the ``argv`` item after such a ``--flag``;
* inside any string: a URL's user-info and credential query parameters (:func:`strip_credentials`), a Slack or
  Discord webhook's path, ``NAME=value`` / ``Name: value`` / ``--name value`` with a credential's name (an env list,
  a header, an argument string), and the shapes of known keys (``hf_…``, ``sk-…``, ``ghp_…``, ``xox?-…``,
  ``AKIA…``).

Each is replaced by ``***`` (a webhook URL by its host, :func:`redact`); the rest of the value stays. Names that
merely mention tokens or keys are ordinary settings: ``max_num_batched_tokens``, ``prompt_key``, ``tokenizer``,
``token_level_loss``, and the special tokens (``pad_token``, ``eos_token``). Core tier: standard library only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

MASK = "***"

_SEP = r"[_.-]"
_SECRET_KEY = re.compile(
    rf"(?i)(?:^|{_SEP})(?:token|secrets?|passw(?:or)?ds?|passphrase|pwd|credentials?|auth(?:orization)?|bearer"
    rf"|cookies?|signature|webhooks?(?:{_SEP}?urls?)?|use{_SEP}wandb|(?:api|access|secret|private|auth|ssh|signing"
    rf"|encryption|session|hf|wandb|openai|anthropic|github|gh|slack|discord|comet|neptune|swanlab|mlflow)"
    rf"{_SEP}?keys?(?:{_SEP}?id)?)$"
)
"""A name whose value is a credential (a whole word at its end: not ``max_num_batched_tokens``, ``prompt_key``,
``tokenizer``)."""
_SPECIAL_TOKEN = re.compile(
    rf"(?i)(?:^|{_SEP})(?:pad|eos|bos|unk|sep|cls|mask|stop|start|end|image|video|audio|special|placeholder"
    rf"|im{_SEP}start|im{_SEP}end){_SEP}?token$"
)  # a tokenizer's special token ("<pad>", "</s>"), not a credential
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_PARAM = re.compile(
    r"(?i)(?:.*[_.-])?(?:api|access|refresh|client|private)?"
    r"(?:token|keys?|secrets?|passw(?:or)?ds?|pwd|auth|credentials?|signatures?|sig)"
)
"""A query parameter named by one of these words, alone or after a separator (``access_token``, ``api_key``,
``apikey``, ``X-Amz-Signature``, ``sig``, ``client_secret``…), holds a credential (``monkey`` does not, nor a count of
tokens: ``max_tokens``, ``num_tokens``)."""
_WEBHOOK = re.compile(r"(?i)^[a-z+]*://(?:[^/]*@)?(?:hooks\.slack\.com|(?:\w+\.)?discord(?:app)?\.com/api/webhooks)/")
_BARE_WEBHOOK = re.compile(r"(?i)(?<![\w./])(hooks\.slack\.com|discord(?:app)?\.com)(/[^\s'\"<>…]+)")  # no scheme
_TOKEN_TEXT = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{20,}|sk-[\w-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|xox[abposr]-[\w-]{10,}"
    r"|AKIA[0-9A-Z]{16})"
)  # Hugging Face, OpenAI/Anthropic, GitHub, Slack, AWS key shapes
_ASSIGNED = re.compile(  # NAME=v, export NAME=v, +a.name=v (Hydra), Name: v, --name v, --name=v (name: group 1/2)
    r"(?:^|[\s,;'\"])(?:export\s+|\+\+?)?([A-Za-z_][\w.-]*)\s*[=:]\s*(?=\S)|(?:^|\s)--?([A-Za-z_][\w.-]*)(?:=|\s+)(?=\S)"
)
_FLAG = re.compile(r"--?([A-Za-z_][\w.-]*)")


@functools.lru_cache(maxsize=4096)  # a config's keys repeat (per section, per rank)
def names_secret(key: str) -> bool:
    """Whether a value named ``key`` is a credential, in snake, kebab, dotted or camel case (``accessToken``)."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)
    return bool(_SECRET_KEY.search(name)) and not _SPECIAL_TOKEN.search(name)


def secret_text(value: Any) -> bool:
    """Whether ``value`` is a string that carries a credential (:func:`mask_text` would change it)."""
    return isinstance(value, str) and mask_text(value) != value


def mask_text(text: str) -> str:
    """``text`` with every credential in it replaced (module docstring); idempotent."""
    if "://" in text:
        text = _URL.sub(_mask_url, text)
    text = _BARE_WEBHOOK.sub(_mask_bare, text)
    text = _TOKEN_TEXT.sub(MASK, text)
    if "=" not in text and ":" not in text and "-" not in text:  # nothing is assigned: most values
        return text
    for m in _ASSIGNED.finditer(text):
        if names_secret(m.group(1) or m.group(2)):  # the value runs to the end: "Bearer X" is one value
            return text[: m.end()] + MASK
    return text


def _mask_url(m: re.Match[str]) -> str:
    url = _strip_url(m)
    return redact(url) if _WEBHOOK.match(url) else url


def _mask_bare(m: re.Match[str]) -> str:
    host, path = m.group(1), m.group(2)
    hook = host.lower() == "hooks.slack.com" or path.lower().startswith("/api/webhooks/")
    return f"{host}/…" if hook else m.group(0)


def redact(url: str) -> str:
    """``scheme://host/…``: what may be shown of a webhook URL (the path and query carry the secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
    except ValueError:
        return "<url>"
    port = f":{_safe_port(parts)}" if _safe_port(parts) else ""
    return f"{parts.scheme or '?'}://{host}{port}/…"


def _safe_port(parts: Any) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def strip_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``: a user-info part
    (``https://user:TOKEN@host`` → ``https://***@host``) and the values of query parameters named like a credential
    (``?token=…``, ``api_key=…``, ``X-Amz-Signature=…``). The rest of the URL (host, path, other parameters) stays:
    ``run.json`` keeps where data came from, never the key to it."""
    return _URL.sub(_strip_url, text)


def _strip_url(m: re.Match[str]) -> str:
    url = m.group(0)
    scheme, sep, rest = url.partition("://")
    netloc_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    if "?" in tail:
        path, _, query = tail.partition("?")
        query, hash_, frag = query.partition("#")
        pairs = [p.partition("=") for p in query.split("&")]
        query = "&".join(k + eq + (MASK if eq and _SECRET_PARAM.fullmatch(k) and v else v) for k, eq, v in pairs)
        tail = f"{path}?{query}{hash_}{frag}"
    return f"{scheme}{sep}{netloc}{tail}"


def scrub(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """``obj`` as it may be stored: every occurrence of a known secret (a webhook URL in use) replaced by its
    redacted form, and every credential the module docstring lists masked — in strings and in the keys, values and
    items of dicts, lists and tuples (JSON values). Other values are returned as they are."""
    keys = sorted({s for s in secrets if s}, key=len, reverse=True)
    return _scrub(obj, keys, "")


def _scrub(obj: Any, keys: list[str], parent: str) -> Any:
    if isinstance(obj, str):
        for k in keys:
            if k in obj:
                obj = obj.replace(k, redact(k))
        return mask_text(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            name = str(k)
            secret = names_secret(name) or (parent and names_secret(f"{parent}.{name}"))
            out[_scrub(k, keys, "")] = MASK if secret and _holds_value(v) else _scrub(v, keys, name)
        return out
    if isinstance(obj, list | tuple):
        items = [_scrub(v, keys, parent) for v in obj]
        for i in range(1, len(items)):  # argv: ["--hf_token", "hf_x"], ["--use_wandb", "KEY"]
            flag = _FLAG.fullmatch(obj[i - 1]) if isinstance(obj[i - 1], str) else None
            if flag and names_secret(flag.group(1)) and isinstance(items[i], str) and not items[i].startswith("--"):
                items[i] = MASK
        return type(obj)(items)
    return obj


def _holds_value(v: Any) -> bool:
    """Whether a credential-named setting holds something to hide: not unset, not a switch (``use_wandb: True``)."""
    return not (v is None or isinstance(v, bool) or v == "" or v == MASK)
