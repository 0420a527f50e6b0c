"""The policy: a tiny causal LM built from a transformers config (no download), or any local HF causal LM.

Precision modes (ALGORITHMS.md "Precision"; REPO paper's numerical-precision finding, notes §d):

* ``fp32``: everything in fp32.
* ``bf16``: the forward runs under bf16 autocast (bf16 weights in matmuls, bf16 logits); log-probs and the ratio
  are computed from the logits upcast to fp32.
* ``bf16-fp32head``: bf16 body, the lm head and log-softmax in fp32 (ScaleRL / MiniMax-M1 recipe).
* ``bf16-naive``: bf16 body and head, and the *trainer's* log-probs from ``log_softmax`` applied to the bf16 logits
  without upcasting (output in bf16), the common naive path. The sampler keeps fp32 log-softmax of the same logits,
  so the first mini-batch's log-ratio is pure rounding: |mean| ~ 1e-3 nats with a per-token spread ~ 7e-3, against
  ~1e-9 in fp32 and exactly 0 in ``bf16`` (same upcast path on both sides). Its *sign* is not fixed here: bf16 rounds
  the log-normaliser of each state to nearest, an error shared by every token of that state, so the batch mean
  follows the states' rounding (measured +1.2e-3 after 600 SFT steps, -7.8e-4 after 150). Note that for two
  normalised distributions E_q[log p/q] = -KL(q||p) <= 0, so the paper's *upward* bias needs log-probs that are not
  normalised (rounded); the mechanism the paper proves is not public (notes §d). The mode exists to show the gap.

The sampler always takes fp32 log-probs of the model's logits (like an inference engine returning fp32 logprobs).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from entropy_watch.trainer.config import ModelConfig


def build_model(cfg: ModelConfig, vocab_size: int, eos_id: int, seed: int) -> torch.nn.Module:
    """A GPT-2 shaped causal LM from ``cfg`` (2 layers x 64 wide = ~100k parameters for the tiny preset)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        resid_pdrop=0.0,  # no dropout: the rollout and the update see the same function
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def load_model(path: str) -> torch.nn.Module:
    """Any local HF causal LM (``save_pretrained`` layout), loaded in fp32 with dropout off."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.use_cache = False
    return model.eval()


def autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast for the bf16 modes, a no-op for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def policy_logits(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, precision: str
) -> torch.Tensor:
    """Next-token logits ``(B, L) -> (B, L, V)`` in the precision mode; fp32 except for ``bf16``/``bf16-naive``.

    Positions come from the attention mask, so left-padded prompts of different lengths line up.
    """
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
    if precision == "fp32":
        return model(**kwargs, use_cache=False).logits.float()
    with autocast(input_ids.device, precision):
        if precision != "bf16-fp32head":
            return model(**kwargs, use_cache=False).logits  # bf16 logits
        hidden = model.base_model(**kwargs, use_cache=False).last_hidden_state
    head = model.get_output_embeddings()  # outside autocast: fp32 head, fp32 logits
    return F.linear(hidden.float(), head.weight.float(), None if head.bias is None else head.bias.float())


def token_logp(logits: torch.Tensor, token_ids: torch.Tensor, precision: str, temperature: float = 1.0) -> torch.Tensor:
    """Log-prob of ``token_ids`` ``(B, T)`` under ``logits / temperature`` ``(B, T, V)`` -> ``(B, T)`` fp32.

    fp32 log-softmax in every mode except ``bf16-naive`` (log-softmax in bf16, see the module docstring).
    """
    idx = token_ids.unsqueeze(-1)
    if precision == "bf16-naive":  # the naive path: no upcast before the temperature and the log-softmax
        z = logits.to(torch.bfloat16)
        z = z / temperature if temperature != 1.0 else z
        return torch.log_softmax(z, dim=-1).gather(-1, idx).squeeze(-1).float()
    # Upcast first, then divide: the sampler does the same, so bf16 modes have no trainer/sampler log-prob gap.
    z = logits.float()
    z = z / temperature if temperature != 1.0 else z
    return torch.log_softmax(z, dim=-1).gather(-1, idx).squeeze(-1)


def n_params(model: torch.nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
