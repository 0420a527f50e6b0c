"""``EntropyWatchCallback`` on a real tiny ``transformers.Trainer`` run (causal LM on the tiny Qwen2, CPU)."""

from __future__ import annotations

import pytest

from entropy_watch import metrics as M
from entropy_watch.store import Store

pytestmark = pytest.mark.slow


def test_callback_records_logged_scalars(tiny_trl, tmp_path):
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from entropy_watch.hooks.hf import EntropyWatchCallback

    tok = tiny_trl.tiny_tokenizer()
    model = tiny_trl.tiny_model(tok)
    ids = [tok(p)["input_ids"][:3] + [tok.eos_token_id] for p in tiny_trl.PROMPTS]
    ids = [x + [tok.pad_token_id] * (5 - len(x)) for x in ids]
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    args = TrainingArguments(output_dir=str(tmp_path / "out"), run_name="hf-sft", per_device_train_batch_size=4,
                             max_steps=3, logging_steps=1, use_cpu=True, report_to="none", save_strategy="no",
                             disable_tqdm=True)  # fmt: skip
    cb = EntropyWatchCallback(store=tmp_path / "store", strict=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    trainer.train()
    trainer.log({"entropy": 1.25, "reward": 0.5, "eval_reward": 0.9, "note": "text"})  # as a subclass would
    cb.watch.close()
    store = Store(tmp_path / "store")
    assert store.runs()[0].name == "hf-sft"
    steps, loss = store.series("hf-sft", "loss")
    assert steps.tolist() == [1, 2, 3]
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert loss.tolist() == pytest.approx(logged)
    assert store.series("hf-sft", M.ENTROPY_MEAN)[1].tolist() == [1.25]
    assert store.series("hf-sft", M.REWARD_MEAN)[1].tolist() == [0.5]  # not eval_reward
    assert store.series("hf-sft", "eval_reward")[1].tolist() == [0.9]
    meta = store.run_meta("hf-sft")
    assert meta["training_args"]["max_steps"] == 3 and meta["world_size"] == 1
    assert torch.is_tensor(next(model.parameters()))
