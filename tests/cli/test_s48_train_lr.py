"""The reference trainer's advice for a collapse says "entropy-watch train --lr X" (analysis/advice.py): `train`
takes ``--lr`` (it had no such flag: only ``compare --lr`` and the Python config), and the value reaches the run's RL
config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")


class _Stop(Exception):
    pass


def test_train_lr_reaches_the_rl_config(ew, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def fake_train(cfg: Any, **_: Any) -> Any:
        seen.append(cfg)
        raise _Stop

    monkeypatch.setattr("entropy_watch.trainer.loop.train", fake_train)  # stops before anything trains
    ew("--store", tmp_path, "train", "--lr", "1.5e-4", "--steps", "1", "--sft-steps", "0")
    assert [c.rl.lr for c in seen] == [1.5e-4]


def test_the_trainers_learning_rate_advice_names_a_flag_train_takes(ew) -> None:
    from entropy_watch.analysis.advice import Facts, actions, run_facts

    facts = Facts(run_facts({"framework": "entropy_watch.trainer", "config": {"rl": {"lr": 3e-4}}}), {})
    line = next(a for a in actions("collapse", facts) if "learning rate" in a)
    assert line.startswith("entropy-watch train --lr 0.00015")
    assert "--lr" in ew("train", "--help").out
