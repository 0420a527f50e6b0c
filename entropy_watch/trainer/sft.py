"""Short SFT warm-up on uniformly sampled correct answers, so RL starts from a calibrated, diverse policy.

Each example is a uniform target S and a correct answer drawn uniformly among S's answers, each digit written in a
numeral script drawn from a Zipf-like distribution when the vocabulary has several (``tasks.sft_examples``);
the loss is the mean cross-entropy of the completion tokens (answer and end token), prompt tokens masked out.
Checkpoints hold the model weights, its config and the tokenizer (``save_pretrained``), so ``--init`` and
``--model`` load them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from entropy_watch.errors import ConfigError
from entropy_watch.trainer.config import SFTConfig
from entropy_watch.trainer.model import policy_logits
from entropy_watch.trainer.rollout import encode_prompts
from entropy_watch.trainer.tasks import ASCII, Surface, Task, sft_examples


def sft_batch(
    tokenizer: Any, pairs: list[tuple[str, str]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, loss_mask)`` of shape ``(B, L)``: left-padded prompts, answers + end token.

    ``loss_mask[b, j]`` is 1 where token ``j`` is a completion token (predicted from position ``j - 1``).
    """
    prompt_ids, prompt_att = encode_prompts(tokenizer, [p for p, _ in pairs], device)
    ans = [tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for _, a in pairs]
    width = max(len(a) for a in ans)
    ans_ids = torch.full((len(ans), width), tokenizer.pad_token_id, dtype=torch.long)
    ans_mask = torch.zeros((len(ans), width), dtype=torch.long)
    for i, a in enumerate(ans):
        ans_ids[i, : len(a)] = torch.tensor(a)
        ans_mask[i, : len(a)] = 1
    ids = torch.cat([prompt_ids, ans_ids.to(device)], 1)
    att = torch.cat([prompt_att, torch.ones_like(ans_mask, device=device)], 1)
    loss_mask = torch.cat([torch.zeros_like(prompt_att), ans_mask.to(device)], 1)
    return ids, att, loss_mask


def run_sft(
    model: torch.nn.Module,
    tokenizer: Any,
    task: Task,
    cfg: SFTConfig,
    seed: int,
    precision: str = "fp32",
    on_step: Callable[[int, float], None] | None = None,
    surface: Surface = ASCII,
) -> list[float]:
    """Train ``model`` in place for ``cfg.steps`` steps; returns the loss of every step (nats per token).

    ``surface``: how the examples write their answers; a tokenizer that cannot write one of its characters (a saved
    ASCII-only vocabulary) is a :class:`ConfigError` before any step."""
    try:
        tokenizer(surface.characters(), add_special_tokens=False)
    except Exception as e:  # a WordLevel vocabulary without the synonyms raises on the first unknown character
        raise ConfigError(
            f"the tokenizer cannot write the task's answers ({surface.scripts} numeral scripts, {surface.plus_signs} "
            f"plus signs): train with scripts=1 (ASCII; --scripts 1) or a tokenizer that has them ({e})"
        ) from e
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(cfg.steps):
        ids, att, loss_mask = sft_batch(tokenizer, sft_examples(task, rng, cfg.batch_size, surface), device)
        logits = policy_logits(model, ids, att, precision)[:, :-1].float()  # position j-1 predicts token j
        target, m = ids[:, 1:], loss_mask[:, 1:].float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
        loss = (nll * m.reshape(-1)).sum() / m.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    return losses


def save_policy(model: torch.nn.Module, tokenizer: Any, path: str | Path) -> Path:
    """Save weights, config and tokenizer with ``save_pretrained`` (loadable by ``--init`` and ``--model``)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the shard-writing bar would interleave with the trainer's
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
