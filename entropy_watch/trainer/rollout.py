"""Batched sampling: G completions per prompt at a temperature, with the sampler's log-probs and entropies.

The sampler re-runs the full forward at every new token (no KV cache): completions are a handful of tokens, and the
trainer's forward then computes exactly the same function, so the fp32 trainer-vs-sampler gap is ~0 and any gap in
the bf16 modes is the precision effect, not a cache artefact. The sampler's log-probs are fp32 log-softmax of the
model's logits (like an inference engine) and become ``old_logp`` of the update (no recomputation, so the ratio of
the first mini-batch measures the trainer-vs-sampler gap, notes §d).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from entropy_watch.hooks import token_entropy
from entropy_watch.trainer.model import policy_logits


@dataclass
class Rollout:
    """One batch of sampled completions. ``N`` sequences, prompt length ``P`` (left-padded), completion length ``C``.

    Sequences ``i*G .. i*G+G-1`` share prompt ``i`` (their group id is ``i``).
    """

    input_ids: torch.Tensor  # (N, P + C) prompt then completion; pad after the end token
    attention_mask: torch.Tensor  # (N, P + C) 0 on left padding
    prompt_len: int  # P
    completion: torch.Tensor  # (N, C) sampled token ids
    mask: torch.Tensor  # (N, C) float, 1.0 on completion tokens up to and including the end token
    logp: torch.Tensor  # (N, C) sampler log-probs of the sampled tokens (fp32, nats)
    entropy: torch.Tensor  # (N, C) sampler per-state entropy (fp32, nats)
    texts: list[str]  # (N,) decoded completions without the end token
    truncated: torch.Tensor  # (N,) bool, no end token within the budget
    group_ids: torch.Tensor  # (N,) int64

    @property
    def lengths(self) -> torch.Tensor:
        """Completion lengths in tokens ``(N,)``, the end token included."""
        return self.mask.sum(-1)

    def select(self, idx: torch.Tensor) -> Rollout:
        """The rows ``idx`` (a long tensor) of every per-sequence field."""
        pick = idx.tolist()
        return Rollout(
            self.input_ids[idx],
            self.attention_mask[idx],
            self.prompt_len,
            self.completion[idx],
            self.mask[idx],
            self.logp[idx],
            self.entropy[idx],
            [self.texts[i] for i in pick],
            self.truncated[idx],
            self.group_ids[idx],
        )


def encode_prompts(tokenizer: Any, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and attention mask ``(n, P)``."""
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    out = torch.full((len(ids), width), pad, dtype=torch.long)
    att = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        out[i, width - len(x) :] = torch.tensor(x, dtype=torch.long)
        att[i, width - len(x) :] = 1
    return out.to(device), att.to(device)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: list[str],
    group_size: int,
    max_new_tokens: int,
    temperature: float,
    precision: str,
    generator: torch.Generator,
) -> Rollout:
    """Sample ``group_size`` completions for each prompt (``N = len(prompts) * group_size`` sequences)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    prompt_ids, prompt_att = encode_prompts(tokenizer, prompts, device)
    ids = prompt_ids.repeat_interleave(group_size, 0)
    att = prompt_att.repeat_interleave(group_size, 0)
    n, eos = ids.shape[0], tokenizer.eos_token_id
    done = torch.zeros(n, dtype=torch.bool, device=device)
    toks, logps, ents, masks = [], [], [], []
    for _ in range(max_new_tokens):
        logits = policy_logits(model, ids, att, precision)[:, -1, :]  # (N, V)
        ent, lp_all = token_entropy(logits.float(), temperature), torch.log_softmax(logits.float() / temperature, -1)
        nxt = torch.multinomial(lp_all.exp(), 1, generator=generator).squeeze(-1)  # (N,)
        valid = ~done
        nxt = torch.where(valid, nxt, torch.full_like(nxt, eos))
        toks.append(nxt)
        logps.append(lp_all.gather(-1, nxt.unsqueeze(-1)).squeeze(-1))
        ents.append(ent)
        masks.append(valid.float())
        ids = torch.cat([ids, nxt.unsqueeze(-1)], 1)
        att = torch.cat([att, torch.ones_like(nxt).unsqueeze(-1)], 1)
        done = done | (nxt == eos)
        if bool(done.all()):
            break
    completion = torch.stack(toks, 1)
    mask = torch.stack(masks, 1)
    texts = tokenizer.batch_decode(
        [row[: int(m.sum())].tolist() for row, m in zip(completion.cpu(), mask.cpu(), strict=True)],
        skip_special_tokens=True,
    )
    model.train(was_training)
    return Rollout(
        input_ids=ids,
        attention_mask=att,
        prompt_len=prompt_ids.shape[1],
        completion=completion,
        mask=mask,
        logp=torch.stack(logps, 1) * mask,
        entropy=torch.stack(ents, 1) * mask,
        texts=texts,
        truncated=~done,
        group_ids=torch.arange(len(prompts), device=device).repeat_interleave(group_size),
    )


def completion_forward(
    model: torch.nn.Module, batch: Rollout, precision: str, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trainer forward over a rollout batch: logits of the completion positions ``(B, C, V)`` and ``mask (B, C)``.

    The logit at position ``P - 1 + t`` predicts completion token ``t``. Tempered logits are upcast to fp32 before the
    division, as the sampler does (``sample``), so at any temperature the ``bf16`` mode's log-probs and entropies are
    the sampler's; only ``bf16-naive`` divides in bf16 (its naive path, ``model.token_logp``).
    """
    logits = policy_logits(model, batch.input_ids, batch.attention_mask, precision)
    c = batch.completion.shape[1]
    logits = logits[:, batch.prompt_len - 1 : batch.prompt_len - 1 + c, :]
    if temperature == 1.0:
        return logits, batch.mask
    return (logits if precision == "bf16-naive" else logits.float()) / temperature, batch.mask
