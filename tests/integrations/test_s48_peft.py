"""The hooks on the models users post-train: PEFT LoRA adapters, with gradient checkpointing, through TRL's
``GRPOTrainer`` (``attach``, with and without control) and a plain ``transformers.Trainer``
(``EntropyWatchCallback``). Tiny Qwen2 on CPU, offline.

What a LoRA run needs from the hooks: the entropy they record is the policy's (float64 recomputation from the hidden
states of the same loss forward), control still reaches the loss, nothing adds a forward pass, and ``run.json``
says the run trained adapters (rank, alpha, target modules) and which seed it ran with — a LoRA run and a full
fine-tune of one model lose entropy at different paces, and the store could not tell them apart.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from entropy_watch import metrics as M
from entropy_watch.store import Store

pytestmark = pytest.mark.slow


def _lora() -> object:
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def _train_lora_grpo(tiny_trl, tmp_path, run: str, control: str | None):
    """GRPO with a LoRA adapter and gradient checkpointing; returns the trainer, the handle, the float64 entropy of
    each step's loss forwards (recomputed from their hidden states) and the backbone's forward count."""
    import torch
    from trl import GRPOTrainer

    from entropy_watch.hooks.trl import attach

    tok = tiny_trl.tiny_tokenizer()
    trainer = GRPOTrainer(
        model=tiny_trl.tiny_model(tok),
        reward_funcs=tiny_trl.reward_yes,
        args=tiny_trl.grpo_config(str(tmp_path / run), max_steps=2, gradient_checkpointing=True, seed=3),
        train_dataset=tiny_trl.tiny_dataset(16),
        processing_class=tok,
        peft_config=_lora(),
    )
    base = trainer.model.get_base_model()
    seen: dict[str, object] = {"forwards": 0}

    def keep_hidden(module, args, out):  # TRL's fused LM head never materialises the logits: rebuild them
        seen["forwards"] = int(seen["forwards"]) + 1  # type: ignore[call-overload]
        seen["hidden"] = out.last_hidden_state.detach()

    base.model.register_forward_hook(keep_hidden)
    ref: dict[int, list[float]] = defaultdict(list)
    inner_logps, inner_loss = trainer._get_per_token_logps_and_entropies, trainer.compute_loss

    def logps(*a, **k):
        out = inner_logps(*a, **k)
        if k.get("compute_entropy"):
            keep = k["logits_to_keep"] if "logits_to_keep" in k else a[3]
            logits = seen["hidden"][:, :-1].double() @ base.lm_head.weight.double().T  # type: ignore[index]
            logp = torch.log_softmax(logits[:, -keep:], -1)  # temperature 1 (grpo_config)
            seen["entropy"] = -(logp.exp() * logp).sum(-1)
        return out

    def loss(model, inputs, *a, **k):
        out = inner_loss(model, inputs, *a, **k)
        if trainer.model.training:
            m = inputs["completion_mask"].double()
            ref[trainer.state.global_step + 1].append(float((seen["entropy"] * m).sum() / m.sum()))  # type: ignore[operator]
        return out

    trainer._get_per_token_logps_and_entropies, trainer.compute_loss = logps, loss  # installed first: attach wraps them
    handle = attach(trainer, run=run, store=tmp_path / "store", strict=True, flush_secs=0.05, control=control)
    trainer.train()
    handle.close()
    assert handle.watch.errors == 0 and handle.mode == "per-token"
    return trainer, handle, ref, seen["forwards"]


def test_lora_with_gradient_checkpointing_records_the_policy_entropy(tiny_trl, tmp_path):
    store = Store(tmp_path / "store")
    runs = {}
    for control in (None, "repo-r"):
        run = f"lora-{control}"
        trainer, handle, ref, forwards = _train_lora_grpo(tiny_trl, tmp_path, run, control)
        steps, ours = store.series(run, M.ENTROPY_MEAN)
        assert steps.tolist() == [1, 2]
        for step, value in zip(steps.tolist(), ours.tolist(), strict=True):  # mean over the step's loss forwards
            assert value == pytest.approx(sum(ref[step]) / len(ref[step]), abs=1e-5), (control, step)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        runs[control] = (losses, forwards)

        meta = store.run_meta(run)
        assert meta["seed"] == 3, "run.json's seed is the Trainer's"
        lora = meta["peft"]["adapters"]["default"]
        assert (lora["peft_type"], lora["r"], lora["lora_alpha"]) == ("LORA", 4, 8)
        assert sorted(lora["target_modules"]) == ["q_proj", "v_proj"]
        assert meta["peft"]["active"] == ["default"] and meta["peft"]["version"]
    (plain, plain_fwd), (held, held_fwd) = runs[None], runs["repo-r"]
    assert plain_fwd == held_fwd, "control adds no forward pass"
    assert plain[0] != held[0], "REPO-R's advantages reach the loss of the LoRA model"


def test_trainer_callback_records_the_adapters_of_a_peft_model(tiny_trl, tmp_path):
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    from entropy_watch.hooks.hf import EntropyWatchCallback

    tok = tiny_trl.tiny_tokenizer()
    model = get_peft_model(tiny_trl.tiny_model(tok), _lora())
    ids = [tok(p)["input_ids"][:3] + [tok.eos_token_id] for p in tiny_trl.PROMPTS]
    ids = [x + [tok.pad_token_id] * (5 - len(x)) for x in ids]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), run_name="sft-lora", per_device_train_batch_size=4,
                             max_steps=2, logging_steps=1, use_cpu=True, report_to="none", save_strategy="no",
                             disable_tqdm=True, gradient_checkpointing=True, seed=7)  # fmt: skip
    cb = EntropyWatchCallback(store=tmp_path / "store", strict=True)
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": ids, "labels": ids}),
                      callbacks=[cb])  # fmt: skip
    trainer.train()
    cb.watch.close()
    store = Store(tmp_path / "store")
    assert store.series("sft-lora", "loss")[0].tolist() == [1, 2]
    meta = store.run_meta("sft-lora")
    assert meta["seed"] == 7
    assert meta["peft"]["adapters"]["default"]["r"] == 4
    assert meta["training_args"]["gradient_checkpointing"] is True


def test_a_model_without_adapters_records_none(tiny_trl):
    from entropy_watch.hooks.hf import adapter_meta

    assert adapter_meta(tiny_trl.tiny_model(tiny_trl.tiny_tokenizer())) is None
    assert adapter_meta(None) is None
