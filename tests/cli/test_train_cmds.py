"""``entropy-watch train``/``compare``: the algorithms ``--help`` names, and what Ctrl-C leaves and says."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import typer.testing

from entropy_watch.cli import app
from entropy_watch.cli.train_cmds import _train_interrupted
from entropy_watch.store import Store
from entropy_watch.store.layout import run_dir
from entropy_watch.trainer.config import ALGOS, preset


def _interrupt_update(monkeypatch: pytest.MonkeyPatch, at_call: int) -> None:
    """Ctrl-C inside the ``at_call``-th policy update (1-based: the update of step ``at_call - 1``)."""
    from entropy_watch.trainer import loop

    real, calls = loop.update_policy, []

    def update(*args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "update_policy", update)


def test_train_help_names_every_algorithm_the_trainer_accepts() -> None:
    r = typer.testing.CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    named = set(re.findall(r"[\w-]+", r.output))
    assert set(ALGOS) <= named, f"missing from train --help: {sorted(set(ALGOS) - named)}"


def test_ctrl_c_in_train_says_where_it_stopped_and_exits_130(ew, tmp_path: Path, monkeypatch) -> None:
    """One line, no traceback; the run reads ``interrupted`` with its steps kept; the advice is true: with no
    checkpoint yet, ``--resume`` is refused, so the line does not offer it."""
    _interrupt_update(monkeypatch, at_call=2)
    args = ("--store", tmp_path, "train", "--steps", "3", "--sft-steps", "5", "--run", "cut", "--device", "cpu")
    r = ew(*args)
    assert r.code == 130, r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert r.err.startswith(
        "interrupted: run 'cut' stopped during step 1 (1 of 3 steps done); what it logged stays in "
    ), r.err
    assert "no checkpoint yet (one every 50 steps), so --resume cannot continue it" in r.err
    assert str(run_dir(tmp_path, "cut")) in r.err  # where to delete it
    (row,) = json.loads(ew("--store", tmp_path, "ls", "--json").out)
    assert (row["run"], row["state"], row["last_step"]) == ("cut", "interrupted", 0)
    assert "interrupted" in ew("--store", tmp_path, "show", "cut").out
    resumed = ew(*args, "--resume")
    assert resumed.code == 1 and "no checkpoint" in resumed.err, resumed.err
    again = ew(*args)  # the refusal to train over the run does not offer --resume either
    assert again.code == 1 and "has no checkpoint to resume" in again.err and "--resume" not in again.err, again.err


def test_ctrl_c_before_the_first_step_says_nothing_was_logged(ew, tmp_path: Path, monkeypatch) -> None:
    from entropy_watch.trainer import loop

    def interrupted_sft(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run_sft", interrupted_sft)
    r = ew("--store", tmp_path, "train", "--steps", "3", "--sft-steps", "5", "--device", "cpu")
    assert r.code == 130 and "Traceback" not in r.err, r.err
    assert (
        r.err
        == "interrupted: stopped before step 0 (setup or SFT warm-up); nothing was logged: run the command again\n"
    )


def test_the_line_offers_resume_where_a_checkpoint_continues_the_run(tmp_path: Path) -> None:
    from entropy_watch.trainer.loop import TrainingInterrupted

    cfg = preset("tiny", "repo-r", run="r")
    line = _train_interrupted(TrainingInterrupted("r", 73, 50), cfg, tmp_path, resume=False)
    assert line == (
        f"run 'r' stopped during step 73 (73 of 300 steps done); what it logged stays in {tmp_path}; "
        "to continue from its last checkpoint (step 50) rerun the command with --resume"
    )


def test_ctrl_c_in_compare_stops_every_worker_and_exits_130(ew, tmp_path: Path) -> None:
    """SIGINT to the parent alone (workers ignore it): the run in progress stops after its step and reads
    ``interrupted``, nothing else trains, one line names it."""

    def ctrl_c_once_training() -> None:
        deadline = time.monotonic() + 120
        grpo = Path(str(run_dir(tmp_path, "grpo-s0")))
        while time.monotonic() < deadline:
            if not grpo.exists():  # the SFT stage and the worker's start: a stat, not a store listing, per poll
                time.sleep(0.1)
                continue
            runs = {i.name: i for i in Store(tmp_path).runs()}
            if "grpo-s0" in runs and (runs["grpo-s0"].last_step or 0) >= 2:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=ctrl_c_once_training, daemon=True)
    watcher.start()
    r = ew("--store", tmp_path, "compare", "--algos", "grpo", "--steps", "300", "--sft-steps", "5",
           "--probe-steps", "3", "--no-precision-check", "--jobs", "1")  # fmt: skip
    watcher.join()
    assert r.code == 130 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert re.fullmatch(
        r"interrupted: compare stopped; of its 3 runs 1 finished, 1 interrupted \(grpo-s0 at step \d+\), 1 never "
        r"started; what they logged stays in .*; a comparison cannot be resumed: rerun it with another --store "
        r"\(or remove its runs from this one\)\n",
        r.err,
    ), r.err
    states = {i.name: (i.state, i.last_step) for i in Store(tmp_path).runs()}
    assert states.keys() == {"sft-s0", "grpo-s0"} and states["sft-s0"] == ("finished", 4)
    assert states["grpo-s0"][0] == "interrupted" and states["grpo-s0"][1] < 300
