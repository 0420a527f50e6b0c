"""Configuration of the reference trainer: one dataclass per configurable thing, presets ``tiny`` and ``gpu``.

Every field is documented once, here; ``__post_init__`` validates and says what to change. Nothing is read at import
time. The named algorithms are plain dicts of overrides of :class:`AlgoConfig` (:data:`ALGOS`), so GRPO and REPO-R
differ by one key. ALGORITHMS.md states the formulas; ``docs/papers.md`` maps each default to its source.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entropy_watch.errors import ConfigError
from entropy_watch.trainer.tasks import TASKS, Surface
from entropy_watch.trainer.tokenizer import NUMERAL_SCRIPTS, PLUS_SIGNS

if TYPE_CHECKING:
    from entropy_watch.store.fs import StorePath

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "bf16-fp32head", "bf16-naive")
ADVANTAGE_KINDS: tuple[str, ...] = ("grpo", "dr_grpo", "rloo")
AGGREGATION_KINDS: tuple[str, ...] = ("token-mean", "seq-mean-token-mean")
REPO_MODES: tuple[str, ...] = ("", "r", "d")
CENTERINGS: tuple[str, ...] = ("exact", "raw")
CONTROLLERS: tuple[str, ...] = ("", "zeta", "adapo", "entropy")


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def _finite(x: float) -> bool:
    """A real, finite number (NaN and ±inf are refused where a value must be one; ``eps_high`` may be inf)."""
    try:
        return not isinstance(x, bool) and math.isfinite(x)
    except (TypeError, ValueError):
        return False


@dataclass
class ModelConfig:
    """The policy network. Built in code (a GPT-2 shaped transformer) unless ``path`` names a local HF model."""

    path: str | None = None
    """Local directory of any HF causal LM + tokenizer (``save_pretrained`` layout); None builds the tiny GPT."""
    n_layer: int = 2
    """Transformer blocks of the model built in code."""
    n_embd: int = 64
    """Width of the model built in code."""
    n_head: int = 4
    """Attention heads of the model built in code (must divide ``n_embd``)."""
    n_positions: int = 16
    """Context length of the model built in code (prompt + completion tokens)."""
    precision: str = "fp32"
    """fp32 | bf16 (bf16 matmuls) | bf16-fp32head (bf16 body, fp32 lm head) | bf16-naive (log of bf16 probabilities:
    demonstrates the ratio bias; never use it to train)."""

    def __post_init__(self) -> None:
        _check(self.precision in PRECISIONS, f"precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        _check(self.n_layer >= 1 and self.n_embd >= 1 and self.n_positions >= 8, "model sizes must be positive")
        _check(self.n_embd % self.n_head == 0, f"n_head={self.n_head} must divide n_embd={self.n_embd}")


@dataclass
class TaskConfig:
    """The verifiable task (see ``tasks.py``)."""

    name: str = "sum3"
    """sum3: three digits that sum to S (task A); sum3sorted: the same, non-decreasing (task B, the probe)."""
    max_new_tokens: int = 6
    """Completion budget in tokens; completions without the end token by then count as truncated (reward 0)."""
    scripts: int = 1
    """Numeral scripts in the vocabulary (``tokenizer.NUMERAL_SCRIPTS``; 1 = ASCII digits only, 15 tokens): each
    further script adds ten synonyms of the digits, the long tail of rare tokens (their use: ``zipf``)."""
    plus_signs: int = 1
    """Signs that read as ``+`` in the vocabulary (``tokenizer.PLUS_SIGNS``; 1 = ``+`` only): synonyms of the
    separator."""
    zipf: float = 1.0
    """The warm-up data writes each digit in numeral script k (0 = ASCII) and each ``+`` as plus sign k with
    probability proportional to ``(k + 1) ** -zipf``: a Zipf-like long tail of surface forms (no effect in ASCII)."""

    def __post_init__(self) -> None:
        _check(self.name in TASKS, f"task {self.name!r}; use one of {', '.join(TASKS)}")
        _check(self.max_new_tokens >= 1, "max_new_tokens must be >= 1")
        _check(1 <= self.scripts <= len(NUMERAL_SCRIPTS), f"scripts={self.scripts}; use 1..{len(NUMERAL_SCRIPTS)}")
        _check(1 <= self.plus_signs <= len(PLUS_SIGNS), f"plus_signs={self.plus_signs}; use 1..{len(PLUS_SIGNS)}")
        _check(self.zipf >= 0, f"zipf={self.zipf}; use >= 0 (0 = every surface form equally often)")

    def surface(self) -> Surface:
        """How answers are written (vocabulary and the warm-up data's use of it)."""
        return Surface(self.scripts, self.plus_signs, self.zipf)


@dataclass
class SFTConfig:
    """Supervised warm-up on uniformly sampled correct answers, so RL starts calibrated and diverse."""

    steps: int = 600
    """Optimizer steps (0 skips the warm-up)."""
    batch_size: int = 64
    """Sequences per step."""
    lr: float = 1e-3
    """AdamW learning rate."""

    def __post_init__(self) -> None:
        _check(self.steps >= 0 and self.batch_size >= 1, "SFT steps >= 0, batch_size >= 1")
        _check(_finite(self.lr) and self.lr > 0, f"SFT lr={self.lr!r}; use a finite number > 0")


@dataclass
class AlgoConfig:
    """The RL algorithm: advantage, surrogate, aggregation and the entropy-control method (ALGORITHMS.md)."""

    advantage: str = "grpo"
    """grpo: (r - mean)/(std + 1e-6); dr_grpo: r - mean; rloo: r - mean of the others."""
    aggregation: str = "token-mean"
    """token-mean (sum over valid tokens / their count) or seq-mean-token-mean (original GRPO)."""
    eps_low: float = 0.2
    """Lower clip width: ratio >= 1 - eps_low."""
    eps_high: float = 0.2
    """Upper clip width: ratio <= 1 + eps_high (DAPO/ADAPO start at 0.28)."""
    kl_coef: float = 0.0
    """Weight of the k3 KL to the initial (reference) policy; 0 keeps no reference model."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal (no regeneration; the update uses the rest)."""
    repo: str = ""
    """'' off; 'r': REPO-R (beta = zeta*|A|); 'd': REPO-D (beta = zeta * batch decorrelation coefficient, ours)."""
    centering: str = "exact"
    """REPO's L: exact (logp + H, zero mean under pi) or raw (logp only, what logits-free code uses)."""
    controller: str = ""
    """'' none; zeta (REPO); adapo (eps_high); entropy (adaptive entropy-bonus coefficient)."""
    target_entropy: float | None = None
    """Controller target in nats; None = H_0, the mean token entropy of the first rollout batch."""
    zeta0: float = 1e-3
    """Initial REPO zeta."""
    zeta_min: float = 1e-4
    """Smallest |zeta| before the controller flips its sign."""
    zeta_max: float = 0.05
    """Largest |zeta|. Scales with the spread of L: 0.05 for LLM vocabularies, 0.25 for a 15-token vocabulary."""
    adapo_kappa: float = 1.25
    """ADAPO multiplicative step of eps_high per iteration (our choice)."""
    adapo_eps_min: float = 0.2
    """ADAPO lower bound of eps_high."""
    adapo_eps_max: float = 1.0
    """ADAPO upper bound of eps_high."""
    entropy_coef: float = 0.0
    """Entropy-bonus weight alpha (loss -= alpha * mean H); the adaptive controller moves it."""
    entropy_coef_delta: float = 0.005
    """Adaptive entropy bonus: step of alpha per iteration."""
    entropy_coef_max: float = 1.0
    """Adaptive entropy bonus: alpha is clipped to [0, entropy_coef_max]."""
    clip_cov_ratio: float = 0.0
    """Clip-Cov: fraction of tokens (0 = off, paper 2e-4) with cov in (lb, ub) whose PG term is detached."""
    clip_cov_bounds: tuple[float, float] = (1.0, 5.0)
    """Clip-Cov covariance window (lb, ub)."""
    kl_cov_frac: float = 0.0
    """KL-Cov: fraction (not percent; 0 = off, paper 2e-3) of highest-cov tokens that get the |logp - old| penalty."""
    kl_cov_coef: float = 1.0
    """KL-Cov penalty weight beta."""
    top_entropy_frac: float = 1.0
    """80/20 rule: keep the PG term only for this top fraction of highest-entropy tokens (0.2); 1.0 = all."""

    def __post_init__(self) -> None:
        _check(self.advantage in ADVANTAGE_KINDS, f"advantage {self.advantage!r}; use {', '.join(ADVANTAGE_KINDS)}")
        _check(self.aggregation in AGGREGATION_KINDS, f"aggregation {self.aggregation!r}; use {AGGREGATION_KINDS}")
        _check(self.repo in REPO_MODES, f"repo {self.repo!r}; use '', 'r' or 'd'")
        _check(self.centering in CENTERINGS, f"centering {self.centering!r}; use exact or raw")
        _check(self.controller in CONTROLLERS, f"controller {self.controller!r}; use {CONTROLLERS}")
        _check(0 <= self.eps_low < 1 and self.eps_high >= 0, "need 0 <= eps_low < 1 and eps_high >= 0")
        zetas = f"zeta0={self.zeta0!r}, zeta_min={self.zeta_min!r}, zeta_max={self.zeta_max!r}"
        _check(all(map(_finite, (self.zeta0, self.zeta_min, self.zeta_max))), f"{zetas}; each must be finite")
        _check(0 < self.zeta_min <= self.zeta_max, f"{zetas}; need 0 < zeta_min <= zeta_max")
        # the controller keeps |zeta| in [zeta_min, zeta_max]; a zeta0 outside would run unbounded until it first moves
        _check(not self.repo or self.zeta_min <= abs(self.zeta0) <= self.zeta_max,
               f"{zetas}; need zeta_min <= |zeta0| <= zeta_max")  # fmt: skip
        _check(self.adapo_kappa > 1 and 0 < self.adapo_eps_min <= self.adapo_eps_max, "ADAPO: kappa > 1, bounds")
        _check(
            self.controller != "adapo" or self.adapo_eps_min <= self.eps_high <= self.adapo_eps_max,
            f"eps_high={self.eps_high!r} is ADAPO's start: need adapo_eps_min={self.adapo_eps_min!r} <= eps_high <= "
            f"adapo_eps_max={self.adapo_eps_max!r}",
        )
        _check(0 < self.top_entropy_frac <= 1, "top_entropy_frac must be in (0, 1]")
        _check(0 <= self.clip_cov_ratio < 1 and 0 <= self.kl_cov_frac < 1, "clip_cov_ratio/kl_cov_frac in [0, 1)")
        _check(self.clip_cov_bounds[0] < self.clip_cov_bounds[1], "clip_cov_bounds must be (lb, ub) with lb < ub")
        _check(
            all(_finite(x) and x >= 0 for x in (self.entropy_coef, self.kl_coef)),
            f"entropy_coef={self.entropy_coef!r}, kl_coef={self.kl_coef!r}; each must be a finite number >= 0",
        )
        _check(
            self.target_entropy is None or (_finite(self.target_entropy) and self.target_entropy > 0),
            f"target_entropy={self.target_entropy!r}; use a finite number of nats > 0, or None (H_0)",
        )
        _check(self.controller != "zeta" or self.repo != "", "controller 'zeta' needs repo = 'r' or 'd'")


# Named algorithms: overrides of AlgoConfig. GRPO vs REPO-R is one key plus its controller.
ALGOS: dict[str, dict[str, Any]] = {
    "grpo": {},
    "dr-grpo": {"advantage": "dr_grpo"},
    "rloo": {"advantage": "rloo"},
    "dapo": {"eps_high": 0.28, "dynamic_sampling": True},
    "repo-r": {"repo": "r", "controller": "zeta"},
    "repo-r-raw": {"repo": "r", "controller": "zeta", "centering": "raw"},
    "repo-d": {"repo": "d", "controller": "zeta", "zeta0": 1.0, "zeta_min": 1e-3, "zeta_max": 10.0},
    "adapo": {"eps_high": 0.28, "controller": "adapo"},
    # GRPO without the upper clip (eps_high = inf): the far end of ADAPO's one lever, DAPO's clip-higher taken to its
    # limit. Entropy need not be monotone in eps_high; benchmarks/bench_adapo_authority.py sweeps the range (issue 13).
    "no-upper-clip": {"eps_high": math.inf},
    "entropy-bonus": {"entropy_coef": 0.01},
    "entropy-adaptive": {"controller": "entropy"},
    "clip-cov": {"clip_cov_ratio": 2e-4},
    "kl-cov": {"kl_cov_frac": 2e-3},
    "top-entropy": {"top_entropy_frac": 0.2},
}


@dataclass
class RLConfig:
    """Rollout and optimisation budget of the RL phase."""

    iterations: int = 300
    """Rollout-update iterations (one logged step each)."""
    prompts: int = 8
    """Prompts per iteration."""
    group_size: int = 8
    """Samples per prompt (G)."""
    epochs: int = 2
    """Passes over each rollout batch (> 1 makes the update off-policy so clipping binds)."""
    minibatches: int = 2
    """Optimizer steps per epoch; 1 epoch x 1 minibatch is strictly on-policy."""
    lr: float = 3e-4
    """AdamW learning rate."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0 = off)."""
    temperature: float = 1.0
    """Sampling temperature; entropy and log-probs are taken at it."""
    pred_dh_every: int = 10
    """Every N iterations log ``cov/pred_dH`` (first-order predicted change of the batch's mean token entropy,
    g_H . delta-theta) next to ``entropy/delta_observed`` (the measured change on the same batch); 0 = off. Costs one
    forward+backward and one forward over the batch on those iterations (``entropy_drift.py``)."""

    def __post_init__(self) -> None:
        _check(self.pred_dh_every >= 0, f"pred_dh_every={self.pred_dh_every}; use >= 0 (0 = off)")
        _check(self.iterations >= 0 and self.prompts >= 1 and self.group_size >= 2, "iterations, prompts, G >= 2")
        _check(self.epochs >= 1 and self.minibatches >= 1, "epochs and minibatches must be >= 1")
        n = self.prompts * self.group_size
        _check(n % self.minibatches == 0, f"minibatches={self.minibatches} must divide prompts*group_size={n}")
        _check(_finite(self.lr) and self.lr > 0, f"lr={self.lr!r}; use a finite number > 0")
        _check(
            _finite(self.temperature) and self.temperature > 0,
            f"temperature={self.temperature!r}; use a finite number > 0",
        )
        _check(
            _finite(self.grad_clip) and self.grad_clip >= 0,
            f"grad_clip={self.grad_clip!r}; use a finite number >= 0 (0 = off)",
        )


@dataclass
class EvalConfig:
    """Periodic evaluation: pass@k with the unbiased estimator, distinct correct answers, entropy."""

    every: int = 50
    """Evaluate every N iterations (and at the start and the end); 0 = start and end only."""
    samples: int = 16
    """Samples per prompt (n); pass@k is reported for every k in ``ks`` with k <= n."""
    ks: tuple[int, ...] = (1, 4, 8, 16)
    """The k of pass@k."""
    prompts: int = 0
    """Evaluation prompts; 0 = every prompt of the task once (S = 0..27)."""
    seed: int = 1234
    """Seed of the evaluation sampler (independent of training, so evaluation never shifts the trajectory)."""

    def __post_init__(self) -> None:
        _check(self.samples >= 1 and all(1 <= k <= self.samples for k in self.ks), "need 1 <= k <= samples")


@dataclass
class TrainConfig:
    """Everything one run needs. ``preset(name)`` builds the tested ones."""

    run: str = "grpo-s0"
    """Run name in the store."""
    algo: str = "grpo"
    """Key of :data:`ALGOS` the ``algo_cfg`` was built from (recorded in run.json)."""
    seed: int = 0
    """Seeds the model init, the SFT data and the rollout sampler."""
    device: str = "auto"
    """auto (cuda if available) | cpu | cuda | cuda:N."""
    threads: int = 1
    """torch CPU threads; 1 makes runs bit-for-bit reproducible."""
    checkpoint_every: int = 50
    """Save a resumable checkpoint every N iterations and at the end (0 = end only)."""
    log_every: int = 1
    """Log token statistics every N iterations."""
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    algo_cfg: AlgoConfig = field(default_factory=AlgoConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check(self.threads >= 1 and self.checkpoint_every >= 0 and self.log_every >= 1, "threads/log_every >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: tuple[str, ...] = ("tiny", "gpu")


def algo_config(algo: str, **overrides: Any) -> AlgoConfig:
    """The :class:`AlgoConfig` of a named algorithm, with ``overrides`` applied last."""
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; use one of {', '.join(ALGOS)}")
    return AlgoConfig(**{**ALGOS[algo], **overrides})


def preset(
    name: str, algo: str = "grpo", *, seed: int = 0, run: str | None = None, **algo_overrides: Any
) -> TrainConfig:
    """A complete, tested configuration.

    ``tiny``: the ALGORITHMS.md scale notes (2-layer width-64 GPT, ~100k parameters; 600 SFT steps; 300 iterations
    of 8 prompts x 8, 2 epochs x 2 mini-batches, lr 3e-4, zeta_max 0.25), with a long-tailed vocabulary: the 15
    ASCII tokens plus the digits of 15 more numeral scripts (165 tokens), which the warm-up uses with Zipf weights
    (exponent 2.5), so sampled answers hold rare synonyms as an LLM's hold rare tokens. On the 15-token vocabulary
    pass@16 sat at its ceiling for every algorithm and REPO-R's entropy cost 0.07 of pass@1; on this one (3 seeds,
    issue 13) GRPO's pass@16 is 0.86 and REPO-R gains pass@1. A run takes about a minute on one CPU core.
    ``gpu``: a ~10M-parameter model and 4x the batch for one GPU, bf16 body with an fp32 head, the same vocabulary.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    run = run or f"{algo}-s{seed}"
    # zeta bounds scale with the spread of L (scale notes): ~0.25-0.5 with a 15-token vocabulary, 0.05 for LLMs.
    # 0.5 held seed 0 at 0.97 H_0 but cost 0.14 of pass@1; 0.25 held 0.82 H_0 at -0.03 (300 iterations, issue 13).
    zeta = {"zeta_max": 0.25} if ALGOS.get(algo, {}).get("repo") == "r" else {}
    algo_overrides = {**zeta, **algo_overrides}
    zeta0, zeta_min, zeta_max = (algo_overrides.get(k, ALGOS.get(algo, {}).get(k, getattr(AlgoConfig, k)))
                                 for k in ("zeta0", "zeta_min", "zeta_max"))  # fmt: skip
    if "zeta0" not in algo_overrides and _finite(zeta_max) and zeta_min <= zeta_max < abs(zeta0):
        algo_overrides["zeta0"] = math.copysign(zeta_max, zeta0)  # a cap below the start lowers the start
    algo_cfg = algo_config(algo, **algo_overrides)
    long_tail = TaskConfig(scripts=16, zipf=2.5)  # both presets: digits in 16 numeral scripts, Zipf-weighted warm-up
    if name == "tiny":
        return TrainConfig(run=run, algo=algo, seed=seed, algo_cfg=algo_cfg, task=long_tail)
    return TrainConfig(
        run=run,
        algo=algo,
        seed=seed,
        device="auto",
        task=long_tail,
        checkpoint_every=100,
        model=ModelConfig(n_layer=6, n_embd=384, n_head=6, precision="bf16-fp32head"),
        sft=SFTConfig(steps=1500, batch_size=256, lr=5e-4),
        algo_cfg=algo_cfg,
        rl=RLConfig(iterations=300, prompts=32, group_size=16, epochs=2, minibatches=4, lr=1e-4),
        eval=EvalConfig(every=50, samples=64, ks=(1, 4, 16, 64)),
    )


def local_store(store: str | os.PathLike[str] | StorePath | None = None) -> Path:
    """The store root ``store`` names (:func:`~entropy_watch.store.layout.default_root`), which must be a local folder:
    the trainer writes its checkpoints and policies into the run's folder as files. :class:`ConfigError` for an
    object store (``s3://``), before anything trains."""
    from entropy_watch.store.layout import default_root

    root = default_root(store)
    if not isinstance(root, Path):
        raise ConfigError(
            f"the reference trainer writes checkpoints and policies as local files, and {root} is an object store; "
            "train into a local folder (--store PATH or ENTROPY_WATCH_DIR)"
        )
    return root
