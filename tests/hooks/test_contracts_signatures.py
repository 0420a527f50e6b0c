"""docs/CONTRACTS.md's call forms match the code: the positional parameters in the documented order, and exactly the
documented keyword-only ones (those after ``*,``). A parameter added, renamed or moved fails here: update both."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

import entropy_watch.hooks.control as control_module
from entropy_watch.analysis import analyze_run
from entropy_watch.hooks import Watch, step_stats
from entropy_watch.hooks.trl import attach
from entropy_watch.store import RunWriter
from entropy_watch.trainer.compare import compare
from entropy_watch.trainer.config import preset
from entropy_watch.trainer.loop import train

# callable -> (positional parameters, keyword-only parameters) as docs/CONTRACTS.md writes them (methods: with self)
DOCUMENTED: list[tuple[Callable, str, str]] = [
    (RunWriter, "root run rank fsync", "heartbeat_interval_s heartbeat"),
    (RunWriter.write, "self table rows", "seq"),
    (
        Watch,
        "run store config strict",
        "vocab_size reward_max sample_tokens token_every temperature framework entropy_definition process_group reduce "
        "flush_secs seed async_stats max_pending_stats max_logits_per_call notify on_alert detector app_url live",
    ),
    (
        Watch.log_tokens,
        "self step",
        "logits entropy mask logp old_logp advantages group_ids eps_low eps_high dual_clip token_ids tokenizer",
    ),
    (
        step_stats,
        "entropy mask",
        "logp old_logp advantages group_ids eps_low eps_high dual_clip token_ids tokenizer edges sample_tokens step "
        "process_group onpolicy_unknown token_weight unsampled_mask logp_sampled",
    ),
    (analyze_run, "store run config", ""),
    (preset, "name algo", "seed run"),
    (train, "cfg", "store init resume strict_hooks on_iteration"),
    (compare, "preset_name algos seeds root", "iterations sft_steps probe jobs precision rl"),
    (attach, "trainer run store sample_tokens", "watch per_token strict control"),
]


@pytest.mark.parametrize(("fn", "positional", "keyword_only"), DOCUMENTED, ids=lambda v: getattr(v, "__qualname__", ""))
def test_documented_signature(fn: Callable, positional: str, keyword_only: str) -> None:
    params = inspect.signature(fn).parameters.values()
    pos = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    kw = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    assert pos == positional.split()
    assert kw == set(keyword_only.split())


def test_attach_lives_in_the_trl_adapter() -> None:
    assert not hasattr(control_module, "attach")  # CONTRACTS: entropy_watch.hooks.trl.attach(..., control=...)
