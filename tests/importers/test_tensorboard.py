"""TensorBoard event folders: OpenRLHF tags, HF Trainer entries and DDP ranks through torch's SummaryWriter and
tensorboard's own writer; restarts judged as for every other format; damaged, cut and renamed event files."""

from __future__ import annotations

from pathlib import Path

import pytest

from entropy_watch import metrics as M
from entropy_watch import synthetic
from entropy_watch.analysis import RunSeries, Verdict, analyze
from entropy_watch.importers import ImportedRun, detect_format, load_log


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
    logs.write_event_scalars(folder, {"actor/entropy": [(2, 0.81), (3, 0.71), (4, 0.6)]}, wall0=2000.0)
    (run,) = load_log(folder, run="tb-restart")
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert run.name == "tb-restart" and steps.tolist() == [1, 2, 3, 4]
    assert ent.tolist() == pytest.approx([0.9, 0.81, 0.71, 0.6])
    assert [(e["step"], e["payload"]["from_step"]) for e in run.events] == [(2, 3)]


def test_restart_that_stops_short_leaves_out_the_points_it_replaced(tmp_path, logs) -> None:
    """A second writer resumes from step 2 and stops at step 3: the first one's step 4 belongs to the trajectory the
    restart replaced (TensorBoard's own ``purge_orphaned_data`` hides it too); so does its reward at step 3."""
    folder = tmp_path / "run"
    first = {"actor/entropy": [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6)], "critic/rewards/mean": [(3, 0.5), (4, 0.6)]}
    logs.write_event_scalars(folder, first, wall0=1000.0)
    logs.write_event_scalars(folder, {"actor/entropy": [(2, 0.95), (3, 1.0)]}, wall0=2000.0)
    (run,) = load_log(folder)
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == [1, 2, 3] and ent.tolist() == pytest.approx([0.9, 0.95, 1.0])
    assert M.REWARD_MEAN not in run.mapping  # its points were all the replaced trajectory's
    assert [(e["step"], e["payload"]["from_step"]) for e in run.events] == [(2, 4)]
    assert any("3 point(s) logged before it" in n and "1 at steps it did not log again" in n for n in run.notes)


def test_many_run_folders_become_many_runs(tmp_path, logs) -> None:
    for name, h in (("a", 0.5), ("b", 0.4)):
        logs.write_event_scalars(tmp_path / "tb" / name, {"train/entropy_loss": [(1, h), (2, h / 2)]})
    logs.write_event_scalars(tmp_path / "tb" / "hparams", {"hp/lr": [(0, 1e-6)]})  # no entropy: skipped
    runs = load_log(tmp_path / "tb", run="exp")
    assert sorted(r.name for r in runs) == ["exp-a", "exp-b"]
    assert all(any("hparams" in n for n in r.notes) for r in runs)


# --- write order: evaluation entries, restarts, two writers ---


def _collapse(n: int = 80) -> list[tuple[int, float, float]]:
    """(global step, entropy, reward) of a seeded synthetic steady collapse, logged every 5 steps."""
    run = synthetic.generate("steady_collapse", seed=1, n_steps=n)
    return [(5 * (i + 1), float(h), float(r)) for i, (h, r) in enumerate(zip(run.entropy, run.reward, strict=True))]


def _hf_run(folder: Path, logs, eval_every: int | None) -> None:
    """A TRL GRPO run through HF's TensorBoardCallback; with ``eval_every``, an evaluation entry at those steps."""
    log = logs.hf_tensorboard_writer(folder)
    for step, h, r in _collapse():
        epoch = step / 400
        log(step, {"loss": 0.01, "entropy": h, "reward": r, "learning_rate": 1e-6, "epoch": epoch})
        if eval_every and step % eval_every == 0:
            log(step, {"eval_loss": 0.1, "eval_runtime": 3.2, "epoch": epoch})
    log.writer.close()


def _verdict(path: Path) -> tuple[ImportedRun, Verdict]:
    (run,) = load_log(path)
    result = analyze(RunSeries.from_imported(run))
    assert result.verdict is not None
    return run, result.verdict


def test_hf_trainer_evaluation_entries_are_no_restarts(tmp_path, logs) -> None:
    """The Trainer logs ``epoch`` in the training and the evaluation entry at one step: train/epoch, the busiest
    tag, repeats those steps. A repeated step is no restart: no resume event, the collapse is seen as without
    evaluation."""
    _hf_run(tmp_path / "with_eval" / "grpo", logs, eval_every=25)
    _hf_run(tmp_path / "without_eval" / "grpo", logs, eval_every=None)
    run, with_eval = _verdict(tmp_path / "with_eval" / "grpo")
    _, without_eval = _verdict(tmp_path / "without_eval" / "grpo")
    assert run.events == []
    assert not any("restart" in n for n in run.notes)
    assert run.series("train/epoch")[0].tolist() == [s for s, _, _ in _collapse()]
    assert (without_eval.health, without_eval.kind) == ("warning", "collapse")
    assert (with_eval.health, with_eval.kind, with_eval.headline) == (
        without_eval.health,
        without_eval.kind,
        without_eval.headline,
    )


def _ranks(folder: Path, lag: float) -> None:
    """Two ranks of a distributed job, each with its own SummaryWriter in one folder (no ``if rank == 0``); rank 1
    writes each step ``lag`` seconds after rank 0 (its entropy 2% higher)."""
    tb = pytest.importorskip("torch.utils.tensorboard")
    writers = [tb.SummaryWriter(str(folder), filename_suffix=f".rank{r}") for r in (0, 1)]
    for step, h, r in _collapse():
        for rank, w in enumerate(writers):
            t = 1_700_000_000.0 + step + rank * lag
            w.add_scalar("train/entropy", h * (1 + 0.02 * rank), step, walltime=t)
            w.add_scalar("train/reward", r, step, walltime=t)
    for w in writers:
        w.close()


@pytest.mark.parametrize("lag", [0.5, 7.5], ids=["in-step", "lagging"])
def test_two_ranks_in_one_folder_are_no_restarts(tmp_path, lag) -> None:
    """In step (rank 1 right after rank 0: each step twice) or lagging 1.5 logging intervals behind (steps go back
    at every other point: out of order, as the CSV path reads such rows), no restart is recorded, a note says two
    writers are present, and the collapse is seen."""
    _ranks(tmp_path / "ddp", lag)
    run, verdict = _verdict(tmp_path / "ddp")
    assert run.events == []
    assert (verdict.health, verdict.kind) == ("warning", "collapse")
    writers = [n for n in run.notes if "two or more writers" in n]
    assert len(writers) == 1 and ".rank0" in writers[0] and ".rank1" in writers[0]
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [s for s, _, _ in _collapse()]


def test_two_writers_in_one_file_are_read_in_step_order(tmp_path, logs) -> None:
    """One file holding two writers' interleaved points (steps go back at every other point): read in step order
    with a note, no restarts — the rule the CSV/JSONL path applies to rows out of order."""
    points = [(s, h) for s, h, _ in _collapse()]
    interleaved = [p for pair in zip(points, points[3:], strict=False) for p in pair]  # rank 1 three points ahead
    logs.write_event_scalars(tmp_path / "one", {"actor/entropy": interleaved})
    (run,) = load_log(tmp_path / "one")
    assert run.events == []
    assert any("not in step order" in n and "writers" in n for n in run.notes)


# --- folders and files: sub-folders without scalars, damaged and cut files, a single file, another name ---


def _summary_writer_run(folder: Path, n: int = 20) -> Path:
    """``train/entropy`` and ``train/reward`` at steps 1..n through torch's SummaryWriter; the event file's path."""
    tb = pytest.importorskip("torch.utils.tensorboard")
    w = tb.SummaryWriter(str(folder))
    for step in range(1, n + 1):
        w.add_scalar("train/entropy", 1.0 - 0.01 * step, step)
        w.add_scalar("train/reward", 0.02 * step, step)
    w.close()
    (path,) = folder.glob("events.out.tfevents.*")
    return path


def test_hparams_and_text_sub_folders_are_skipped_with_a_note(tmp_path) -> None:
    tb = pytest.importorskip("torch.utils.tensorboard")
    folder = tmp_path / "grpo-rho2"
    w = tb.SummaryWriter(str(folder))
    w.add_hparams({"lr": 1e-6, "beta": 0.04}, {})  # what many scripts do at start: a <time.time()>/ sub-folder
    for step in range(1, 11):
        w.add_scalar("train/entropy", 1.0 - 0.05 * step, step)
    w.close()
    samples = tb.SummaryWriter(str(folder / "samples"))
    samples.add_text("completion", "the answer is 4", 1)
    samples.close()
    (hp,) = [d.name for d in folder.iterdir() if d.is_dir() and d.name != "samples"]
    (run,) = load_log(folder)
    assert run.name == "grpo-rho2" and run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(1, 11))
    assert f"skipped event folder(s) without scalars: {hp}, samples" in run.notes


def _record_offsets(data: bytes) -> list[int]:
    """Byte offset of each record: ``uint64 length, uint32 crc, data, uint32 crc`` (TFRecord)."""
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + int.from_bytes(data[pos : pos + 8], "little")
    return offsets


@pytest.mark.parametrize("where", ["data", "length"])
def test_corrupt_record_is_skipped_and_named(tmp_path, where) -> None:
    """One damaged record mid-file (a bad sector, a partial copy): tensorboard's reader stops there without a word;
    here the record is skipped, the points after it are read, and a note names the file and the step before it."""
    path = _summary_writer_run(tmp_path / "run", n=20)
    data = bytearray(path.read_bytes())
    at = _record_offsets(bytes(data))[22]  # file_version, then entropy and reward per step: step 11's reward
    data[at + (14 if where == "data" else 2)] ^= 0xFF
    path.write_bytes(bytes(data))
    (run,) = load_log(tmp_path / "run")
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(1, 21))
    assert run.series("train/reward")[0].tolist() == [s for s in range(1, 21) if s != 11]
    (note,) = [n for n in run.notes if "corrupt" in n]
    assert note.startswith(f"{path.name}: skipped 1 corrupt record(s)") and f"byte {at:,}, after step 11" in note


def test_damaged_length_with_nothing_after_names_the_last_step_read(tmp_path) -> None:
    path = _summary_writer_run(tmp_path / "run", n=20)
    data = bytearray(path.read_bytes())
    offsets = _record_offsets(bytes(data))
    at = offsets[-2]  # step 20's entropy: its length field damaged
    data[at + 2] ^= 0xFF
    path.write_bytes(bytes(data[: offsets[-1] + 5]))  # ... and the last record cut: no valid record after it
    (run,) = load_log(path)
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(1, 20))
    assert any(f"{path.name}: no valid record after the corrupt one" in n and "up to step 19" in n for n in run.notes)


def test_cut_last_record_is_left_out_with_a_note(tmp_path) -> None:
    path = _summary_writer_run(tmp_path / "trunc", n=20)
    path.write_bytes(path.read_bytes()[:-5])  # a copy cut short / the writer still writing
    (run,) = load_log(path)
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(1, 21))
    assert run.series("train/reward")[0].tolist() == list(range(1, 20))
    assert f"{path.name}: its last record is cut short (still being written, or a copy cut short); left out" in (
        run.notes
    )


def test_single_event_file_is_named_after_its_folder(tmp_path) -> None:
    path = _summary_writer_run(tmp_path / "grpo lr=1e-6")
    (run,) = load_log(path)
    assert run.name == "grpo_lr_1e-6"  # not events.out.tfevents.<time>.<host>.<pid>; made store-safe
    assert load_log(path, run="mine")[0].name == "mine"


def test_event_file_under_another_name_is_recognised(tmp_path) -> None:
    path = _summary_writer_run(tmp_path / "run")
    renamed = tmp_path / "renamed_run1.tb"
    path.rename(renamed)
    assert detect_format(renamed) == "tensorboard"
    (run,) = load_log(renamed)
    assert run.name == "renamed_run1" and run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(1, 21))


def test_two_writers_of_different_tags_are_no_two_ranks(tmp_path, logs) -> None:
    """The Trainer's writer and the user's own, at the same time in one folder, each with its tags: no collision."""
    steps = range(1, 11)
    logs.write_event_scalars(tmp_path / "run", {"train/entropy": [(s, 1.0 - 0.05 * s) for s in steps]}, wall0=1000.0)
    logs.write_event_scalars(tmp_path / "run", {"custom/reward": [(s, 0.1 * s) for s in steps]}, wall0=1000.5)
    (run,) = load_log(tmp_path / "run")
    assert not any("writers" in n for n in run.notes) and run.events == []
