"""Logs of the RL trainers beyond TRL/verl/OpenRLHF, in each trainer's own metric keys (read from its source; see
docs/integrations.md, "Other trainers' logs"): NeMo-RL, SkyRL, prime-rl, AReaL, slime, ROLL, torchtune's GRPO recipe.

Before these aliases: NeMo-RL's ``train/approx_entropy`` and AReaL's ``ppo_actor/update/entropy/avg`` were not found
("no entropy column found"); SkyRL, prime-rl and slime runs lost their reward; slime's entropy read as OpenRLHF's;
ROLL's log without entropy was told to set verl's ``calculate_entropy``, torchtune's OpenRLHF's
``--actor.entropy_coef``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.importers import load_log

from ..cli_run import run_cli

N = 40
STEPS = list(range(1, N + 1))


def _entropy(s: int) -> float:
    return 1.2 * math.exp(-0.08 * s) + 0.02  # a collapse: the detectors must see it


def _reward(s: int) -> float:
    return 0.2 + 0.015 * s


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _csv(path: Path, rows: list[dict]) -> Path:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)
    return path


def _series(run, canonical: str) -> tuple[list[int], np.ndarray]:
    s, v = run.scalars[canonical]
    return [int(x) for x in s], np.asarray(v, dtype=float)


def _check(run, mapping: dict[str, str], definition_has: str) -> None:
    """The trainer's columns under the canonical names, the values those columns hold, the entropy's meaning."""
    for canonical, column in mapping.items():
        assert run.mapping.get(canonical) == column, (canonical, run.mapping)
    steps, ent = _series(run, M.ENTROPY_MEAN)
    assert steps == STEPS
    np.testing.assert_allclose(ent, [_entropy(s) for s in STEPS], rtol=1e-12)
    if M.REWARD_MEAN in mapping:
        steps, rew = _series(run, M.REWARD_MEAN)
        assert steps == STEPS
        np.testing.assert_allclose(rew, [_reward(s) for s in STEPS], rtol=1e-12)
    assert definition_has in run.meta["entropy_definition"]


def _alerts_see_the_collapse(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    ran = run_cli(capsys, "alerts", "--json", path)
    assert ran.code in (1, 2), ran.err  # alerts found, not an error (3)
    (report,) = json.loads(ran.out)
    assert "collapse" in {a["kind"] for a in report["alerts"]}


def test_nemo_rl_wandb_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # nemo_rl/algorithms/grpo.py: logger.log_metrics(metrics, step, prefix="train"); validation under "validation"
    rows = []
    for s in STEPS:
        row = {"_step": s, "train/approx_entropy": _entropy(s), "train/reward": _reward(s), "train/loss": 0.1,
               "train/kl_penalty": 0.001 * s, "train/token_mult_prob_error": 1.01,
               "train/mean_gen_tokens_per_sample": 300.0 + s, "train/truncation_rate": 0.01}  # fmt: skip
        if s % 10 == 0:
            row["validation/accuracy"] = 0.9
        rows.append(row)
    p = _csv(tmp_path / "nemo_rl.csv", rows)
    (run,) = load_log(p)
    _check(
        run,
        {M.ENTROPY_MEAN: "train/approx_entropy", M.REWARD_MEAN: "train/reward", M.KL_REF: "train/kl_penalty",
         M.LENGTH_MEAN: "train/mean_gen_tokens_per_sample", M.LENGTH_TRUNC_FRAC: "train/truncation_rate"},
        "NeMo-RL",
    )  # fmt: skip
    _alerts_see_the_collapse(capsys, p)


def test_nemo_rl_without_approx_entropy_says_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"_step": s, "train/reward": _reward(s), "train/token_mult_prob_error": 1.0, "train/loss": 0.1}
            for s in STEPS]  # fmt: skip
    ran = run_cli(capsys, "alerts", _csv(tmp_path / "nemo_old.csv", rows))
    assert ran.code == 3
    assert "no entropy column found" in ran.err and "upgrade NeMo-RL" in ran.err


def test_skyrl_tracker_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # skyrl_train/trainer.py: policy/<worker status>, reward/avg_raw_reward, trainer/global_step, eval/all/avg_score
    rows = []
    for s in STEPS:
        row = {"trainer/global_step": s, "trainer/epoch": 0, "policy/policy_entropy": _entropy(s),
               "policy/ppo_clip_ratio": 0.01, "policy/policy_kl": 0.002, "policy/response_length": 1024,
               "policy/policy_loss": 0.1, "reward/avg_raw_reward": _reward(s), "reward/avg_pass_at_8": 0.6,
               "loss/avg_raw_rewards": _reward(s) - 0.05}  # fmt: skip
        if s % 10 == 0:
            row["eval/all/avg_score"] = 0.95
        rows.append(row)
    p = _jsonl(tmp_path / "skyrl.jsonl", rows)
    (run,) = load_log(p)
    _check(
        run,
        {M.ENTROPY_MEAN: "policy/policy_entropy", M.REWARD_MEAN: "reward/avg_raw_reward",
         M.CLIP_REGION_FRAC: "policy/ppo_clip_ratio", M.KL_REF: "policy/policy_kl"},
        "SkyRL",
    )  # fmt: skip
    assert M.LENGTH_MEAN not in run.mapping  # policy/response_length is the padded batch width, not a mean
    _alerts_see_the_collapse(capsys, p)


def test_prime_rl_trainer_and_orchestrator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # trainer: tensors.compute_stats() -> <name>/mean...; orchestrator MetricsBuilder: reward/all/mean, step
    rows = [{"step": s, "entropy/mean": _entropy(s), "entropy/std": 0.3, "mismatch_kl/mean": 0.001,
             "loss/mean": 0.1, "reward/all/mean": _reward(s), "reward/all/max": 1.0, "reward/all/min": 0.0,
             "seq_len/all/mean": 900.0, "decode_len/all/mean": 700.0 + s, "is_truncated/all/mean": 0.02}
            for s in STEPS]  # fmt: skip
    p = _jsonl(tmp_path / "prime_rl.jsonl", rows)
    (run,) = load_log(p)
    _check(
        run,
        {M.ENTROPY_MEAN: "entropy/mean", M.REWARD_MEAN: "reward/all/mean", M.LENGTH_MEAN: "decode_len/all/mean",
         M.LENGTH_TRUNC_FRAC: "is_truncated/all/mean"},
        "prime-rl",
    )  # fmt: skip
    _alerts_see_the_collapse(capsys, p)


def test_areal_stats_logger_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # areal/engine/ppo/actor.py: stats_tracker under ppo_actor (ppo_update) and ppo_actor/update (grpo_loss_fn)
    rows = [{"_step": s, "ppo_actor/update/entropy/avg": _entropy(s), "ppo_actor/update/entropy/max": 5.0,
             "ppo_actor/update/entropy/min": 0.0, "ppo_actor/task_reward/avg": _reward(s),
             "ppo_actor/final_reward/avg": 0.01, "ppo_actor/update/clip_ratio/avg": 0.02,
             "ppo_actor/update/dual_clip_ratio/avg": 0.001, "ppo_actor/update/approx_kl/avg": 0.0005,
             "ppo_actor/seq_len/avg": 900.0, "ppo_actor/no_eos_ratios/avg": 0.03} for s in STEPS]  # fmt: skip
    p = _csv(tmp_path / "areal.csv", rows)
    (run,) = load_log(p)
    _check(
        run,
        {M.ENTROPY_MEAN: "ppo_actor/update/entropy/avg", M.REWARD_MEAN: "ppo_actor/task_reward/avg",
         M.CLIP_REGION_FRAC: "ppo_actor/update/clip_ratio/avg",
         M.CLIP_DUAL_FRAC: "ppo_actor/update/dual_clip_ratio/avg", M.KL_OLD: "ppo_actor/update/approx_kl/avg",
         M.LENGTH_TRUNC_FRAC: "ppo_actor/no_eos_ratios/avg"},
        "AReaL",
    )  # fmt: skip
    assert M.LENGTH_MEAN not in run.mapping  # seq_len counts the prompt too
    _alerts_see_the_collapse(capsys, p)


def test_slime_wandb_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # slime: train/<reported_loss> against train/step, rollout/* against rollout/step, each in rows of its own
    rows: list[dict] = []
    for s in STEPS:
        rows.append({"train/step": s, "train/loss": 0.1, "train/pg_loss": 0.1, "train/entropy_loss": _entropy(s),
                     "train/pg_clipfrac": 0.02, "train/ppo_kl": 0.0003, "train/kl_loss": 0.001})  # fmt: skip
        rows.append({"rollout/step": s, "rollout/raw_reward": _reward(s), "rollout/rewards": 0.0})
    p = _jsonl(tmp_path / "slime.jsonl", rows)
    (run,) = load_log(p)
    _check(
        run,
        {M.ENTROPY_MEAN: "train/entropy_loss", M.CLIP_REGION_FRAC: "train/pg_clipfrac", M.KL_OLD: "train/ppo_kl",
         M.KL_REF: "train/kl_loss"},
        "slime",
    )  # fmt: skip
    # the reward's rows are on another step axis (rollout/step): said, not silently gone
    (note,) = [n for n in run.notes if "were skipped" in n]
    assert "rollout/raw_reward" in note and "rollout/step" in note
    _alerts_see_the_collapse(capsys, p)


def test_slime_reward_on_its_own_axis(tmp_path: Path) -> None:
    rows = [{"rollout/step": s, "rollout/raw_reward": _reward(s), "entropy": _entropy(s)} for s in STEPS]
    (run,) = load_log(_jsonl(tmp_path / "slime_rollout.jsonl", rows), mapping={"step": "rollout/step"})
    assert run.mapping[M.REWARD_MEAN] == "rollout/raw_reward"
    np.testing.assert_allclose(_series(run, M.REWARD_MEAN)[1], [_reward(s) for s in STEPS], rtol=1e-12)


def test_roll_without_entropy_is_told_about_roll_not_verl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # roll/pipeline/rlvr/actor_worker.py loss_func: actor/* metrics, no entropy among them
    rows = [{"step": s, "actor/pg_loss": 0.1, "actor/kl_loss": 0.001, "actor/approxkl": 0.0001,
             "actor/ppo_ratio_high_clipfrac": 0.01, "actor/ppo_ratio_low_clipfrac": 0.01,
             "actor/ppo_ratio_clipfrac": 0.02, "actor/clipfrac": 0.015, "actor/train_infer_ratio_mean": 1.0}
            for s in STEPS]  # fmt: skip
    p = _jsonl(tmp_path / "roll.jsonl", rows)
    ran = run_cli(capsys, "alerts", p)
    assert ran.code == 3
    assert "no entropy column found" in ran.err and "ROLL" in ran.err
    assert "calculate_entropy" not in ran.err  # verl's setting: no use to a ROLL user
    (run,) = load_log(p, mapping={"entropy": "actor/pg_loss"})  # any column, to see the rest of the mapping
    assert run.mapping[M.CLIP_REGION_FRAC] == "actor/clipfrac"
    assert M.CLIP_LOW_FRAC not in run.mapping and M.CLIP_HIGH_FRAC not in run.mapping  # not the binding side


def test_torchtune_grpo_without_entropy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # recipes/dev/grpo_full_finetune_distributed.py log_metrics
    rows = [{"step": s, "rewards": _reward(s), "successes": 0.5, "num_stop_tokens": 3, "loss": 0.1,
             "policy_loss": 0.1, "kl_loss": 0.001, "clipfrac": 0.01, "ratios": 1.0, "approx_policy_kl": 0.0001,
             "response_lengths": 200.0, "lr": 1e-6} for s in STEPS]  # fmt: skip
    p = _jsonl(tmp_path / "torchtune.jsonl", rows)
    ran = run_cli(capsys, "alerts", p)
    assert ran.code == 3
    assert "torchtune" in ran.err and "entropy_coef" not in ran.err  # not OpenRLHF's flag
    (run,) = load_log(p, mapping={"entropy": "ratios"})
    assert run.mapping[M.REWARD_MEAN] == "rewards"
    assert run.mapping[M.KL_OLD] == "approx_policy_kl" and run.mapping[M.LENGTH_MEAN] == "response_lengths"
    np.testing.assert_allclose(_series(run, M.REWARD_MEAN)[1], [_reward(s) for s in STEPS], rtol=1e-12)


def test_import_cli_stores_a_skyrl_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"trainer/global_step": s, "policy/policy_entropy": _entropy(s), "reward/avg_raw_reward": _reward(s)}
            for s in STEPS]  # fmt: skip
    p = _jsonl(tmp_path / "skyrl_run.jsonl", rows)
    ran = run_cli(capsys, "--store", tmp_path / "store", "import", p)
    assert ran.code == 0, ran.err
    assert "reward" in ran.out and "avg_raw_reward" in ran.out
