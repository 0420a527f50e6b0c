"""A TRL run's console log (``nohup.out``, ``slurm-<id>.out``): the dicts the HF Trainer printed, read as its log.

Before: ``cannot tell the format``, and no ``--format`` read it — a run whose output folder is gone had no way in.
"""

from __future__ import annotations

import math

import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import detect_format, load_log

TOTAL, EVERY = 120, 10


def _entry(step: int) -> dict:
    """A TRL 1.x GRPO log entry as ``ProgressCallback.on_log`` prints it (``epoch`` rounded to 2 places)."""
    h = 0.5 * 0.97**step
    return {"loss": 0.0123, "grad_norm": 0.41, "learning_rate": 1e-06, "num_tokens": 1000.0 * step,
            "completions/mean_length": 180.5, "completions/clipped_ratio": 0.0, "rewards/accuracy_reward/mean": 0.4,
            "reward": 0.4, "reward_std": 0.3, "frac_reward_zero_std": 0.1, "kl": 0.0,
            "entropy": float("nan") if step == 70 else h, "clip_ratio/low_mean": 0.0,
            "clip_ratio/region_mean": 0.0, "epoch": round(step / TOTAL, 2)}  # fmt: skip


def _bar(n: int, total: int, what: str = "") -> str:
    return f"{what}{100 * n // total:3d}%|##        | {n}/{total} [00:{n % 60:02d}<01:00,  2.00s/it]"


def _progress_log(path) -> None:
    """stdout+stderr of a TRL GRPO run with vLLM: model loading, the vLLM and evaluation bars between the training
    bar's updates (``\\r``-separated), an entry after the bar at each logging step, an evaluation at step 40, the
    final summary."""
    out = [
        "`torch_dtype` is deprecated! Use `dtype` instead!",
        _bar(4, 4, "Loading checkpoint shards: "),
        _bar(0, TOTAL),
    ]
    for step in range(1, TOTAL + 1):
        out.append(_bar(64, 64, "Processed prompts: ") + "\r" + _bar(step, TOTAL))
        if step % EVERY == 0:
            out[-1] += "\r" + str(_entry(step))
        if step == 40:
            out.append(_bar(8, 8) + "\r" + str({"eval_loss": 0.02, "eval_reward": 0.5, "eval_entropy": 0.9,
                                                "eval_runtime": 3.1, "epoch": 0.33}))  # fmt: skip
    out.append(str({"train_runtime": 900.0, "train_samples_per_second": 1.1, "train_loss": 0.01, "epoch": 1.0}))
    path.write_text("\n".join(out) + "\n")


def test_console_log_with_progress_bars_reads_the_trainer_steps(tmp_path) -> None:
    path = tmp_path / "slurm-4242.out"
    _progress_log(path)
    assert detect_format(path) == "trl-console"
    (run,) = load_log(path)
    steps, values = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(EVERY, TOTAL + 1, EVERY))  # never the vLLM (64) or evaluation (8) bar's N
    assert math.isnan(values[steps.tolist().index(70)])  # printed as nan: a logged divergence, kept
    assert values[0] == pytest.approx(0.5 * 0.97**10)
    assert run.series("eval_reward")[0].tolist() == [40]
    assert run.mapping[M.REWARD_MEAN] == "reward" and run.meta["framework"] == "trl"
    assert run.meta["entropy_definition"].endswith("(TRL GRPO)")
    assert any(f"steps read from the training progress bar (N/{TOTAL})" in n for n in run.notes)
    assert not [n for n in run.notes if "logged twice" in n]


def test_printer_callback_log_without_bars_reads_entry_order(tmp_path) -> None:
    """``disable_tqdm=True``: ``PrinterCallback`` prints the dicts alone, the first line may be one."""
    path = tmp_path / "train.log"
    lines = [str(_entry(s)) for s in range(EVERY, 61, EVERY)]
    lines.insert(3, str({"eval_loss": 0.02, "eval_reward": 0.5, "epoch": 0.25}))
    path.write_text("\n".join(lines) + "\n")
    assert detect_format(path) == "trl-console"
    (run,) = load_log(path)
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [1, 2, 3, 4, 5, 6]
    assert run.series("eval_reward")[0].tolist() == [3]  # beside the training entry before it
    assert any("steps are the order of the training entries" in n for n in run.notes)


def test_console_log_of_trl_before_0_20_says_trl_logs_no_entropy(tmp_path) -> None:
    path = tmp_path / "nohup.out"
    rows = [{"loss": 0.0, "reward": 0.3, "reward_std": 0.2, "kl": 0.001, "completion_length": 180.0, "epoch": s / 10}
            for s in range(1, 8)]  # fmt: skip
    path.write_text("".join(f"{_bar(s, 7)}\r{r}\n" for s, r in enumerate(rows, start=1)))
    with pytest.raises(ImportFormatError, match="TRL 0.20"):
        load_log(path)


def test_config_dicts_and_verl_console_are_no_trainer_entries(tmp_path) -> None:
    """verl prints its config as a dict before its ``step:N - k:v`` lines: still verl's console."""
    path = tmp_path / "verl.log"
    path.write_text("(TaskRunner pid=1) {'data': {'train_batch_size': 8}, 'trainer': {'epoch': 1}}\n"
                    + "".join(f"(TaskRunner pid=1) step:{s} - actor/entropy:0.5\n" for s in range(1, 6)))  # fmt: skip
    assert detect_format(path) == "verl-console"


def test_a_console_log_is_trls_whatever_columns_its_entries_hold(tmp_path) -> None:
    """A Trainer's console with only loss, grad_norm, learning_rate, entropy, reward and epoch (too few of TRL's GRPO
    columns to recognise them) was stored as framework 'unknown' with an entropy of unknown definition."""
    path = tmp_path / "nohup.out"
    lines = []
    for n in range(1, 31):
        lines.append(f" {100 * n // 30}%|#         | {n}/30 [00:{n:02d}<00:10,  1.0s/it]")
        lines.append(str({"loss": 0.01, "grad_norm": 0.5, "learning_rate": 1e-06, "entropy": 0.6 * 0.97**n,
                          "reward": 0.3, "epoch": n / 30}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    (run,) = load_log(path, fmt="trl-console")
    assert run.meta["framework"] == "trl" and run.meta["entropy_definition"].endswith("(TRL GRPO)"), run.meta
