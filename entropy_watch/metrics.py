"""Canonical metric names: the one place they are spelled.

Every scalar the hooks, the trainer or an importer records is stored under one of these names (or, for an
imported run, under its source name *and* the canonical name it maps to). Names are slash-namespaced and reuse
TRL's leaf names where the quantity is the same. Entropy is in nats at the sampling temperature. See DESIGN §4.
"""

from __future__ import annotations

# --- entropy over the valid (masked) completion tokens of a step, token-weighted across ranks -------------------
ENTROPY_MEAN = "entropy/mean"
ENTROPY_P10 = "entropy/p10"
ENTROPY_P50 = "entropy/p50"
ENTROPY_P90 = "entropy/p90"
ENTROPY_P99 = "entropy/p99"
ENTROPY_FRAC_LOW = "entropy/frac_low"  # share of tokens with H < LOW_ENTROPY_NATS
ENTROPY_FRAC_HIGH = "entropy/frac_high"  # share of tokens with H > FORKING_ENTROPY_NATS ("forking tokens")
ENTROPY_SAMPLED_NLL = "entropy/sampled_nll"  # mean -log pi(a_t): a logits-free entropy estimate
ENTROPY_NONFINITE_FRAC = "entropy/nonfinite_frac"  # share of tokens whose logits gave NaN/inf entropy (excluded)
TOKENS_COUNT = "tokens/count"  # number of valid tokens the step's statistics were computed on

ENTROPY_QUANTILES: dict[str, float] = {ENTROPY_P10: 0.10, ENTROPY_P50: 0.50, ENTROPY_P90: 0.90, ENTROPY_P99: 0.99}

LOW_ENTROPY_NATS = 0.01
FORKING_ENTROPY_NATS = 0.672  # Wang et al. 2025 ("Beyond the 80/20 rule"): the 80th-percentile token entropy

# --- clipping (PPO/GRPO surrogate) ------------------------------------------------------------------------------
CLIP_LOW_FRAC = "clip/low_frac"  # A<0 and ratio < 1-eps_low  (binding clip-low: raises entropy, Park et al. 2025)
CLIP_HIGH_FRAC = "clip/high_frac"  # A>0 and ratio > 1+eps_high (binding clip-high: lowers entropy)
CLIP_REGION_FRAC = "clip/region_frac"  # low + high: the share of tokens whose gradient the clip removes
CLIP_DUAL_FRAC = "clip/dual_frac"  # A<0 and ratio > c (dual-clip)
CLIP_ONPOLICY = "clip/onpolicy"  # 1 when the update's ratio is 1 (|log ratio| within hooks.stats.ONPOLICY_LOG_RATIO_TOL
# on every token, or a loss that takes the log-probs it is given as the old ones: log_tokens without old_logp), else 0:
# 1 means nothing can clip. Recorded only by what sees the update's ratio: a pass before the update (verl's driver,
# Watch.update_pass = False) leaves it out, and verl's comes from the ew_* losses (every loss call on-policy -> 1).
# Absent = unknown, not on-policy. The clip fractions are absent only without old log-probs

# --- advantages -------------------------------------------------------------------------------------------------
ADV_MEAN = "adv/mean"
ADV_STD = "adv/std"
ADV_MIN = "adv/min"
ADV_MAX = "adv/max"
ADV_FRAC_ZERO_GROUPS = "adv/frac_zero_groups"  # groups whose advantages (rewards) are all equal

# --- covariance terms that drive the entropy change (Cui et al. 2025, eq. 2-3) ----------------------------------
COV_LOGP_ADV = "cov/logp_adv"  # token covariance of log pi(a_t) and A_t
COV_PG_DRIVE = "cov/pg_drive"  # mean of pi*(log pi - E log pi)*A over tokens; positive => the step spends entropy
COV_PRED_DH = "cov/pred_dH"  # first-order predicted entropy change of the step (next to the observed one)
ENTROPY_DELTA_OBS = "entropy/delta_observed"  # observed entropy change of the step, on the batch pred_dH used

# --- importance ratio, KL, precision ----------------------------------------------------------------------------
RATIO_LOG_MEAN = "ratio/log_mean"  # signed mean of log rho; persistently > 0 is the bf16 bias signature
RATIO_MAX = "ratio/max"
KL_OLD = "kl/old"  # mean k3 estimate of KL(pi_old || pi) over tokens
KL_REF = "kl/ref"
PRECISION_LOGP_GAP_MEAN = "precision/logp_gap_mean"  # |trainer logp - sampler logp|
PRECISION_LOGP_GAP_MAX = "precision/logp_gap_max"

# --- task -------------------------------------------------------------------------------------------------------
REWARD_MEAN = "reward/mean"
REWARD_STD = "reward/std"
LENGTH_MEAN = "length/mean"
LENGTH_TRUNC_FRAC = "length/trunc_frac"


def pass_at_k(k: int) -> str:
    """Name of the pass@k evaluation metric, e.g. ``eval/pass@8``."""
    return f"eval/pass@{k}"


# --- controllers (REPO zeta, ADAPO eps_high, entropy coefficient) and their targets ----------------------------------
# Logged by the reference trainer and by attach(trainer, control=...); each is the value in force for the NEXT step.
# The controller's value logged at step k is the one after step k's update, in force from step k + 1 (the trainer
# and hooks/control.py alike); step k's clip fractions were measured under the value logged at step k - 1.
CONTROL_ZETA = "control/zeta"  # REPO-R/D coefficient zeta (signed; > 0 pushes entropy up)
CONTROL_EPS_HIGH = "control/eps_high"  # ADAPO's upper clip width: ratio <= 1 + eps_high (eps_low untouched)
CONTROL_ENTROPY_COEF = "control/entropy_coef"  # entropy-bonus weight alpha
CONTROL_TARGET = "control/target_entropy"  # the entropy (nats) the controller steers toward
CONTROL_BAND_LOW = "control/band_low"  # control="target": lower edge of the entropy band (nats)
CONTROL_BAND_HIGH = "control/band_high"  # control="target": upper edge of the entropy band (nats)
CONTROL_ENTROPY = "control/entropy"  # the entropy (nats) the controller compared with its target this step
# The cap its lever runs under (constant), logged beside the lever: verl's workers read it from their environment,
# which the driver that writes run.json may not share, so the logged cap is the one the lever met.
CONTROL_ZETA_MAX = "control/zeta_max"  # REPO-R: |zeta| <= zeta_max
CONTROL_EPS_MAX = "control/eps_max"  # ADAPO: eps_high <= eps_max

# --- the monitor's own health ----------------------------------------------------------------------------------
HOOKS_ERRORS = "hooks/errors"  # guarded hook failures (training continued)
HOOKS_DROPPED_TOKENS = "hooks/dropped_token_rows"  # token sample rows dropped under back-pressure
HOOKS_NOTIFY_ERRORS = "hooks/notify_errors"  # notifications not delivered after retries, or dropped (queue full)
HOOKS_ENTROPY_SAMPLE = "hooks/entropy_sample_frac"  # share of valid tokens whose entropy a call computed (< 1: budget)

# Kinds of ``events`` rows written by entropy_watch itself (users may log any other kind).
EVENT_ACTION = "action"  # an on_alert action taken (checkpoint / stop / callable); payload: rule, alert, actions, did

CANONICAL: tuple[str, ...] = tuple(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and "/" in v
)
