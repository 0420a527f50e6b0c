"""A Hugging Face / TRL training resumed from a checkpoint, as a user restarts one: a second ``Trainer`` with the same
output folder and run, ``trainer.train(resume_from_checkpoint=True)``. It writes into the same run, records a
``resume`` event at the first step it logs, the one after the checkpoint's (the ``Trainer`` loads the checkpoint's
state before ``on_train_begin``), the steps it logs again replace the first session's values, and the analysis keeps
the run as one segment. A second training from step 0 under an existing run's name is warned about.

The callback's part runs on a stand-in state (fast); the real ``Trainer`` and ``GRPOTrainer`` runs (tiny models built
in code, CPU; slow: importing TRL alone takes seconds) check the order in which the ``Trainer`` restores its state
and calls ``on_train_begin``."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import RunSeries
from entropy_watch.hooks import Watch
from entropy_watch.hooks.hf import EntropyWatchCallback
from entropy_watch.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trl_grpo.py"


@pytest.fixture(scope="module")
def tiny() -> ModuleType:
    """``examples/trl_grpo.py`` as a module: the tiny Qwen2, word tokenizer and GRPO set-up built in code."""
    pytest.importorskip("trl")
    spec = importlib.util.spec_from_file_location("ew_example_trl_grpo_resume", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _session_tag(session: int) -> Any:
    """A callback that adds ``session`` to every log, ahead of entropy_watch's: which process logged a stored row."""
    from transformers import TrainerCallback

    class Tag(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs is not None:
                logs["session"] = float(session)

    return Tag()


def _stop_at(step: int) -> Any:
    """Ends training after ``step`` without a save there: the process "died" past its last checkpoint."""
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step >= step:
                control.should_training_stop = True

    return Stop()


def _events(store: Store, run: str) -> list[tuple[int, str, dict]]:
    return [(int(e["step"]), e["kind"], json.loads(e["payload"])) for e in store.events(run)]


def _begin(root: Path, out: Path, global_step: int, caplog: pytest.LogCaptureFixture) -> list[str]:
    """``on_train_begin`` as the ``Trainer`` calls it, with the state it restored; returns the warnings logged."""
    cb = EntropyWatchCallback(store=root, strict=True)
    args = SimpleNamespace(output_dir=str(out), run_name=None, world_size=1)
    state = SimpleNamespace(global_step=global_step, max_steps=8, is_world_process_zero=True)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        cb.on_train_begin(args, state, SimpleNamespace())
    cb.watch.close()
    return [r.getMessage() for r in caplog.records if "already holds" in r.getMessage()]


def test_on_train_begin_past_step_0_records_a_resume_after_the_checkpoint_step(tmp_path, caplog):
    out, root = tmp_path / "out", tmp_path / "store"
    (out / "checkpoint-4").mkdir(parents=True)
    with Watch("out", store=root) as w:  # the first process
        w.log(4, loss=1.0)
    assert _begin(root, out, 4, caplog) == []
    assert _begin(root, out, 6, caplog) == []  # resumed from a checkpoint passed from elsewhere: no folder to name
    assert _events(Store(root), "out") == [
        (5, "resume", {"checkpoint_step": 4, "checkpoint": str(out / "checkpoint-4")}),
        (7, "resume", {"checkpoint_step": 6, "checkpoint": None}),
    ]


def test_on_train_begin_at_step_0_warns_when_the_run_holds_an_earlier_training(tmp_path, caplog):
    out, root = tmp_path / "out", tmp_path / "store"
    assert _begin(root, out, 0, caplog) == []  # a new run; it logs nothing
    assert _begin(root, out, 0, caplog) == []  # nor does a session that logged nothing leave steps to replace
    with Watch("out", store=root) as w:
        w.log(7, loss=1.0)
    (warned,) = _begin(root, out, 0, caplog)
    assert "run 'out' already holds an earlier training (its last session reached step 7)" in warned
    assert "resume_from_checkpoint" in warned
    assert _events(Store(root), "out") == []


def test_watch_knows_the_last_step_of_an_earlier_session(tmp_path):
    with Watch("crashed", store=tmp_path) as w:
        assert w.earlier_last_step is None
        w.log(3, loss=1.0)
    with Watch("crashed", store=tmp_path) as w:
        assert w.earlier_last_step == 3


def _hf_trainer(tiny: ModuleType, out: Path, callbacks: list[Any], max_steps: int = 4) -> Any:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    tok = tiny.tiny_tokenizer()
    ids = [tok(p)["input_ids"][:3] + [tok.eos_token_id] for p in tiny.PROMPTS]
    ids = [x + [tok.pad_token_id] * (5 - len(x)) for x in ids]
    data = Dataset.from_dict({"input_ids": ids * 2, "labels": ids * 2})
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=4, max_steps=max_steps, logging_steps=1,
                             save_strategy="steps", save_steps=2, use_cpu=True, report_to="none", disable_tqdm=True,
                             seed=0)  # fmt: skip
    return Trainer(model=tiny.tiny_model(tok), args=args, train_dataset=data, callbacks=callbacks)


@pytest.mark.slow
def test_hf_trainer_resumed_from_a_checkpoint_continues_its_run(tiny, tmp_path):
    out, root = tmp_path / "hf-out", tmp_path / "store"
    first = EntropyWatchCallback(store=root, strict=True, flush_secs=0.05)
    _hf_trainer(tiny, out, [_session_tag(1), first, _stop_at(3)]).train()  # checkpoint-2 saved, step 3 logged
    first.watch.close("failed")
    store = Store(root)
    assert _events(store, "hf-out") == []  # a fresh start is no resume
    assert store.series("hf-out", "session")[0].tolist() == [1, 2, 3]

    second = EntropyWatchCallback(store=root, strict=True, flush_secs=0.05)
    _hf_trainer(tiny, out, [_session_tag(2), second]).train(resume_from_checkpoint=True)  # from checkpoint-2
    second.watch.close()

    assert [r.name for r in store.runs()] == ["hf-out"]  # the same run (named after the output folder)
    info = store.run_info("hf-out")
    assert info.state == "finished" and info.last_step == 4
    assert _events(store, "hf-out") == [
        (3, "resume", {"checkpoint_step": 2, "checkpoint": os.path.join(str(out), "checkpoint-2")})
    ]
    steps, session = store.series("hf-out", "session")
    assert steps.tolist() == [1, 2, 3, 4]
    assert session.tolist() == [1, 1, 2, 2]  # step 3, logged by both processes: the resumed value is kept
    assert second.watch.errors == 0


@pytest.mark.slow
def test_a_resume_from_an_earlier_checkpoint_replaces_what_came_after_it(tiny, tmp_path):
    """The first process logs steps 1-7 (checkpoints 2, 4, 6); the user resumes from checkpoint-2 and that process
    stops after step 4 (killed, or still running). Steps 5-7 belong to the trajectory the resume replaced: the run
    reads to step 4 (its series and ``ls``), not steps 3-4 resumed and then 5-7 from before."""
    out, root = tmp_path / "hf-back", tmp_path / "store"
    first = EntropyWatchCallback(store=root, strict=True, flush_secs=0.05)
    _hf_trainer(tiny, out, [_session_tag(1), first, _stop_at(7)], max_steps=8).train()
    first.watch.close("failed")
    store = Store(root)
    assert store.series("hf-back", "session")[0].tolist() == list(range(1, 8))
    assert store.run_info("hf-back").last_step == 7

    second = EntropyWatchCallback(store=root, strict=True, flush_secs=0.05)
    trainer = _hf_trainer(tiny, out, [_session_tag(2), second, _stop_at(4)], max_steps=8)
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    second.watch.close("failed")

    assert _events(store, "hf-back") == [(3, "resume", {"checkpoint_step": 2, "checkpoint": str(out / "checkpoint-2")})]
    steps, session = store.series("hf-back", "session")
    assert steps.tolist() == [1, 2, 3, 4] and session.tolist() == [1, 1, 2, 2]
    assert store.series("hf-back", "loss")[0].tolist() == [1, 2, 3, 4]
    assert store.run_info("hf-back").last_step == 4
    assert second.watch.errors == 0


@pytest.mark.slow
def test_trl_grpo_resumed_from_a_checkpoint_continues_its_run(tiny, tmp_path):
    from entropy_watch.hooks.trl import attach

    out, root = tmp_path / "grpo-out", tmp_path / "store"

    def session(n: int, stop: int | None = None, resume: bool = False) -> Any:
        trainer = tiny.build_trainer(str(out), max_steps=4, save_strategy="steps", save_steps=2)
        trainer.add_callback(_session_tag(n))  # before attach's callback
        handle = attach(trainer, store=root, strict=True, flush_secs=0.05)
        if stop is not None:
            trainer.add_callback(_stop_at(stop))
        trainer.train(resume_from_checkpoint=True if resume else None)
        return handle

    session(1, stop=3).close("failed")
    handle = session(2, resume=True)
    handle.close()

    store = Store(root)
    assert [r.name for r in store.runs()] == ["grpo-out"]
    assert store.run_info("grpo-out").state == "finished"
    assert _events(store, "grpo-out") == [
        (3, "resume", {"checkpoint_step": 2, "checkpoint": os.path.join(str(out), "checkpoint-2")})
    ]
    assert store.series("grpo-out", "session")[1].tolist() == [1, 1, 2, 2]
    # the per-token layer records the resumed steps at TRL's step numbers: one entropy per step, none missing
    assert store.series("grpo-out", M.ENTROPY_MEAN)[0].tolist() == [1, 2, 3, 4]
    series = RunSeries.from_reader(store, "grpo-out")
    assert series.events == [(3, "resume")] and series.reset_steps() == []  # one segment: baselines kept
    assert handle.watch.errors == 0


@pytest.mark.slow
def test_hf_training_from_scratch_under_an_existing_run_is_warned_about(tiny, tmp_path, caplog):
    out, root = tmp_path / "hf-again", tmp_path / "store"
    for n in (1, 2):  # the same script run twice: the second run's steps 1-2 replace the first's, 3-4 would stay
        cb = EntropyWatchCallback(store=root, strict=True, flush_secs=0.05)
        with caplog.at_level(logging.WARNING, logger="entropy_watch"):
            _hf_trainer(tiny, out, [cb], max_steps=4 // n).train()
        cb.watch.close()
        warned = [r.getMessage() for r in caplog.records if "already holds an earlier training" in r.getMessage()]
        assert len(warned) == n - 1
    assert "run 'hf-again' already holds an earlier training (its last session reached step 4)" in warned[0]
    assert "resume_from_checkpoint" in warned[0]
