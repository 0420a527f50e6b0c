"""Evaluation: pass@k with the unbiased estimator, distinct correct answers in n samples, token entropy.

pass@k for a prompt with n samples of which c are correct is ``1 - C(n-c, k)/C(n, k)`` (Chen et al. 2021), averaged
over prompts. The evaluation sampler has its own generator, seeded from :class:`EvalConfig`, so evaluating never
changes the training trajectory (resume stays bit-exact).
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np
import torch

from entropy_watch import metrics
from entropy_watch.trainer.config import EvalConfig
from entropy_watch.trainer.rollout import sample
from entropy_watch.trainer.tasks import MAX_SUM, Task, distinct_correct

EVAL_REWARD = "eval/reward_mean"
EVAL_ENTROPY = "eval/entropy_mean"
EVAL_DISTINCT = "eval/distinct_correct"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one prompt: n samples, c correct (Chen et al. 2021, eq. 1)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def eval_targets(cfg: EvalConfig) -> list[int]:
    """The evaluation prompts' targets: every S once, or ``cfg.prompts`` drawn with the eval seed."""
    if cfg.prompts <= 0:
        return list(range(MAX_SUM + 1))
    rng = np.random.default_rng(cfg.seed)
    return [int(s) for s in rng.integers(0, MAX_SUM + 1, size=cfg.prompts)]


def evaluate(
    model: torch.nn.Module,
    tokenizer: Any,
    task: Task,
    cfg: EvalConfig,
    *,
    max_new_tokens: int,
    temperature: float,
    precision: str,
) -> dict[str, float]:
    """Sample ``cfg.samples`` completions per evaluation prompt; return metric name -> value.

    Keys: ``eval/pass@k`` for each k, ``eval/reward_mean`` (= pass@1 estimate from all samples),
    ``eval/distinct_correct`` (mean over prompts of distinct correct answers among the n samples) and
    ``eval/entropy_mean`` (mean token entropy of the samples, nats).
    """
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    targets = eval_targets(cfg)
    ro = sample(
        model, tokenizer, [task.prompt(s) for s in targets], cfg.samples, max_new_tokens, temperature, precision, gen
    )
    n = cfg.samples
    out: dict[str, float] = {}
    correct, distinct = [], []
    for i, s in enumerate(targets):
        texts = ro.texts[i * n : (i + 1) * n]
        correct.append(sum(task.reward(s, t) > 0 for t in texts))
        distinct.append(distinct_correct(task, s, texts))
    for k in cfg.ks:
        out[metrics.pass_at_k(k)] = float(np.mean([pass_at_k(n, c, k) for c in correct]))
    out[EVAL_REWARD] = float(np.mean(correct)) / n
    out[EVAL_DISTINCT] = float(np.mean(distinct))
    out[EVAL_ENTROPY] = float((ro.entropy * ro.mask).sum() / ro.mask.sum().clamp(min=1))
    return out
