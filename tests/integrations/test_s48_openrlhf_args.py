"""OpenRLHF's settings reach ``run.json`` (hooks/openrlhf.py :func:`run_args`), its W&B API key never: the real
OpenRLHF 0.11.2 ``train_ppo_ray`` parser (its argument block, read from the installed package: the module itself
imports Ray) and ``hierarchize`` make the ``args`` an ``ActorPPOTrainer`` holds; a stand-in trainer with the real
one's ``__init__`` contract (``self.args = strategy.args``) is wrapped as :func:`install` wraps the real one."""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("torch")
from entropy_watch.hooks import openrlhf  # noqa: E402
from entropy_watch.store import layout  # noqa: E402

KEY = "0123456789abcdef0123456789abcdefLEAK"


def _openrlhf_args(argv: list[str]) -> Any:
    """``args`` as OpenRLHF 0.11.2's ``train_ppo_ray`` builds them from ``argv``."""
    spec = importlib.util.find_spec("openrlhf")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("openrlhf is not installed (make setup installs openrlhf==0.11.2 with --no-deps)")
    root = Path(spec.submodule_search_locations[0])
    src = (root / "cli" / "train_ppo_ray.py").read_text(encoding="utf-8")
    block = src[src.index("    parser = argparse.ArgumentParser()") : src.index("    args = parser.parse_args()")]
    ns: dict[str, Any] = {"argparse": argparse, "datetime": datetime.datetime, "os": os}
    exec(compile("\n".join(line[4:] for line in block.splitlines()), "train_ppo_ray", "exec"), ns)  # noqa: S102
    cfg_spec = importlib.util.spec_from_file_location("openrlhf_config", root / "utils" / "config.py")
    assert cfg_spec is not None and cfg_spec.loader is not None
    config = importlib.util.module_from_spec(cfg_spec)
    cfg_spec.loader.exec_module(config)
    return config.hierarchize(ns["parser"].parse_args(argv))


class ActorPPOTrainer:  # openrlhf/trainer/ray/ppo_actor.py (0.11.2): __init__(self, strategy, actor, ...)
    def __init__(self, strategy: Any, actor: Any = None, *args: Any, **kwargs: Any) -> None:
        self.strategy = strategy
        self.args = strategy.args


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ENTROPY_WATCH_DIR", str(tmp_path))
    monkeypatch.setenv("ENTROPY_WATCH_RUN", "orl-args")
    openrlhf.set_watch(None)
    openrlhf.wrap_trainer(ActorPPOTrainer)

    def train(args: Any) -> dict:
        ActorPPOTrainer(SimpleNamespace(args=args))
        w = openrlhf.get_watch()
        w.log_dict(1, {"entropy/mean": 1.0})
        w.close()
        openrlhf.set_watch(None)
        return json.loads(layout.run_json_path(tmp_path, "orl-args").read_text(encoding="utf-8"))

    yield train
    openrlhf.set_watch(None)


FLAGS = ["--actor.entropy_coef", "0.002", "--actor.eps_clip_low_high", "0.2", "0.28", "--rollout.n_samples_per_prompt",
         "8", "--actor.adam.lr", "5e-7", "--algo.kl.init_coef", "0.001"]  # fmt: skip


def test_settings_advice_names_are_stored_and_the_wandb_key_is_not(run) -> None:
    meta = run(_openrlhf_args([*FLAGS, "--logger.wandb.key", KEY]))
    assert KEY not in json.dumps(meta) and meta["config"]["wandb"] is True
    actor = meta["config"]["actor"]
    assert actor["entropy_coef"] == 0.002 and actor["eps_clip_low_high"] == [0.2, 0.28] and actor["adam"]["lr"] == 5e-7
    assert meta["config"]["rollout"] == {"n_samples_per_prompt": 8, "temperature": 1.0}
    assert meta["config"]["algo"]["kl"] == {"init_coef": 0.001, "use_loss": False}
    assert "logger" not in meta["config"]  # nothing of args beyond the advice keys


def test_without_wandb_and_with_the_key_given_before_0_11(run) -> None:
    assert run(_openrlhf_args(FLAGS))["config"]["wandb"] is False
    legacy = argparse.Namespace(use_wandb=KEY, **{"actor.entropy_coef": 0.01})  # flat, dotted names, older key flag
    meta = run(legacy)
    assert KEY not in json.dumps(meta) and meta["config"] == {"actor": {"entropy_coef": 0.01}, "wandb": True}


class Broken:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("args went away")


def test_args_given_after_the_watch_exists_are_merged_and_a_bad_args_never_raises(run, tmp_path: Path) -> None:
    w = openrlhf.get_watch()  # a loss call came first
    openrlhf.remember_args(_openrlhf_args([*FLAGS, "--logger.wandb.key", KEY]))
    openrlhf.remember_args(Broken())  # reported, not raised; what was stored stays
    w.close()
    meta = json.loads(layout.run_json_path(tmp_path, "orl-args").read_text(encoding="utf-8"))
    assert KEY not in json.dumps(meta) and meta["config"]["actor"]["entropy_coef"] == 0.002
