"""No credential reaches ``run.json`` (or the events table) whoever writes the config: a custom loop's
``Watch(run, config=vars(args))`` with ``--wandb_key KEY`` / ``hf_token`` in its arguments, an ``argv`` holding them,
an event payload with an env list — the same shapes verl's hook drops from its config (test_s48_sec_verl_config.py),
here masked by the one filter every ``run.json`` field passes (:mod:`entropy_watch.credentials`). The store's files
are read back; settings that merely mention tokens or keys are kept as they are."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")
from entropy_watch.credentials import MASK, mask_text, scrub  # noqa: E402
from entropy_watch.hooks.watch import Watch  # noqa: E402
from entropy_watch.store import layout  # noqa: E402

from ..leaks import LEAKS as COMMON_LEAKS  # noqa: E402

LEAKS = {  # the verl config tests' secrets (tests/leaks.py), in a plain loop's config, and OpenRLHF's
    **COMMON_LEAKS,
    "logger": {"wandb": {"key": "LEAK15", "project": "grpo"}},  # OpenRLHF 0.11's args, nested
    "use_wandb": "LEAK16",  # OpenRLHF before 0.11: --use_wandb takes the W&B API key
}
ORDINARY = {
    "max_num_batched_tokens": 8192, "prompt_key": "prompt", "tokenizer": "Qwen/Qwen2.5-0.5B",
    "tokenizer_name_or_path": "Qwen/Qwen2.5-0.5B", "token_level_loss": True, "loss_agg_mode": "token-level",
    "pad_token": "<pad>", "eos_token": "</s>", "max_tokens": 512, "reward_fn_key": "data_source",
    "use_kl_loss": False, "hub_token": None, "report_to": ["wandb"], "maxTokens": 64, "lr": 1e-6,
}  # fmt: skip
ARGV = ["train.py", "--wandb_key", "LEAK17", "--hf_token=LEAK18", "--logger.wandb.key", "LEAK19", "--lr", "1e-6",
        "--tokenizer", "Qwen/Qwen2.5-0.5B", "--max_num_batched_tokens", "8192", "+trainer.hf_token=LEAK25",
        "actor_rollout_ref.model.path=Qwen/Qwen2.5-0.5B"]  # fmt: skip


def _stored(store: Path, run: str) -> str:
    """run.json and every row of the run's parquet tables, as one text."""
    texts = [layout.run_json_path(store, run).read_text(encoding="utf-8")]
    texts += [json.dumps(pq.read_table(p).to_pylist(), default=str) for p in store.rglob("*.parquet")]
    return "\n".join(texts)


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, str]:
    monkeypatch.setattr(sys, "argv", ARGV)
    with Watch("loop", store=tmp_path, config={**LEAKS, **ORDINARY}) as w:
        w.log_dict(0, {"entropy/mean": 1.0})
        w.event(0, "config_edit", env=["HF_TOKEN=LEAK20"], note="--api-key LEAK21", keys={"wandb_key": "LEAK22"})
        w.update_meta(extra={"client_secret": "LEAK23", "source": "https://u:LEAK24@hub.example/d"})
    text = _stored(tmp_path, "loop")
    return json.loads(layout.run_json_path(tmp_path, "loop").read_text(encoding="utf-8")), text


def test_no_credential_reaches_the_store_from_a_plain_loop(stored: tuple[dict, str]) -> None:
    _, text = stored
    leaked = [n for n in range(1, 26) if f"LEAK{n:02d}" in text]
    assert leaked == [], f"credentials stored: {leaked}"


def test_what_is_masked_says_so_and_the_rest_of_the_value_stays(stored: tuple[dict, str]) -> None:
    meta, _ = stored
    cfg = meta["config"]
    assert cfg["wandb_key"] == cfg["accessToken"] == cfg["use_wandb"] == MASK  # the setting is there, its value not
    assert cfg["logger"] == {"wandb": {"key": MASK, "project": "grpo"}}
    assert cfg["env"] == ["HF_TOKEN=***", "PYTHONHASHSEED=0"] and cfg["extra_args"] == "--seed 1 --api-key ***"
    assert cfg["notify"] == "https://hooks.slack.com/…" and cfg["mirrors"] == ["https://***@data.internal/x.parquet"]
    masked = ["--wandb_key", MASK, "--hf_token=***", "--logger.wandb.key", MASK]
    assert meta["argv"] == ["train.py", *masked, *ARGV[6:-2], "+trainer.hf_token=***", ARGV[-1]]


def test_settings_that_merely_mention_tokens_or_keys_are_kept(stored: tuple[dict, str]) -> None:
    meta, _ = stored
    assert {k: meta["config"][k] for k in ORDINARY} == ORDINARY


@pytest.mark.parametrize(
    "text",
    ["PYTHONHASHSEED=0", "eos_token: </s>", "--max_tokens 512", "token_level", "prompt_key=prompt",
     "http://localhost:8000/v1/completions?max_tokens=512", "https://hooks.slack.com/…", "no url: user:pass"],
)  # fmt: skip
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert mask_text(text) == text


def test_a_switch_under_a_credential_name_is_kept_and_masking_is_idempotent() -> None:
    cfg = {"use_wandb": True, "hf_token": None, "argv": ["--wandb_key", "--lr", "1"]}
    assert scrub(cfg) == cfg  # on/off and unset carry no secret; a flag followed by a flag has no value
    once = scrub({**LEAKS, "argv": ARGV})
    assert scrub(once) == once


def test_verl_config_uses_the_same_filter_nested_names_too() -> None:
    from entropy_watch.hooks.verl import run_config

    plain = {"max_num_batched_tokens": 8192, "tokenizer": "Qwen/Qwen2.5-0.5B", "pad_token": "<pad>"}
    wandb = {"logger": ["console", "wandb"], "wandb": {"key": "LEAK01", "entity": "me"}, "use_wandb": "LEAK02"}
    kept = run_config({"trainer": {**wandb, **plain}})
    assert "LEAK" not in json.dumps(kept)
    assert kept == {"trainer": {"logger": ["console", "wandb"], "wandb": {"entity": "me"}, **plain}}
