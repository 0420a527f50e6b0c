"""TRL trainer_state.json (latest checkpoint, resumed duplicates, eval entries, nulls) and completions parquet."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import detect_format, load_log


@pytest.fixture
def trl_output(tmp_path, logs):
    """An output folder: checkpoint-2 (steps 1-2) and checkpoint-4 (1-4 after a resume from 2, steps 3-4 twice)."""
    out = tmp_path / "grpo-qwen"
    e = logs.trl_entry
    logs.write_trainer_state(out / "checkpoint-2", [e(1, 0.9, 0.1), e(2, 0.8, 0.2)], global_step=2)
    history = [
        e(1, 0.9, 0.1),
        e(2, 0.8, 0.2),
        e(3, 0.7, 0.3),
        {"eval_entropy": 0.65, "eval_loss": 0.5, "epoch": 0.3, "step": 3},  # eval entry at the same step
        e(4, 0.6, 0.4),  # crashed after this was logged, resumed from checkpoint-2 (old steps 3-4 carried forward)
        e(3, 0.71, 0.31),
        {"eval_entropy": 0.66, "eval_loss": 0.5, "epoch": 0.3, "step": 3},  # the resumed model's evaluation
        e(4, None, 0.41),  # TRL logs None for an all-NaN window
        {"epoch": 0.4, "step": 4, "total_flos": 0.0, "train_loss": 0.02, "train_runtime": 3.5},
    ]
    logs.write_trainer_state(out / "checkpoint-4", history, global_step=4)
    logs.write_completions(out, 3, ["p1"] * 4 + ["p2"] * 4, [1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    logs.write_completions(out, 4, ["p1"] * 4 + ["p2"] * 4, [0.5, 0.5, 0.5, 0.5, 1.5, -1.5, 0.0, 0.0])
    return out


def test_output_folder_takes_latest_checkpoint_and_dedupes(trl_output) -> None:
    assert detect_format(trl_output) == "trl"
    (run,) = load_log(trl_output)
    assert run.name == "grpo-qwen" and run.fmt == "trl"
    assert run.meta["trainer_state_file"].endswith("checkpoint-4/trainer_state.json")
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == [1, 2, 3, 4]
    assert ent[2] == pytest.approx(0.71)  # the resumed run's value
    assert math.isnan(ent[3])  # null: a logged non-finite window, kept as NaN
    assert run.series(M.REWARD_MEAN)[1].tolist() == pytest.approx([0.1, 0.2, 0.31, 0.41])
    # eval entry kept beside the training one; the first training's (0.65), of a model the resume replaced, is not
    assert run.series("eval_entropy")[0].tolist() == [3] and run.series("eval_entropy")[1].tolist() == [0.66]
    assert run.series("loss")[0].tolist() == [1, 2, 3, 4]
    assert [e["step"] for e in run.events] == [3] and run.events[0]["kind"] == "resume"
    assert run.mapping[M.CLIP_LOW_FRAC] == "clip_ratio/low_mean"
    assert run.mapping[M.CLIP_HIGH_FRAC] == "clip_ratio/high_mean"
    assert run.mapping[M.CLIP_REGION_FRAC] == "clip_ratio/region_mean"
    assert run.mapping[M.ADV_FRAC_ZERO_GROUPS] == "frac_reward_zero_std"
    assert run.mapping[M.LENGTH_MEAN] == "completions/mean_length"
    assert run.meta["entropy_definition"].startswith("full-vocabulary, policy during update, mean over completion")
    assert run.meta["trainer_state"]["global_step"] == 4


def test_completions_parquet_gives_advantage_statistics(trl_output) -> None:
    (run,) = load_log(trl_output)
    steps, mean = run.series(M.ADV_MEAN)
    assert steps.tolist() == [3, 4]
    adv3 = np.array([1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    assert mean[0] == pytest.approx(adv3.mean())
    assert run.series(M.ADV_STD)[1][0] == pytest.approx(adv3.std())
    assert run.series(M.ADV_MIN)[1].tolist() == [-1.0, -1.5]
    assert run.series(M.ADV_MAX)[1].tolist() == [1.0, 1.5]
    # the trainer's frac_reward_zero_std wins the canonical name; the parquet one stays available
    assert run.series("completions/frac_zero_groups")[1].tolist() == [0.5, 0.5]
    assert run.meta["completions_files"] == 2


def test_completions_fill_frac_zero_groups_when_trainer_lacks_it(tmp_path, logs) -> None:
    out = tmp_path / "run"
    entries = [{k: v for k, v in logs.trl_entry(s, 0.5, 0.1).items() if k != "frac_reward_zero_std"} for s in (1, 2)]
    logs.write_trainer_state(out / "checkpoint-2", entries, 2)
    logs.write_completions(out, 2, ["a", "a", "b", "b", "c", "c"], [0.0, 0.0, 1.0, -1.0, 0.3, 0.3])
    (run,) = load_log(out)
    assert run.series(M.ADV_FRAC_ZERO_GROUPS)[1].tolist() == pytest.approx([2 / 3])


def test_checkpoint_folder_and_state_file_paths(trl_output) -> None:
    (from_ckpt,) = load_log(trl_output / "checkpoint-2")
    assert from_ckpt.name == "grpo-qwen" and from_ckpt.series(M.ENTROPY_MEAN)[0].tolist() == [1, 2]
    (from_file,) = load_log(trl_output / "checkpoint-4" / "trainer_state.json", run="mine")
    assert from_file.name == "mine" and M.ADV_MEAN in from_file.scalars  # completions found next to the output dir


def test_root_state_from_save_state_wins_ties(tmp_path, logs) -> None:
    out = tmp_path / "o"
    logs.write_trainer_state(out / "checkpoint-2", [logs.trl_entry(1, 0.9, 0.1)], 2)
    logs.write_trainer_state(out, [logs.trl_entry(1, 0.9, 0.1), logs.trl_entry(2, 0.5, 0.1)], 2)
    (run,) = load_log(out)
    assert run.meta["trainer_state_file"] == str((out / "trainer_state.json").resolve())


def test_state_is_pretty_printed_like_trl(trl_output) -> None:
    text = (trl_output / "checkpoint-4" / "trainer_state.json").read_text()
    assert text.startswith('{\n  "best_global_step"') and json.loads(text)["log_history"]


def test_the_models_config_gives_the_vocabulary(tmp_path, logs) -> None:
    """``config.json`` saved beside the state (the checkpoint folder first, else the output folder; a multimodal
    model's ``text_config``) gives V, with a note naming the file; none, a LoRA checkpoint's adapter config or an
    unreadable one leaves V unknown and the log imports all the same. ``vocab_size=`` wins over it, with a note."""
    e = logs.trl_entry
    out = tmp_path / "grpo"
    ckpt = out / "checkpoint-2"
    logs.write_trainer_state(ckpt, [e(1, 0.9, 0.1), e(2, 0.8, 0.2)], global_step=2)
    (run,) = load_log(out)
    assert "vocab_size" not in run.meta and not [n for n in run.notes if "vocabulary" in n]
    (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-0.5B", "r": 8}))
    (ckpt / "config.json").write_text("{not json")
    (run,) = load_log(out)
    assert "vocab_size" not in run.meta
    (out / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "text_config": {"vocab_size": 151_936}}))
    (run,) = load_log(out)
    assert run.meta["vocab_size"] == 151_936
    assert f"vocabulary size 151936 from {out / 'config.json'}" in run.notes
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 128_256}))
    (run,) = load_log(ckpt / "trainer_state.json")
    assert run.meta["vocab_size"] == 128_256  # the checkpoint's own config first
    (run,) = load_log(out, vocab_size=32_000)
    assert run.meta["vocab_size"] == 32_000
    assert "vocabulary size 32000 as given, over the 128256 the log states" in run.notes
    for bad in (1, 0, -5, 2.5, True):
        with pytest.raises(ImportFormatError, match="vocab_size must be a whole number of at least 2"):
            load_log(out, vocab_size=bad)


def test_no_vocabulary_for_an_entropy_summed_over_the_sequence(tmp_path, logs) -> None:
    """TRL PPO logs ``objective/entropy``, the sampled tokens' NLL summed over the completion: ln V does not bound it
    (9 nats summed over 100 tokens is a low entropy, not 75% of uniform noise), so V, from config.json or given,
    is not kept, and a note says why."""
    out = tmp_path / "ppo"
    history = [
        {"objective/entropy": 40.0 - i, "objective/scores": 0.1 * i, "episode": 64 * i, "step": i} for i in range(1, 9)
    ]
    logs.write_trainer_state(out, history, global_step=8)
    (out / "config.json").write_text(json.dumps({"vocab_size": 151_936}))
    for kwargs in ({}, {"vocab_size": 151_936}):
        (run,) = load_log(out, **kwargs)
        assert run.mapping[M.ENTROPY_MEAN] == "objective/entropy" and "vocab_size" not in run.meta
        assert "vocabulary size 151936 not used: 'objective/entropy' is summed over the sequence" in run.notes[-1]


def test_trl_log_history_as_jsonl_or_a_wandb_export_is_read_as_trl(tmp_path) -> None:
    """A JSONL of TRL's log_history entries (what most repositories save) or a W&B export of a TRL run is TRL's log:
    framework 'trl' and TRL's entropy definition, with a note saying why — it read 'framework unknown, entropy
    unknown (not stated by the source)'. A log with one TRL-like name among others is not."""
    rows = [{"step": s, "entropy": 0.5 - 0.01 * s, "reward": 0.1 * s, "frac_reward_zero_std": 0.2,
             "clip_ratio/low_mean": 0.0, "completions/mean_length": 120.0} for s in range(1, 8)]  # fmt: skip
    jsonl = tmp_path / "log_history.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run,) = load_log(jsonl)
    assert run.fmt == "jsonl" and run.meta["framework"] == "trl"
    assert "TRL GRPO" in run.meta["entropy_definition"] and any("read as a TRL log" in n for n in run.notes)
    export = tmp_path / "wandb_export.csv"
    cols = ["train/global_step", "train/entropy", "train/reward", "train/frac_reward_zero_std",
            "train/clip_ratio/high_mean", "train/completions/clipped_ratio"]  # fmt: skip
    export.write_text(",".join(cols) + "\n" + "".join(f"{s},{0.5 - 0.01 * s},0.5,0.1,0.0,0.0\n" for s in range(1, 8)))
    (run,) = load_log(export)
    assert run.meta["framework"] == "trl" and "TRL GRPO" in run.meta["entropy_definition"]
    plain = tmp_path / "plain.csv"
    plain.write_text("step,entropy,reward,frac_reward_zero_std\n" + "".join(f"{s},0.5,0.5,0.1\n" for s in range(1, 8)))
    (run,) = load_log(plain)
    assert "framework" not in run.meta and run.meta["entropy_definition"].startswith("unknown")


def test_a_log_history_entry_that_is_no_object_is_skipped_with_a_note(tmp_path) -> None:
    history = [{"step": i, "entropy": 1 - i / 100, "reward": 0.5} for i in range(1, 30)]
    history.insert(5, None)
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 29}))
    (run,) = load_log(tmp_path / "trainer_state.json")
    assert run.series("entropy/mean")[0].tolist() == list(range(1, 30))
    assert any("first at log_history entry 6: expected a JSON object, found NoneType" in n for n in run.notes)


def _age(path, days: float) -> None:
    t = 1_790_000_000 - days * 86400  # fixed times: the notes' dates do not depend on when the test runs
    os.utime(path, (t, t))


def test_stale_checkpoint_of_an_earlier_run_is_passed_over(tmp_path, logs) -> None:
    """An output folder reused by a second, shorter run: the earlier run's checkpoint-200 (not rotated away) has the
    highest global step, the new run's root state (save_state at step 120) was written last and holds another
    history. The newest is read, and the notes name both files."""
    out = tmp_path / "grpo"
    e = logs.trl_entry
    old = logs.write_trainer_state(out / "checkpoint-200", [e(s, 0.9, 0.1) for s in range(10, 201, 10)], 200)
    _age(old, 30)
    for i, c in enumerate((50, 100)):
        _age(logs.write_trainer_state(out / f"checkpoint-{c}", [e(s, 0.5, 0.2) for s in range(5, c + 1, 5)], c), 2 - i)
    root = logs.write_trainer_state(out, [e(s, 0.5, 0.2) for s in range(5, 121, 5)], 120)
    _age(root, 0)
    (run,) = load_log(out)
    assert run.meta["trainer_state_file"] == str(root.resolve())
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(5, 121, 5))
    read, passed = run.notes[:2]
    assert read.startswith("read trainer_state.json (global step 120, written ")
    assert read.endswith("the newest of 4 trainer_state.json files")
    assert passed.startswith("passed over checkpoint-200/trainer_state.json (global step 200, written ")
    assert "an earlier run's checkpoint in a reused output folder?" in passed


def test_state_written_later_from_the_same_run_does_not_win(trl_output) -> None:
    """A copy that reset modification times: checkpoint-2 now looks newer than checkpoint-4, but its history is the
    start of checkpoint-4's: the latest (step 4) is read, and the note says why the newer file was passed over."""
    _age(trl_output / "checkpoint-4" / "trainer_state.json", 1)
    _age(trl_output / "checkpoint-2" / "trainer_state.json", 0)
    (run,) = load_log(trl_output)
    assert run.meta["trainer_state_file"].endswith("checkpoint-4/trainer_state.json")
    assert run.notes[0].startswith("read checkpoint-4/trainer_state.json (global step 4, written ")
    assert run.notes[0].endswith("the latest of 2 trainer_state.json files")
    assert run.notes[1].startswith("passed over checkpoint-2/trainer_state.json (global step 2, written ")
    assert run.notes[1].endswith("written later: its log history is the start of the one read")


def test_cispo_clip_ratio_is_the_high_clip(tmp_path, logs) -> None:
    """TRL's CISPO logs no clip_ratio/*: its cispo_clip_ratio (ratio above the absolute cap, A > 0) is clip/high_frac,
    as the TRL hook records it under CISPO."""
    out = tmp_path / "cispo"
    entries = []
    for s in (1, 2):
        e = {k: v for k, v in logs.trl_entry(s, 0.5, 0.1).items() if not k.startswith("clip_ratio/")}
        entries.append({**e, "cispo_clip_ratio": 0.03 * s})
    logs.write_trainer_state(out / "checkpoint-2", entries, 2)
    (run,) = load_log(out)
    assert run.mapping[M.CLIP_HIGH_FRAC] == "cispo_clip_ratio"
    assert run.series(M.CLIP_HIGH_FRAC)[1].tolist() == pytest.approx([0.03, 0.06])
    assert M.CLIP_LOW_FRAC not in run.mapping


def test_completions_without_the_advantage_column_are_passed_over_with_a_note(tmp_path, logs) -> None:
    """A completions table whose columns are named otherwise (another TRL) costs the advantage statistics, not the
    log: the trainer state is read and a note names the file passed over."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "run"
    logs.write_trainer_state(out / "checkpoint-2", [logs.trl_entry(s, 0.5, 0.1) for s in (1, 2)], 2)
    logs.write_completions(out, 1, ["a", "a", "b", "b"], [1.0, -1.0, 0.5, -0.5])
    other = pa.table({"step": [2] * 2, "prompt": ["a", "a"], "completion": ["x", "y"], "advantages": [1.0, -1.0]})
    pq.write_table(other, out / "completions" / "completions_00002.parquet")
    (run,) = load_log(out)
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [1, 2]
    assert run.series(M.ADV_MEAN)[0].tolist() == [1]  # from the file that has the column
    assert run.meta["completions_files"] == 1
    (note,) = [n for n in run.notes if "passed over" in n]
    assert "completions_00002.parquet" in note and "advantages" in note and "\n" not in note
