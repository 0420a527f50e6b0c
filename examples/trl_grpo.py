"""TRL ``GRPOTrainer`` with entropy_watch attached in one line.

    python examples/trl_grpo.py                                  # tiny random Qwen2 on CPU, offline: ~40 s on 2 cores
    python examples/trl_grpo.py --model Qwen/Qwen2.5-0.5B-Instruct --steps 200 --num-iterations 2
    entropy-watch show trl-grpo-demo

The one line is ``attach(trainer, run=...)``: it records every scalar TRL logs (under TRL's name and the canonical
one), the config that matters (loss type, epsilons, beta, num_iterations, ...) into ``_run.json``, and, from inside the
loss forward, per-token entropy histograms, clip-low/high fractions recomputed with the trainer's own epsilons,
advantage statistics and covariance terms — reusing TRL's entropy tensor, no second softmax.

The default model is built from a config (vocabulary of ~20 words, 2 layers, 32 wide) with a word-level tokenizer
built in code, so the script needs no download; the reward prefers longer completions made of the word "yes".
The same builders serve the integration tests (tests/integrations).
"""

from __future__ import annotations

import argparse
from typing import Any

WORDS = (
    "yes no maybe the a cat dog sat on mat and then ran fast slow red blue green one two three".split()
)  # 21 words + 3 specials = a 24-token vocabulary
PROMPTS = ("the cat", "a dog", "the red mat", "one two", "blue green", "the dog ran", "a cat sat", "three")


def tiny_tokenizer() -> Any:
    """A word-level ``PreTrainedTokenizerFast`` over :data:`WORDS` plus ``<pad> <eos> <unk>``, left padding."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    fast.padding_side = "left"
    # no token_type_ids: TRL 0.20 (transformers 4.55) passes every tokenizer output to generate(), which Qwen2 refuses
    fast.model_input_names = ["input_ids", "attention_mask"]
    return fast


def tiny_model(tokenizer: Any, seed: int = 0) -> Any:
    """A random 2-layer ``Qwen2ForCausalLM`` (hidden 32) over the tokenizer's vocabulary, built from a config."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(cfg)


def tiny_dataset(n: int = 32) -> Any:
    """``datasets.Dataset`` with a ``prompt`` column of plain strings."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [PROMPTS[i % len(PROMPTS)] for i in range(n)]})


MAX_COMPLETION_TOKENS = 6
REWARD_MAX = 1.0 + 0.05 * MAX_COMPLETION_TOKENS  # reward_yes of 6 "yes" words: above 1, so attach() is told


def reward_yes(completions: list[str], **kwargs: Any) -> list[float]:
    """Share of "yes" words in the completion, plus a small length bonus (so groups rarely tie): at most
    :data:`REWARD_MAX` (a completion has at most ``MAX_COMPLETION_TOKENS`` words)."""
    out = []
    for c in completions:
        words = c.split()
        out.append(sum(w == "yes" for w in words) / max(1, len(words)) + 0.05 * len(words))
    return out


def grpo_config(output_dir: str, **overrides: Any) -> Any:
    """A ``GRPOConfig`` for CPU: fp32, no reporting, 4 completions per prompt, 6 new tokens."""
    from trl import GRPOConfig

    kw: dict[str, Any] = dict(
        output_dir=output_dir,
        bf16=False,
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=MAX_COMPLETION_TOKENS,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        learning_rate=5e-2,
        epsilon_high=0.28,
        num_iterations=2,
        seed=0,
        disable_tqdm=True,
    )
    kw.update(overrides)
    return GRPOConfig(**kw)


def build_trainer(output_dir: str, model: str | None = None, reward: Any = None, **config: Any) -> Any:
    """A ``GRPOTrainer`` on the tiny model (or ``model``, a Hub id or local path) and the tiny dataset, rewarded by
    ``reward`` (default :func:`reward_yes`)."""
    from trl import GRPOTrainer

    if model is None:
        tokenizer = tiny_tokenizer()
        policy: Any = tiny_model(tokenizer)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
        policy = AutoModelForCausalLM.from_pretrained(model)
    return GRPOTrainer(
        model=policy,
        reward_funcs=reward or reward_yes,
        args=grpo_config(output_dir, **config),
        train_dataset=tiny_dataset(64),
        processing_class=tokenizer,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="trl-grpo-demo")
    p.add_argument("--store", default=None, help="store root (default $ENTROPY_WATCH_DIR or ./ew_runs)")
    p.add_argument("--model", default=None, help="Hub id or local path; default: a tiny random Qwen2 (offline)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--num-iterations", type=int, default=2, help="1 = strictly on-policy (clip fractions N/A)")
    p.add_argument("--loss-type", default="dapo")
    p.add_argument("--output-dir", default="/tmp/ew-trl-grpo")
    a = p.parse_args()

    from entropy_watch.hooks.trl import attach

    trainer = build_trainer(
        a.output_dir, a.model, max_steps=a.steps, num_iterations=a.num_iterations, loss_type=a.loss_type
    )
    handle = attach(trainer, run=a.run, store=a.store, reward_max=REWARD_MAX)  # <- the one line (reward_max: not 1)
    trainer.train()
    handle.close()
    print(f"recorded run {a.run!r} ({handle.mode}); see: entropy-watch show {a.run}")


if __name__ == "__main__":
    main()
