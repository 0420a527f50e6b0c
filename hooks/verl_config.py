"""What ``run.json`` keeps of verl's config (:func:`run_config`), split from ``hooks/verl.py`` (the hooks that call it).

verl hands ``Tracking`` its resolved config; the alerts' suggested actions quote the current values of the keys they
name (``actor_rollout_ref.actor.clip_ratio_high``...), so the sections they read are kept, as plain JSON values and
without credentials. Torch-free; OmegaConf is used only when the config is one of its containers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from entropy_watch.credentials import names_secret, secret_text
from entropy_watch.jsonable import to_jsonable

CONFIG_SECTIONS: tuple[tuple[str, ...], ...] = (
    ("actor_rollout_ref", "actor"), ("actor_rollout_ref", "rollout"), ("algorithm",), ("actor_rollout_ref", "model"),
    ("actor_rollout_ref", "ref"), ("data",), ("trainer",), ("critic",),
)  # fmt: skip
"""The sections of verl's config kept in ``run.json``, most needed first (advice reads ``actor_rollout_ref.actor``
and ``.rollout``): never ``ray_kwargs`` (its ``runtime_env.env_vars`` carry environment variables, tokens among them),
reward or sandbox endpoints."""
MAX_CONFIG_CHARS = 32_000
"""The kept config's JSON at most this long: a section that would pass it is left out (verl 0.9.1's whole resolved
``ppo_trainer`` config is ~27 kB; the sections above ~19 kB)."""
_SKIP_KEYS = frozenset({"_target_", "profiler"})  # Hydra's class paths; per-role profiler settings (large, no use)
_MAX_STR, _MAX_ITEMS, _MAX_DEPTH = 500, 64, 8


def run_config(config: Any) -> dict[str, Any]:
    """What ``run.json`` keeps of the config verl hands ``Tracking`` (a dict, or an OmegaConf ``DictConfig``):
    :data:`CONFIG_SECTIONS` as plain JSON values, without any key that names a credential or string that carries
    one (:mod:`entropy_watch.credentials`: dropped here, masked in whatever else ``run.json`` holds), long strings
    and lists cut, within :data:`MAX_CONFIG_CHARS`. ``{}`` for no config."""
    tree = _plain(config)
    if not isinstance(tree, Mapping):
        return {}
    out: dict[str, Any] = {}
    size = 0
    for path in CONFIG_SECTIONS:
        node: Any = tree
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            continue
        kept = _public(node, 0)
        n = len(json.dumps(kept, default=str)) + sum(len(k) + 6 for k in path)
        if size + n > MAX_CONFIG_CHARS:
            continue
        size += n
        at = out
        for key in path[:-1]:
            at = at.setdefault(key, {})
        at[path[-1]] = kept
    return out


def _plain(config: Any) -> Any:
    """An OmegaConf config as plain containers (resolved where it resolves), anything else as JSON values."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:
        return to_jsonable(config)
    if isinstance(config, DictConfig | ListConfig):
        try:
            config = OmegaConf.to_container(config, resolve=True)
        except Exception:  # noqa: BLE001 - an interpolation that does not resolve: the values as written
            config = OmegaConf.to_container(config, resolve=False)
    return to_jsonable(config)


def _public(node: Any, depth: int, parent: str = "") -> Any:
    if isinstance(node, Mapping):
        if depth >= _MAX_DEPTH:
            return "…"
        return {str(k): _public(v, depth + 1, str(k)) for k, v in node.items() if not _secret(str(k), v, parent)}
    if isinstance(node, list):  # an env list (["HF_TOKEN=..."]), a list of URLs: each string checked as a value
        return [_public(v, depth + 1) for v in node[:_MAX_ITEMS] if not secret_text(v)]
    if isinstance(node, str) and len(node) > _MAX_STR:
        return node[:_MAX_STR] + "…"
    return node


def _secret(key: str, value: Any, parent: str = "") -> bool:
    """Whether ``key`` and its ``value`` stay out of ``run.json``: a credential (:mod:`entropy_watch.credentials`,
    the filter every ``run.json`` field passes; ``wandb: {key: …}`` too), or noise (:data:`_SKIP_KEYS`)."""
    if key in _SKIP_KEYS or names_secret(key) or secret_text(value):
        return True
    return bool(parent) and names_secret(f"{parent}.{key}")
