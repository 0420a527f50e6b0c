"""Writers of realistic log files for the importer tests, each written the way its tool writes it (fixture ``logs``)."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def trl_entry(step: int, entropy: float | None, reward: float) -> dict:
    """A log_history training entry as TRL 1.16 writes it."""
    return {
        "clip_ratio/high_max": 0.0,
        "clip_ratio/high_mean": 0.01 * step,
        "clip_ratio/low_mean": 0.002,
        "clip_ratio/low_min": 0.0,
        "clip_ratio/region_mean": 0.01 * step + 0.002,
        "completions/clipped_ratio": 0.0,
        "completions/mean_length": 6.0,
        "entropy": entropy,
        "epoch": step / 10,
        "frac_reward_zero_std": 0.25,
        "grad_norm": 1.5,
        "learning_rate": 1e-5,
        "loss": 0.01,
        "num_tokens": 100.0 * step,
        "reward": reward,
        "reward_std": 0.3,
        "rewards/reward_len/mean": reward,
        "step": step,
        "step_time": 0.6,
    }


def write_trainer_state(folder: Path, history: list[dict], global_step: int) -> Path:
    """``folder/trainer_state.json`` written like ``TrainerState.save_to_json`` (indent 2, sorted keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "best_global_step": None,
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": global_step / 10,
        "eval_steps": 500,
        "global_step": global_step,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": history,
        "logging_steps": 1,
        "max_steps": 10,
        "num_input_tokens_seen": 0,
        "num_train_epochs": 1,
        "save_steps": 2,
        "stateful_callbacks": {},
        "total_flos": 0.0,
        "train_batch_size": 4,
        "trial_name": None,
        "trial_params": None,
    }
    path = folder / "trainer_state.json"
    path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return path


def write_completions(out_dir: Path, step: int, prompts: list[str], advantages: list[float]) -> Path:
    """``completions/completions_<step:05d>.parquet`` with TRL's columns."""
    folder = out_dir / "completions"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "step": [step] * len(prompts),
            "prompt": prompts,
            "completion": [f"answer {i}" for i in range(len(prompts))],
            "reward_len": [float(a) for a in advantages],
            "advantage": advantages,
        }
    )
    path = folder / f"completions_{step:05d}.parquet"
    pq.write_table(table, path)
    return path


def write_event_scalars(folder: Path, points: dict[str, list[tuple[int, float]]], wall0: float = 1000.0) -> None:
    """One event file with ``simple_value`` scalars, through tensorboard's own writer (no TensorFlow, no torch)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    t = wall0
    for tag, pts in points.items():
        for step, value in pts:
            t += 1.0
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            writer.add_event(event_pb2.Event(wall_time=t, step=step, summary=summary))
    writer.close()


def hf_tensorboard_writer(folder: Path, **kwargs: object) -> Callable[[int, dict], None]:
    """``log(global_step, logs)`` writing as HF's ``TensorBoardCallback.on_log`` does through torch's SummaryWriter:
    ``eval_*`` keys under ``eval/``, every other key under ``train/``, numbers only, flushed after each entry (the
    Trainer adds ``epoch`` to every entry, training and evaluation alike). Close it with ``log.writer.close()``."""
    tb = pytest.importorskip("torch.utils.tensorboard")
    writer = tb.SummaryWriter(str(folder), **kwargs)

    def log(step: int, entry: dict) -> None:
        for key, value in entry.items():
            if isinstance(value, (int, float)):
                tag = f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"
                writer.add_scalar(tag, value, step)
        writer.flush()

    log.writer = writer  # type: ignore[attr-defined]
    return log


@pytest.fixture
def logs() -> types.SimpleNamespace:
    """The writers above, for tests: ``logs.write_trainer_state(...)`` etc."""
    return types.SimpleNamespace(
        trl_entry=trl_entry,
        write_trainer_state=write_trainer_state,
        write_completions=write_completions,
        write_event_scalars=write_event_scalars,
        hf_tensorboard_writer=hf_tensorboard_writer,
    )
