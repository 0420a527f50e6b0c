"""TensorBoard event folders: OpenRLHF tags through torch's SummaryWriter and tensorboard's own writer."""

from __future__ import annotations

import pytest

from entropy_watch import metrics as M
from entropy_watch.importers import detect_format, load_log


def test_openrlhf_events_from_torch_summary_writer(tmp_path) -> None:
    tb = pytest.importorskip("torch.utils.tensorboard")
    run_dir = tmp_path / "tb" / "openrlhf-grpo"
    writer = tb.SummaryWriter(str(run_dir))
    for step in range(1, 11):
        writer.add_scalar("train/entropy_loss", 1.0 - 0.05 * step, step)
        writer.add_scalar("train/reward", 0.1 * step, step)
        writer.add_scalar("train/ppo_clip_ratio", 0.01, step)
        writer.add_scalar("train/ppo_kl", 1e-3, step)
        writer.add_scalar("train/response_length", 100.0 + step, step)
        if step % 5 == 0:
            writer.add_scalar("eval/reward", 0.5, step)
    writer.add_text("train/generated_samples", "hello", 1)
    writer.close()
    assert detect_format(tmp_path / "tb") == "tensorboard"
    (run,) = load_log(tmp_path / "tb")
    assert run.name == "openrlhf-grpo" and run.fmt == "tensorboard"
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(1, 11)) and ent[0] == pytest.approx(0.95)
    assert run.mapping[M.ENTROPY_MEAN] == "train/entropy_loss"
    assert run.mapping[M.REWARD_MEAN] == "train/reward"
    assert run.mapping[M.CLIP_REGION_FRAC] == "train/ppo_clip_ratio"
    assert run.mapping[M.KL_OLD] == "train/ppo_kl" and run.mapping[M.LENGTH_MEAN] == "train/response_length"
    assert "OpenRLHF" in run.meta["entropy_definition"]
    assert run.series("eval/reward")[0].tolist() == [5, 10]


def test_restart_in_same_folder_keeps_last_value(tmp_path, logs) -> None:
    folder = tmp_path / "run"
    logs.write_event_scalars(folder, {"actor/entropy": [(1, 0.9), (2, 0.8), (3, 0.7)]}, wall0=1000.0)
    logs.write_event_scalars(folder, {"actor/entropy": [(3, 0.71), (4, 0.6)]}, wall0=2000.0)
    (run,) = load_log(folder, run="tb-restart")
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert run.name == "tb-restart" and steps.tolist() == [1, 2, 3, 4]
    assert ent.tolist() == pytest.approx([0.9, 0.8, 0.71, 0.6])
    assert run.events and run.events[0]["step"] == 3


def test_many_run_folders_become_many_runs(tmp_path, logs) -> None:
    for name, h in (("a", 0.5), ("b", 0.4)):
        logs.write_event_scalars(tmp_path / "tb" / name, {"train/entropy_loss": [(1, h), (2, h / 2)]})
    logs.write_event_scalars(tmp_path / "tb" / "hparams", {"hp/lr": [(0, 1e-6)]})  # no entropy: skipped
    runs = load_log(tmp_path / "tb", run="exp")
    assert sorted(r.name for r in runs) == ["exp-a", "exp-b"]
    assert all(any("hparams" in n for n in r.notes) for r in runs)
