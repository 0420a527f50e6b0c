"""Which source column is the step, the entropy, the reward: the alias tables and the lookup.

Beside :mod:`entropy_watch.metrics` (the canonical names) because two tiers read it: the importers, for logs written
long ago, and the hooks that record what a trainer logs live (``hooks/hf.py``, ``hooks/trl.py``, ``hooks/verl.py``).

Trainers spell the same quantity differently (INTEGRATIONS §4): TRL logs ``entropy`` and ``clip_ratio/low_mean``,
verl ``actor/entropy`` and ``actor/pg_clipfrac``, OpenRLHF ``train/entropy_loss`` and ``train/ppo_clip_ratio``, hand
written loops ``entropy_avg``. Each canonical metric has an ordered list of exact aliases (compared case-insensitively,
with one leading ``train/`` or ``train_`` prefix ignored) and, for entropy and reward, a few patterns tried after
them. Evaluation columns (``eval_*``, ``eval/*``, ``val/*``, ``val-*``, ``test/*``) never stand in for a training
metric, except as the last resort for the reward (sparse validation reward, as in the Deep-GRPO runs).

Pure functions over column names; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError

STEP = "step"

# Short keys accepted by ``mapping`` / ``--map`` besides the full canonical names.
SHORT_KEYS: dict[str, str] = {"entropy": M.ENTROPY_MEAN, "reward": M.REWARD_MEAN}

STEP_ALIASES: tuple[str, ...] = (
    "step",
    "global_step",
    # the trainer's own step before W&B's log-call counter: HF's WandbCallback logs train/global_step and leaves
    # _step counting log calls (eval ones too), so _step 37 may be trainer step 370
    "train/global_step",
    "training/global_step",
    "trainer/global_step",
    "_step",
    "iteration",
    "iter",
    "global_steps",
    "steps",
    "update",
    "step_inferred",  # TRL logs exported without a step column, the step recovered from logging_steps
)

VERL_DUAL_CLIP = "actor/pg_clipfrac_lower"
"""verl's dual-clip share under its ``vanilla`` loss only; another number under other losses (ALIASES below)."""

# canonical -> exact source names, best first (INTEGRATIONS §4 for TRL / verl / OpenRLHF, the real runs for the rest).
ALIASES: dict[str, tuple[str, ...]] = {
    M.ENTROPY_MEAN: (
        M.ENTROPY_MEAN,
        "entropy",  # TRL GRPO (pi_theta during the update, token mean)
        "actor/entropy",  # verl >= 0.4.1 (pi_old, recompute pass before the update)
        "policy_entropy",
        "entropy_avg",  # rasbt/reasoning-from-scratch
        "entropy_mean",
        "mean_entropy",
        "avg_entropy",
        "entropy/avg",
        "optim/entropy",  # tinker
        "policy/entropy",
        "policy/entropy_avg",
        "actor/entropy_loss",  # verl: pi_theta during the update (also the pre-0.4.1 name of the entropy)
        "entropy_loss",  # OpenRLHF (train/entropy_loss in TensorBoard): mean token entropy, not a loss
        "objective/entropy",  # TRL PPO: sequence-summed sampled-token NLL
        # The trainers below: ENTROPY_DEFINITIONS says what each is; docs/integrations.md lists the sources.
        "approx_entropy",  # NeMo-RL train/approx_entropy (nemo_rl/algorithms/loss_functions.py, ClippedPGLossFn)
        "policy/policy_entropy",  # SkyRL (skyrl_train/workers/worker.py status; trainer.py prefixes policy/)
        "ppo_actor/update/entropy/avg",  # AReaL (areal/engine/ppo/actor.py grpo_loss_fn, stats_tracker scope)
    ),
    M.REWARD_MEAN: (
        M.REWARD_MEAN,
        "reward",  # TRL, OpenRLHF
        "reward_avg",  # rasbt
        "reward_mean",
        "mean_reward",
        "avg_reward",
        "rewards/mean",
        "rollout/reward_mean",  # OpenRLHF
        "critic/score/mean",  # verl (sequence score before the KL penalty)
        "critic/rewards/mean",
        "env/all/reward/total",  # tinker
        "env/reward/total",
        "objective/scores",  # TRL PPO
        "score",
        "reward/avg_raw_reward",  # SkyRL (skyrl_train/trainer.py postprocess_generator_output)
        "reward/all/mean",  # prime-rl orchestrator (src/prime_rl/orchestrator/metrics.py MetricsBuilder)
        "rollout/raw_reward",  # slime (rollout/* against rollout/step)
        "ppo_actor/task_reward/avg",  # AReaL (areal/engine/ppo/actor.py ppo_update, before the KL reward)
        "rewards",  # torchtune GRPO recipe (recipes/dev/grpo_full_finetune_distributed.py log_metrics)
    ),
    M.REWARD_STD: (M.REWARD_STD, "reward_std", "rollout/reward_std", "critic/score/std"),
    M.CLIP_LOW_FRAC: (M.CLIP_LOW_FRAC, "clip_ratio/low_mean", "actor/ew_clipfrac_low"),
    # TRL's CISPO logs no clip_ratio/*: its cispo_clip_ratio is the high side (ratio > epsilon_high, an absolute cap,
    # with A > 0), what the TRL hook records as clip/high_frac under CISPO (TRL >= 0.26).
    M.CLIP_HIGH_FRAC: (M.CLIP_HIGH_FRAC, "clip_ratio/high_mean", "actor/ew_clipfrac_high", "cispo_clip_ratio"),
    # verl's pg_clipfrac and OpenRLHF's ppo_clip_ratio count low+high binding together.
    M.CLIP_REGION_FRAC: (
        M.CLIP_REGION_FRAC,
        "clip_ratio/region_mean",
        "actor/pg_clipfrac",
        "ppo_clip_ratio",
        "policy/ppo_clip_ratio",  # SkyRL (worker.py status "ppo_clip_ratio", prefixed policy/)
        "pg_clipfrac",  # slime train/pg_clipfrac (slime/backends/megatron_utils/loss.py reported_loss)
        "ppo_actor/update/clip_ratio/avg",  # AReaL clip_mask: where the clip binds, low and high
        # ROLL (roll/pipeline/rlvr/actor_worker.py): lt(surr2, surr1), where the clip binds. Its
        # actor/ppo_ratio_{low,high}_clipfrac count the ratio outside the range whatever the advantage's sign,
        # not the binding side clip/{low,high}_frac mean, so they stand for neither.
        "actor/clipfrac",
    ),
    # Not verl's actor/pg_clipfrac_lower: the dual-clip share under its vanilla loss only, another number under
    # geo_mean, dppo_*, gspo... (hooks/verl_config.py DUAL_CLIP_LOSSES). Its log does not say the loss, so an
    # imported verl log keeps it under verl's name; the verl hook, which reads the loss mode, records it as dual.
    M.CLIP_DUAL_FRAC: (M.CLIP_DUAL_FRAC, "ppo_actor/update/dual_clip_ratio/avg"),  # AReaL
    M.ADV_MEAN: (M.ADV_MEAN, "critic/advantages/mean", "adv_avg", "adv_mean", "advantage_mean"),
    M.ADV_STD: (M.ADV_STD, "adv_std", "advantage_std", "critic/advantages/std"),
    M.ADV_MIN: (M.ADV_MIN, "critic/advantages/min"),
    M.ADV_MAX: (M.ADV_MAX, "critic/advantages/max"),
    M.ADV_FRAC_ZERO_GROUPS: (M.ADV_FRAC_ZERO_GROUPS, "frac_reward_zero_std"),
    # NeMo-RL's kl_penalty is its KL to the reference (divided back by the coefficient; 0 without one), SkyRL's
    # policy/policy_kl the KL loss to the base model (use_kl_loss), loss/avg_kl its KL-in-reward.
    M.KL_REF: (M.KL_REF, "kl", "actor/kl_loss", "kl_loss", "kl_penalty", "policy/policy_kl", "loss/avg_kl"),
    # AReaL's approx_kl and torchtune's approx_policy_kl compare with the policy that sampled (pi_old).
    M.KL_OLD: (M.KL_OLD, "actor/ppo_kl", "ppo_kl", "ppo_actor/update/approx_kl/avg", "approx_policy_kl"),
    M.LENGTH_MEAN: (
        M.LENGTH_MEAN,
        "completions/mean_length",
        "response_length/mean",
        "response_length",
        "avg_response_len",
        "completion_length",
        "rollout/response_length_mean",
        "mean_gen_tokens_per_sample",  # NeMo-RL (generated tokens; its train/response_lengths held the prompt too)
        "generation_lengths",  # NeMo-RL, older
        "decode_len/all/mean",  # prime-rl orchestrator (seq_len/all/mean holds the prompt too)
        "response_lengths",  # torchtune GRPO recipe (mean of the responses' unpadded lengths)
        # not SkyRL's policy/response_length: the padded batch width (num_actions), not a mean
    ),
    M.LENGTH_TRUNC_FRAC: (
        M.LENGTH_TRUNC_FRAC,
        "completions/clipped_ratio",
        "response_length/clip_ratio",
        "rollout/truncated_rate",
        "truncated",
        "truncation_rate",  # NeMo-RL rollouts (share of samples that hit the length limit)
        "is_truncated/all/mean",  # prime-rl orchestrator
        "ppo_actor/no_eos_ratios/avg",  # AReaL (sequences without EOS)
    ),
    M.PRECISION_LOGP_GAP_MEAN: (M.PRECISION_LOGP_GAP_MEAN, "sampling/sampling_logp_difference/mean"),
    M.PRECISION_LOGP_GAP_MAX: (M.PRECISION_LOGP_GAP_MAX, "sampling/sampling_logp_difference/max"),
    M.CONTROL_ENTROPY_COEF: (M.CONTROL_ENTROPY_COEF, "entropy_coef", "actor/entropy_coeff"),
}

# Tried after the exact aliases, over non-evaluation columns, in sorted column order.
_ENTROPY_PATTERN = re.compile(r"(^|/)(policy_)?entropy(_avg|_mean)?(/mean)?$")  # e.g. actor/main_chain/entropy
_LENGTH_PATTERN = re.compile(r"^response_length/[^/]+/mean$")  # e.g. response_length/main_chain/mean
# Validation rewards, the last resort: val-core/<data>/(reward|acc|score)/mean@<n>, verl's older val/test_score/<data>.
_VAL_REWARD_PATTERNS = (
    re.compile(r"^val-core/.+/(reward|acc|score)/mean@(\d+)$"),
    re.compile(r"^val/test_score/.+$"),
    re.compile(r"^(eval_|eval/|val/)(reward|reward_avg|reward_mean|acc|accuracy)$"),
)
_EVAL_PREFIX = re.compile(r"^(eval|val|valid|validation|test)([_/\-]|$)")

# What "entropy" means, keyed by the source column (lowercase). DETECTION §A.4: never compare across definitions.
ENTROPY_DEFINITIONS: dict[str, str] = {
    "actor/entropy": "full-vocabulary, pi_old (verl recompute pass before the update), aggregated by loss_agg_mode "
    "(token mean by default)",
    "actor/entropy_loss": "full-vocabulary, policy during update (verl pi_theta), aggregated by loss_agg_mode",
    "entropy_loss": "full-vocabulary, policy during update (OpenRLHF), token-weighted mean over action tokens",
    "objective/entropy": "sampled-token NLL summed over the sequence (TRL PPO), not a per-token entropy",
    # -mean over response tokens of (pi_theta/pi_gen)·log pi_theta, under no_grad in the loss (loss_functions.py)
    "approx_entropy": "sampled-token estimate of the policy's entropy during the update (NeMo-RL: importance-weighted "
    "from the generation policy), mean over response tokens",
    # masked_mean(output["entropy"], loss_mask) per micro-batch (worker.py _forward_backward_micro)
    "policy/policy_entropy": "full-vocabulary, policy during update (SkyRL pi_theta), token mean over the loss mask, "
    "averaged over micro-batches",
    # stats_tracker.stat(entropy=..., denominator="n_valid_tokens") in grpo_loss_fn
    "ppo_actor/update/entropy/avg": "full-vocabulary, policy during update (AReaL pi_theta), mean over valid response "
    "tokens",
}
# Definitions that hold only where the log's other columns name the trainer: the column name alone is shared (slime
# and OpenRLHF both log train/entropy_loss; entropy/mean is also this package's own name). (trainer, its signature
# columns (any one, compared lowercase), {column: definition}).
_TRAINER_ENTROPY_DEFINITIONS: tuple[tuple[str, frozenset[str], dict[str, str]], ...] = (
    (
        "slime",  # slime/backends/megatron_utils/loss.py: entropy_loss = sum_of_sample_mean(entropy), logged train/
        frozenset({"rollout/raw_reward", "train/pg_clipfrac"}),
        {
            "train/entropy_loss": "full-vocabulary, policy during update (slime pi_theta), mean of per-sample token "
            "means"
        },
    ),
    (
        "prime-rl",  # src/prime_rl/trainer/rl/train.py: tensors["entropy"] over loss_mask tokens, compute_stats()
        frozenset({"mismatch_kl/mean"}),
        {
            "entropy/mean": "full-vocabulary, policy during update (prime-rl trainer pi_theta), mean over the step's "
            "loss-mask tokens"
        },
    ),
)
# Entropy columns that are not a per-token entropy (ln V does not bound them), keyed like ENTROPY_DEFINITIONS.
SEQUENCE_ENTROPY_COLUMNS = frozenset({"objective/entropy"})
TRL_ENTROPY_DEFINITION = "full-vocabulary, policy during update, mean over completion tokens (TRL GRPO)"
TRL_ENTROPY_COLUMNS = ("entropy", "train/entropy")
# Metrics only TRL's GRPOTrainer/RLOOTrainer log under these names (its ``log_history`` keys; a W&B export prefixes
# ``train/``): a JSONL or CSV of them is TRL's log though it is not a trainer_state.json.
TRL_SIGNATURE = frozenset({"frac_reward_zero_std", "clip_ratio/low_mean", "clip_ratio/high_mean",
                           "clip_ratio/region_mean", "completions/mean_length", "completions/clipped_ratio",
                           "completions/mean_terminated_length"})  # fmt: skip
TRL_SIGNATURE_MIN = 3  # as many of them present


def trl_signature(columns: Iterable[str]) -> list[str]:
    """The TRL-only metric names among ``columns`` when there are at least :data:`TRL_SIGNATURE_MIN` (else [])."""
    found = sorted({c for c in columns if c.lower().removeprefix("train/") in TRL_SIGNATURE})
    return found if len({c.lower().removeprefix("train/") for c in found}) >= TRL_SIGNATURE_MIN else []


# Why a trainer's log holds no entropy, told where its columns name the trainer (INTEGRATIONS §1.2, §2, §3 and the
# 2026-12 update): the fix is a setting of the next run, not a --map.
_NO_ENTROPY_HINTS: tuple[tuple[Callable[[set[str]], bool], str], ...] = (
    (  # before verl's: ROLL's metrics are actor/* too. roll/pipeline/rlvr/actor_worker.py loss_func
        lambda cols: bool(
            cols & {"actor/ppo_ratio_high_clipfrac", "actor/ppo_ratio_low_clipfrac", "actor/train_infer_ratio_mean"}
        ),
        "ROLL's RLVR actor reports no entropy among its actor/* metrics (its loss computes one only for "
        "entropy_loss_coef > 0, and does not log it): record it with a hook (entropy_watch's Watch) in the "
        "actor's loss_func",
    ),
    (  # before OpenRLHF's: torchtune also logs policy_loss. recipes/dev/grpo_full_finetune_distributed.py
        lambda cols: len(cols & {"successes", "approx_policy_kl", "num_stop_tokens"}) >= 2,
        "torchtune's GRPO recipe logs no entropy and has no setting for it: record it with entropy_watch's Watch "
        "in the recipe's grpo_step",
    ),
    (  # nemo_rl/algorithms/loss_functions.py: approx_entropy is in newer ClippedPGLossFn metrics, not older ones
        lambda cols: bool(cols & {"token_mult_prob_error", "mean_gen_tokens_per_sample"}),
        "NeMo-RL logs train/approx_entropy (its sampled-token entropy estimate) from its ClippedPGLossFn only in "
        "versions that report it; an older NeMo-RL's log holds none: upgrade NeMo-RL",
    ),
    (
        lambda cols: any(c.startswith(("actor/", "critic/")) for c in cols),
        "verl logs actor/entropy from its old-log-prob pass, which rollout-correction bypass mode skips, and from "
        "the update only with actor_rollout_ref.actor.calculate_entropy=True (off by default since verl PR #4239) "
        "or a non-zero entropy_coeff: set calculate_entropy=True",
    ),
    (
        lambda cols: bool(cols & {"ppo_clip_ratio", "policy_loss", "rollout/reward_mean"}),
        "OpenRLHF logs entropy_loss, its mean token entropy, only when --actor.entropy_coef is set; 0 logs it "
        "without a bonus",
    ),
    (
        lambda cols: bool(cols & (TRL_SIGNATURE | {"completion_length", "reward_std", "frac_reward_zero_std"})),
        "TRL's GRPOTrainer logs entropy from TRL 0.20 on; an older TRL's log holds none: upgrade TRL",
    ),
)


def missing_entropy_hint(columns: Iterable[str]) -> str | None:
    """What to change in the trainer whose log ``columns`` hold no entropy (verl, OpenRLHF, TRL), or None."""
    cols = {c.lower().removeprefix("train/") for c in columns}
    return next((hint for named, hint in _NO_ENTROPY_HINTS if named(cols)), None)


def canonical_key(key: str) -> str:
    """``entropy`` -> ``entropy/mean``, ``step`` stays, a canonical name stays; else ImportFormatError."""
    k = key.strip()
    if k == STEP or k in M.CANONICAL:
        return k
    if k in SHORT_KEYS:
        return SHORT_KEYS[k]
    accepted = ", ".join([STEP, *SHORT_KEYS, *sorted(ALIASES)])
    raise ImportFormatError(f"unknown mapping key {key!r}; use one of: {accepted} (or any canonical metric name)")


def normalize_mapping(mapping: dict[str, str] | None) -> dict[str, str]:
    """Mapping keys as canonical names (``entropy`` -> ``entropy/mean``); values are source column names."""
    out: dict[str, str] = {}
    for key, column in (mapping or {}).items():
        if not isinstance(column, str) or not column:
            raise ImportFormatError(f"mapping for {key!r} is empty; pass --map {key}=COLUMN")
        out[canonical_key(key)] = column
    return out


def is_eval(name: str) -> bool:
    """True for evaluation/validation columns (``eval_loss``, ``val-core/...``, ``eval/reward``)."""
    return bool(_EVAL_PREFIX.match(name.lower()))


def _lookup(names: Iterable[str]) -> dict[str, str]:
    """Normalized name -> original: lowercase, plus the form without one leading ``train/``/``train_``."""
    table: dict[str, str] = {}
    names = list(names)
    for n in names:
        table.setdefault(n.lower(), n)
    for n in names:
        low = n.lower()
        for prefix in ("train/", "train_"):
            if low.startswith(prefix):
                table.setdefault(low[len(prefix) :], n)
    return table


def find_step_column(columns: Iterable[str]) -> str | None:
    """The step column among ``columns`` (``step``, ``global_step``, ``_step``, ``iteration``, ...), or None."""
    found = step_columns(columns)
    return found[0] if found else None


def step_columns(columns: Iterable[str]) -> list[str]:
    """Every step column among ``columns``, in the order of preference of :func:`find_step_column`."""
    table = _lookup(columns)
    return [table[alias] for alias in STEP_ALIASES if alias in table]


def detect_canonical(columns: Iterable[str]) -> dict[str, str]:
    """Canonical name -> source column for every canonical metric found among ``columns`` (step excluded)."""
    cols = [c for c in columns]
    train_cols = [c for c in cols if not is_eval(c)]
    table = _lookup(train_cols)
    found: dict[str, str] = {}
    for canonical, aliases in ALIASES.items():
        for alias in aliases:
            if alias in table:
                found[canonical] = table[alias]
                break
    if M.ENTROPY_MEAN not in found:
        hits = sorted(c for c in train_cols if _ENTROPY_PATTERN.search(c.lower()))
        if hits:
            found[M.ENTROPY_MEAN] = hits[0]
    if M.LENGTH_MEAN not in found:
        hits = sorted(c for c in train_cols if _LENGTH_PATTERN.match(c.lower()))
        if hits:
            found[M.LENGTH_MEAN] = hits[0]
    if M.REWARD_MEAN not in found:
        val = find_validation_reward(cols)
        if val is not None:
            found[M.REWARD_MEAN] = val
    return found


def find_validation_reward(columns: Iterable[str]) -> str | None:
    """The best validation-reward column (``val-core/<data>/reward/mean@1`` first, lowest ``@n``), or None."""
    cols = sorted(columns)
    for pattern in _VAL_REWARD_PATTERNS:
        hits = [(c, pattern.match(c.lower())) for c in cols]
        hits = [(c, m) for c, m in hits if m is not None]
        if hits:
            if pattern is _VAL_REWARD_PATTERNS[0]:
                # reward before acc before score; then the smallest @n
                order = {"reward": 0, "acc": 1, "score": 2}
                hits.sort(key=lambda cm: (order[cm[1].group(1)], int(cm[1].group(2)), cm[0]))
            return hits[0][0]
    return None


def per_token_entropy(column: str) -> bool:
    """False for a column known to hold an entropy summed over the sequence (TRL PPO's ``objective/entropy``)."""
    low = column.lower()
    return low not in SEQUENCE_ENTROPY_COLUMNS and low.removeprefix("train/") not in SEQUENCE_ENTROPY_COLUMNS


def entropy_definition(column: str, fmt: str, columns: Iterable[str] = ()) -> str | None:
    """What the entropy in ``column`` measures, when the trainer that wrote it is known (from the column's name, the
    format, or the log's other ``columns``); else None."""
    low = column.lower()
    others = {c.lower() for c in columns}
    for _trainer, signature, definitions in _TRAINER_ENTROPY_DEFINITIONS:
        if low in definitions and others & signature:
            return definitions[low]
    if low in ENTROPY_DEFINITIONS:
        return ENTROPY_DEFINITIONS[low]
    stripped = low.removeprefix("train/")
    if stripped in ENTROPY_DEFINITIONS:
        return ENTROPY_DEFINITIONS[stripped]
    if fmt == "trl" and low in TRL_ENTROPY_COLUMNS:
        return TRL_ENTROPY_DEFINITION
    return None


OPENRLHF_FLAT_FLAGS: dict[str, str] = {
    "actor.eps_clip": "eps_clip", "actor.eps_clip_low_high": "eps_clip_low_high", "actor.dual_clip": "dual_clip",
    "actor.entropy_coef": "entropy_loss_coef", "actor.adam.lr": "actor_learning_rate", "actor.max_norm": "max_norm",
    "actor.policy_loss_type": "policy_loss_type", "algo.advantage.estimator": "advantage_estimator",
    "algo.kl.init_coef": "init_kl_coef", "algo.kl.use_loss": "use_kl_loss", "algo.dynamic_filtering_enable":
    "dynamic_filtering", "algo.dynamic_filtering_range": "dynamic_filtering_reward_range",
    "rollout.n_samples_per_prompt": "n_samples_per_prompt", "rollout.temperature": "temperature",
}  # fmt: skip
"""Trainers' flags are spelled by release too: OpenRLHF < 0.10.2's flat ``train_ppo_ray`` flag for each 0.10.2+
dotted one that entropy_watch reads or names (``--entropy_loss_coef`` for ``--actor.entropy_coef``). One table for the
hook that stores a run's flags (``hooks/openrlhf.py``) and the advice that quotes them (``analysis/advice.py``)."""
OPENRLHF_FLAT_SINCE: dict[str, tuple[int, int, int]] = {
    "actor.eps_clip_low_high": (0, 8, 2), "actor.dual_clip": (0, 8, 6), "actor.policy_loss_type": (0, 8, 8),
    "algo.dynamic_filtering_enable": (0, 8, 1), "algo.dynamic_filtering_range": (0, 8, 1),
}  # fmt: skip
"""The first OpenRLHF whose ``train_ppo_ray`` takes the flat flag of :data:`OPENRLHF_FLAT_FLAGS` (read from every
release's parser, 0.8.0 to 0.10.1 and their post-releases): those not listed are in 0.8.0 already. A run of an
earlier release cannot be told to set it as if it could (``analysis/advice.py``)."""
