"""Secrets stay out of a verl run's ``run.json`` (``hooks/verl.py`` :func:`run_config`) whatever shape they take in
the config: camelCase keys, vendor ``*_key`` names, webhook URLs, ``NAME=value`` env lists, header strings, URLs
with credentials inside lists, known token shapes. Driven through the hook as verl calls it (``Tracking``'s config
handed to :func:`_remember_config`, then the run's Watch writes ``run.json``); the store file is read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
from entropy_watch.hooks import verl as ew_verl  # noqa: E402
from entropy_watch.store import layout  # noqa: E402

from ..leaks import LEAKS  # noqa: E402

KEPT = {"clip_ratio_high": 0.24, "entropy_coeff": 0.003, "loss_agg_mode": "token-mean", "prompt_key": "prompt"}


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    monkeypatch.setenv("ENTROPY_WATCH_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("ENTROPY_WATCH_RUN", "verl-sec")
    ew_verl.set_watch(None)
    try:
        cfg = {"actor_rollout_ref": {"actor": {**KEPT, **LEAKS}, "rollout": {"n": 8}}, "trainer": {"env": LEAKS["env"]}}
        ew_verl._remember_config(cfg)
        w = ew_verl.get_watch()
        w.log_dict(0, {"entropy/mean": 1.0})
        w.close()
    finally:
        ew_verl.set_watch(None)
    return json.loads(layout.run_json_path(tmp_path / "store", "verl-sec").read_text(encoding="utf-8"))


def test_no_credential_reaches_run_json_whatever_its_shape(stored: dict) -> None:
    text = json.dumps(stored)
    leaked = [n for n in range(1, 15) if f"LEAK{n:02d}" in text]
    assert leaked == [], f"credentials stored in run.json: {leaked}"


def test_the_settings_advice_reads_are_still_kept(stored: dict) -> None:
    actor = stored["config"]["actor_rollout_ref"]["actor"]
    assert {k: actor[k] for k in KEPT} == KEPT
    assert stored["config"]["actor_rollout_ref"]["rollout"] == {"n": 8}
    assert stored["config"]["trainer"]["env"] == ["PYTHONHASHSEED=0"]  # the harmless entry of an env list stays


@pytest.mark.parametrize("key", ["max_num_batched_tokens", "tokenizer", "prompt_key", "reward_fn_key", "image_key",
                                 "skip_tokenizer_init", "use_kl_loss", "max_token_len", "maxTokens"])  # fmt: skip
def test_keys_that_merely_mention_tokens_or_keys_are_kept(key: str) -> None:
    got = ew_verl.run_config({"algorithm": {key: 1}})
    assert got == {"algorithm": {key: 1}}
