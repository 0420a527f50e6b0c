"""The loop end to end: a pinned 20-iteration trajectory, bit-exact resume, ``--model PATH`` with a saved HF model,
and the bf16-naive ratio bias against fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store
from entropy_watch.trainer.loop import LOSS, RATIO_LOG_MEAN_FIRST, SAMPLER_ENTROPY, train

from .conftest import small_config

# Measured with torch 2.13.0 (CPU, one thread) from the session SFT policy; iterations 0, 9, 19.
PINNED = {
    0: {LOSS: 0.0056536812, SAMPLER_ENTROPY: 0.9268952012},
    9: {LOSS: 0.0046392558, SAMPLER_ENTROPY: 0.8580367565},
    19: {LOSS: -0.0007763656, SAMPLER_ENTROPY: 0.9346259832},
}


def test_pinned_trajectory(sft_policy: Path, tmp_path: Path) -> None:
    cfg = small_config("repo-r", run="pinned", iterations=20)
    res = train(cfg, store=tmp_path, init=sft_policy, strict_hooks=True)
    got = {it: {k: res.history[it][k] for k in PINNED[it]} for it in PINNED}
    for it, vals in PINNED.items():
        for k, v in vals.items():
            assert got[it][k] == pytest.approx(v, rel=1e-3, abs=1e-5), (it, k, got[it][k], v)


def test_resume_continues_the_same_trajectory(sft_policy: Path, tmp_path: Path) -> None:
    full = small_config("adapo", run="full", iterations=6)
    ref = train(full, store=tmp_path, init=sft_policy, strict_hooks=True)

    cut = small_config("adapo", run="cut", iterations=6)
    cut.checkpoint_every = 3

    def crash(it: int, rec: dict[str, float]) -> None:
        if it == 3:  # after the checkpoint of iteration 3 (3 done) and one more iteration
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cut, store=tmp_path, init=sft_policy, strict_hooks=True, on_iteration=crash)
    resumed = train(cut, store=tmp_path, resume=True, strict_hooks=True)
    assert [h["iteration"] for h in resumed.history] == list(range(6))
    for a, b in zip(ref.history, resumed.history, strict=True):
        for key in (LOSS, SAMPLER_ENTROPY, M.REWARD_MEAN, M.CONTROL_EPS_HIGH):
            assert a[key] == b[key], (a["iteration"], key)
    events = Store(tmp_path).table("cut", "events").to_pylist()
    assert [e["kind"] for e in events if e["kind"] == "resume"] == ["resume"]
    assert [e["step"] for e in events if e["kind"] == "resume"] == [3]


def test_model_path_trains_a_saved_hf_model(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from entropy_watch.cli import main
    from entropy_watch.trainer.tokenizer import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id)
    )  # fmt: skip
    model.save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    store = tmp_path / "store"
    try:
        main(["--store", str(store), "train", "--model", str(tmp_path / "llama"), "--steps", "2", "--sft-steps", "5",
              "--run", "llama-path", "--device", "cpu", "--json"])  # fmt: skip
    except SystemExit as e:  # main() exits only on errors
        pytest.fail(f"train --model exited with {e.code}")
    s = Store(store)
    assert s.run_meta("llama-path")["config"]["model"]["path"] == str(tmp_path / "llama")
    steps, ent = s.series("llama-path", M.ENTROPY_MEAN)
    assert list(steps) == [0, 1] and (ent > 0).all()


def test_bf16_naive_shows_a_ratio_gap_where_fp32_shows_none(sft_policy: Path, tmp_path: Path) -> None:
    """First mini-batch (no update yet): fp32 trainer and sampler agree to ~1e-9; the naive bf16 log-softmax does not.

    The sign of the naive path's mean log-ratio depends on the policy (see ``trainer/model.py``), so only its size is
    asserted; the benchmark reports the signed values.
    """
    out = {}
    for prec in ("fp32", "bf16", "bf16-naive"):
        cfg = small_config("grpo", run=f"prec-{prec}", iterations=1)
        cfg.model.precision = prec
        cfg.rl.prompts, cfg.rl.group_size, cfg.rl.epochs, cfg.rl.minibatches = 16, 8, 1, 1  # first mini-batch only
        res = train(cfg, store=tmp_path, init=sft_policy, strict_hooks=True)
        stored = Store(tmp_path).series(cfg.run, M.RATIO_LOG_MEAN)[1][0]  # one mini-batch: the stored value agrees
        assert stored == pytest.approx(res.history[0][RATIO_LOG_MEAN_FIRST], abs=1e-6)
        out[prec] = (res.history[0][RATIO_LOG_MEAN_FIRST], res.history[0][M.PRECISION_LOGP_GAP_MEAN])
    assert abs(out["fp32"][0]) < 1e-6 and out["fp32"][1] < 1e-6
    assert out["bf16"][1] < 1e-6  # upcast before the log-softmax on both sides: no gap
    assert abs(out["bf16-naive"][0]) > 1e-4 and out["bf16-naive"][1] > 1e-3
