"""TRL logs as trainers write them: evaluation entries interleaved, checkpoint folders, a W&B copy of the history."""

from __future__ import annotations

import json

from entropy_watch import metrics as M
from entropy_watch.importers import load_log


def _history(n: int, eval_every: int) -> list[dict]:
    out: list[dict] = []
    for i in range(1, n + 1):
        step = 10 * i
        entry = {"entropy": 0.6 * 0.95**i, "reward": 0.3 + 0.01 * i, "frac_reward_zero_std": 0.1,
                 "clip_ratio/low_mean": 0.0, "clip_ratio/region_mean": 0.0, "completions/mean_length": 180.0,
                 "rewards/accuracy_reward/mean": 0.3 + 0.01 * i, "epoch": round(step / 400, 4),
                 "step": step}  # fmt: skip
        out.append(entry)
        if step % eval_every == 0:  # Trainer.evaluate: same step, same epoch
            out.append({"eval_loss": 0.02, "eval_entropy": 0.9, "eval_reward": 0.5, "eval_runtime": 3.1,
                        "epoch": entry["epoch"], "step": step})  # fmt: skip
    out.append({"epoch": out[-1]["epoch"], "step": 10 * n, "total_flos": 0.0, "train_loss": 0.01,
                "train_runtime": 900.0})  # fmt: skip
    return out


def test_evaluation_entries_read_without_a_note_about_repeated_steps(tmp_path, logs) -> None:
    """Before: every TRL log with evaluation said "steps logged twice: kept the last row's value in 'epoch'" — the
    Trainer writes the same epoch in the training and the evaluation entry; nothing was decided."""
    logs.write_trainer_state(tmp_path / "out", _history(30, eval_every=50), 300)
    (run,) = load_log(tmp_path / "out")
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(10, 301, 10))
    assert run.mapping[M.ENTROPY_MEAN] == "entropy" and run.mapping[M.REWARD_MEAN] == "reward"
    assert not [n for n in run.notes if "logged twice" in n], run.notes


def test_a_repeated_step_with_another_value_is_still_said(tmp_path, logs) -> None:
    history = _history(10, eval_every=1000)
    history.insert(5, {**history[4], "entropy": 0.01})  # a second, different training entry at step 50
    logs.write_trainer_state(tmp_path / "out", history, 100)
    (run,) = load_log(tmp_path / "out")
    assert any("logged twice: kept the last row's value in 'entropy' (1 steps)" in n for n in run.notes)


def test_wandb_history_of_a_trl_run_reads_the_trainer_step_without_wandb_counters_noted(tmp_path) -> None:
    """HF's WandbCallback: ``train/`` and ``eval/`` keys, ``train/global_step``; ``_step`` counts log calls, so an
    evaluation entry at a trainer step has another ``_step`` — no metric of the run, no note."""
    rows, k = [], 0
    for entry in _history(20, eval_every=50):
        row = {("eval/" + key[5:] if key.startswith("eval_") else "train/" + key): v for key, v in entry.items()
               if key != "step"}  # fmt: skip
        rows.append({**row, "train/global_step": entry["step"], "_step": k, "_runtime": 30.0 * k})
        k += 1
    path = tmp_path / "wandb-history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run,) = load_log(path)
    assert run.mapping["step"] == "train/global_step"
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(10, 201, 10))
    assert run.meta.get("framework") == "trl"
    assert not [n for n in run.notes if "logged twice" in n], run.notes
