"""Hold entropy inside a TRL ``GRPOTrainer`` with one argument: ``attach(trainer, control="repo-r")``.

    python examples/trl_control.py                        # GRPO, REPO-R, ADAPO, TRL's adaptive bonus: ~4 min on CPU
    python examples/trl_control.py --runs grpo,repo-r     # a subset
    entropy-watch show trl-control-repo-r

The task is the reference trainer's ``sum3`` (prompt ``S=13>``, answer three digits summing to S: up to 75 correct
answers per prompt, so a policy can keep its entropy and still be right) with its tiny GPT and 15-token tokenizer,
built in code (offline), after a short SFT warm-up on uniformly drawn correct answers. Every run starts from the same
warm-up and seed; only the control differs:

* ``grpo``: plain TRL GRPO (``attach`` without control, which changes nothing in training);
* ``repo-r``: ``attach(trainer, control=ControlConfig("repo-r", zeta_max=0.25))`` — ζ_max 0.25 because a 15-token
  vocabulary spreads REPO's centred log-prob far less than an LLM's (0.05 is the paper's bound for LLMs);
* ``adapo``: ``attach(trainer, control="adapo")`` — ε_high steered from TRL's 0.28 within [0.2, 1.0];
* ``trl-adaptive``: TRL's own adaptive entropy bonus (``use_adaptive_entropy=True``, ``entropy_target`` = the plain
  run's H_ref, TRL's defaults otherwise), the reference point.

It prints, per run, H_ref (the controller's: median over the first 5 iterations of their mean entropy), H_end/H_ref
(H_end: mean of the last 20 steps) and the reward of the last 25 generation batches (100 steps). The same builders
serve ``tests/integrations/test_trl_control.py``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

H_REF_ITERATIONS = 5  # H_ref: median over the first iterations of their mean entropy (ControlConfig.ref_steps)
END_STEPS = 20  # H_end: mean entropy of the last steps (5 iterations of 4 steps)
REWARD_GENERATIONS = 25  # reward: mean of the last generation batches (100 steps)
RUNS = ("grpo", "repo-r", "adapo", "trl-adaptive")


def sft_policy(path: str | Path, seed: int = 0, steps: int = 600) -> Path:
    """The reference trainer's tiny GPT after ``steps`` SFT steps on sum3, saved with ``save_pretrained``."""
    import torch

    from entropy_watch.trainer.config import ModelConfig, SFTConfig
    from entropy_watch.trainer.model import build_model
    from entropy_watch.trainer.sft import run_sft, save_policy
    from entropy_watch.trainer.tasks import get_task
    from entropy_watch.trainer.tokenizer import build_tokenizer

    path = Path(path)
    if (path / "config.json").exists():
        return path
    torch.set_num_threads(1)
    tok = build_tokenizer()
    model = build_model(ModelConfig(), len(tok), tok.eos_token_id, seed)
    run_sft(model, tok, get_task("sum3"), SFTConfig(steps=steps), seed)
    return save_policy(model, tok, path)


def sum3_reward(completions: list[str], prompts: list[str], **kwargs: Any) -> list[float]:
    """1.0 when the completion is three digits summing to the prompt's S (``S=13>``), else 0.0."""
    from entropy_watch.trainer.tasks import get_task

    task = get_task("sum3")
    return [task.reward(int(p[2:4]), c) for p, c in zip(prompts, completions, strict=True)]


def build_trainer(policy: str | Path, output_dir: str, seed: int = 0, **config: Any) -> Any:
    """A ``GRPOTrainer`` on sum3 from the SFT ``policy``: 8 prompts x 8 samples per generation, 2 optimizer steps per
    generation and 2 passes over it (``steps_per_generation=2``, ``num_iterations=2``: clipping binds), lr 6e-4."""
    import numpy as np
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from entropy_watch.trainer.checkpoint import load_policy

    model, tok = load_policy(policy)
    model.train()
    tok.padding_side = "left"
    rng = np.random.default_rng(seed)
    data = Dataset.from_dict({"prompt": [f"S={int(s):02d}>" for s in rng.integers(0, 28, 4096)]})
    kw: dict[str, Any] = dict(
        output_dir=output_dir, bf16=False, use_cpu=True, report_to="none", per_device_train_batch_size=32,
        num_generations=8, steps_per_generation=2, num_iterations=2, max_completion_length=6, max_steps=480,
        learning_rate=6e-4, lr_scheduler_type="constant", beta=0.0, loss_type="dapo", epsilon_high=0.28,
        logging_steps=1, save_strategy="no", seed=seed, disable_tqdm=True,
    )  # fmt: skip
    kw.update(config)
    trainer = GRPOTrainer(
        model=model, reward_funcs=sum3_reward, args=GRPOConfig(**kw), train_dataset=data, processing_class=tok
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm would print every step's logs
    return trainer


def summarize(trainer: Any) -> dict[str, float]:
    """H_ref, H_end/H_ref and the final reward from TRL's own ``log_history`` (``logging_steps=1``).

    H_ref is the controller's: the median over the first 5 iterations (generation batches) of their mean entropy;
    H_end the mean entropy of the last :data:`END_STEPS` steps; the reward the mean of the last
    :data:`REWARD_GENERATIONS` generation batches (TRL logs it once per generation)."""
    from entropy_watch.hooks.control import iteration_steps

    w = iteration_steps(trainer)
    ent = [h["entropy"] for h in trainer.state.log_history if "entropy" in h]
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    windows = [statistics.fmean(ent[i : i + w]) for i in range(0, len(ent) - w + 1, w)]
    h_ref = statistics.median(windows[:H_REF_ITERATIONS])
    h_end = statistics.fmean(ent[-END_STEPS:])
    return {
        "h_ref": h_ref,
        "h_end": h_end,
        "h_ratio": h_end / h_ref,
        "reward": statistics.fmean(rewards[-REWARD_GENERATIONS:]),
        "reward_start": statistics.fmean(rewards[:REWARD_GENERATIONS]),
        "steps": float(len(ent)),
    }


def controls() -> dict[str, Any]:
    """The ``control=`` of each run: REPO-R with zeta_max 0.25 (a 15-token vocabulary), ADAPO as shipped."""
    from entropy_watch.hooks.control import ControlConfig

    return {"repo-r": ControlConfig("repo-r", zeta_max=0.25), "adapo": "adapo"}


def run(
    name: str,
    policy: str | Path,
    workdir: str | Path,
    store: str | Path | None = None,
    seed: int = 0,
    entropy_target: float | None = None,
    control: Any = None,
    **config: Any,
) -> dict[str, float]:
    """Train one of :data:`RUNS` (run ``trl-control-<name>`` in ``store``) and return :func:`summarize`'s numbers.

    ``control``: passed to ``attach`` instead of the run's default (:func:`controls`)."""
    import torch

    from entropy_watch.hooks.trl import attach

    torch.set_num_threads(1)
    if name == "trl-adaptive":
        config = {"use_adaptive_entropy": True, "entropy_target": entropy_target, **config}
    trainer = build_trainer(policy, str(Path(workdir) / name), seed, **config)
    control = control if control is not None else controls().get(name)
    handle = attach(trainer, run=f"trl-control-{name}", store=store, control=control)
    trainer.train()
    handle.close()
    return summarize(trainer)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {', '.join(RUNS)}")
    p.add_argument("--steps", type=int, default=480)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default=None, help="store root (default $ENTROPY_WATCH_DIR or ./ew_runs)")
    p.add_argument("--workdir", default="/tmp/ew-trl-control")
    a = p.parse_args()

    policy = sft_policy(Path(a.workdir) / f"sft-s{a.seed}", a.seed)
    results: dict[str, dict[str, float]] = {}
    for name in a.runs.split(","):
        target = results["grpo"]["h_ref"] if "grpo" in results else None
        if name == "trl-adaptive" and target is None:
            target = run("grpo", policy, a.workdir, a.store, a.seed, max_steps=4 * H_REF_ITERATIONS)["h_ref"]
        results[name] = run(name, policy, a.workdir, a.store, a.seed, target, max_steps=a.steps)
    print(f"{'run':<14}{'H_ref':>8}{'H_end/H_ref':>13}{'reward':>8}  (reward at start)")
    for name, r in results.items():
        print(f"{name:<14}{r['h_ref']:>8.3f}{r['h_ratio']:>13.2f}{r['reward']:>8.3f}  ({r['reward_start']:.3f})")


if __name__ == "__main__":
    main()
