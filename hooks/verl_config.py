"""What ``run.json`` keeps of verl's config (:func:`run_config`), split from ``hooks/verl.py`` (the hooks that call it).

verl hands ``Tracking`` its resolved config; the alerts' suggested actions quote the current values of the keys they
name (``actor_rollout_ref.actor.clip_ratio_high``...), so the sections they read are kept, as plain JSON values and
without credentials. Torch-free; OmegaConf is used only when the config is one of its containers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from entropy_watch.aliases import VERL_DUAL_CLIP
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


DUAL_CLIP_SOURCE = VERL_DUAL_CLIP
DUAL_CLIP_LOSSES = frozenset({"vanilla", "bypass_mode", "ew_vanilla", "ew_bypass_mode", "ew_repo_r"})
"""The ``loss_mode``s whose ``actor/pg_clipfrac_lower`` is the dual-clip share (A<0 tokens whose loss the bound
``clip_ratio_c`` caps): verl's PPO loss ``vanilla``, ``bypass_mode`` (its ``ppo_clip`` runs ``vanilla``; its
``reinforce`` logs no such key) and their ``ew_`` wraps (``ew_repo_r`` runs ``vanilla``). Every other loss logs
another number under that name (verl 0.9.1's ``core_algos.py``): ``geo_mean`` the clipped A<0 share, ``dppo_tv`` /
``dppo_kl`` the share above ``clip_ratio_c`` whatever the advantage, ``gspo``, ``sapo``, ``cispo`` and verl < 0.6's
``clip_cov`` / ``kl_cov`` a constant 0 — none is ``clip/dual_frac``."""


def loss_mode(config: Any) -> str | None:
    """``actor_rollout_ref.actor.policy_loss.loss_mode`` of the kept config (:func:`run_config`); ``"vanilla"`` for
    an actor section without one (verl's own default; verl 0.4.0 had no other loss); None without an actor section
    (the loss is not known)."""
    actor = config.get("actor_rollout_ref", {}).get("actor") if isinstance(config, Mapping) else None
    if not isinstance(actor, Mapping):
        return None
    policy_loss = actor.get("policy_loss")
    mode = policy_loss.get("loss_mode") if isinstance(policy_loss, Mapping) else None
    return str(mode) if mode is not None else "vanilla"


def logs_dual_clip(config: Any) -> bool:
    """Whether verl's ``actor/pg_clipfrac_lower`` is the dual-clip share under ``config`` (:data:`DUAL_CLIP_LOSSES`);
    False when the loss is not known. verl rewrites ``loss_mode`` to ``bypass_mode`` under ``algorithm.
    rollout_correction.bypass_mode``: from a dual-clip mode that is one too, from another at most a share not
    recorded, never one recorded wrongly."""
    return loss_mode(config) in DUAL_CLIP_LOSSES


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
