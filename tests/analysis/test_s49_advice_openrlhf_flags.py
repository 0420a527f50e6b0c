"""OpenRLHF advice quotes the flags of the run's own release: 0.10.2+ takes ``--actor.eps_clip_low_high``..., earlier
releases flat ``--eps_clip_low_high``, ``--entropy_loss_coef``... (hooks/openrlhf.py ``FLAT_ARGS``). The release is read
from run.json (``versions.openrlhf``, else the spelling of ``argv``); unknown, a line names both spellings. Before,
every OpenRLHF run was told the dotted flags, which an OpenRLHF 0.10.1 ``train_ppo_ray`` rejects."""

from __future__ import annotations

import re

import pytest

from entropy_watch.analysis import advice
from entropy_watch.analysis.advice import SLOTS, Facts, actions, run_facts

from .test_s48_advice import collapse_alerts

DOTTED = re.compile(r"--(?:actor|algo|rollout)\.")
FLAT = {
    "actor.eps_clip": "eps_clip", "actor.eps_clip_low_high": "eps_clip_low_high", "actor.dual_clip": "dual_clip",
    "actor.entropy_coef": "entropy_loss_coef", "actor.adam.lr": "actor_learning_rate", "actor.max_norm": "max_norm",
    "algo.kl.init_coef": "init_kl_coef", "algo.kl.use_loss": "use_kl_loss", "algo.dynamic_filtering_enable":
    "dynamic_filtering", "algo.dynamic_filtering_range": "dynamic_filtering_reward_range",
    "rollout.n_samples_per_prompt": "n_samples_per_prompt", "rollout.temperature": "temperature",
}  # fmt: skip
"""OpenRLHF 0.10.1's train_ppo_ray flag for each 0.10.2+ flag the advice names (read from both releases' parsers)."""
CONFIG = {"actor": {"eps_clip_low_high": [0.2, 0.22], "entropy_coef": 0.002}}


def every_line(meta: dict) -> list[str]:
    """The OpenRLHF lines of every advised alert kind for a run with ``meta`` as run.json."""
    facts = Facts(run_facts(meta), {})
    return [line for kind in SLOTS for line in actions(kind, facts) if line.startswith("OpenRLHF:")]


def meta(**extra: object) -> dict:
    return {"framework": "openrlhf", "config": CONFIG, **extra}


@pytest.mark.parametrize(
    "extra",
    [
        {"versions": {"openrlhf": "0.10.1"}},
        {"versions": {"openrlhf": "0.8.11"}},
        {"versions": {"openrlhf": "?"}, "argv": ["train_ppo_ray.py", "--entropy_loss_coef", "0.002", "--eps_clip=0.2"]},
    ],
)
def test_a_release_before_0_10_2_is_told_its_flat_flags(extra: dict) -> None:
    lines = every_line(meta(**extra))
    assert len(lines) >= 8
    said = "\n".join(lines)
    assert not DOTTED.search(said), said
    assert "OpenRLHF: --eps_clip_low_high 0.2 0.28 (now 0.2 0.22; clip-higher, DAPO; both sides default to " \
           "--eps_clip 0.2)" in lines  # fmt: skip
    assert "OpenRLHF: --entropy_loss_coef is 0.002; raise it" in lines
    assert "OpenRLHF: lower --actor_learning_rate (default 1e-6)" in lines  # no Muon before 0.10.2
    flags = set(re.findall(r"--[a-z_]+", said))
    assert flags <= {f"--{x}" for x in FLAT.values()}, flags
    assert {"--init_kl_coef", "--use_kl_loss", "--dual_clip", "--dynamic_filtering", "--n_samples_per_prompt"} <= flags


@pytest.mark.parametrize(
    "extra",
    [
        {"versions": {"openrlhf": "0.11.2"}},
        {"versions": {"openrlhf": "0.10.2"}},
        {"versions": {"openrlhf": "?"}, "config": {"actor": {**CONFIG["actor"], "optim": "adam"}}},  # 0.10.2's flag
        {"argv": ["train_ppo_ray.py", "--actor.entropy_coef=0.002", "--algo.kl.init_coef", "0.01"]},
    ],
)
def test_0_10_2_and_later_keep_the_dotted_flags(extra: dict) -> None:
    lines = every_line(meta(**extra))
    assert "OpenRLHF: --actor.entropy_coef is 0.002; raise it" in lines
    assert "OpenRLHF: lower --actor.adam.lr (default 1e-6; --actor.muon.lr with --actor.optim muon)" in lines
    assert not any("0.10.2" in line for line in lines)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"versions": {"openrlhf": "?"}, "argv": ["/usr/bin/ray::ActorModelRayActor"]},  # a Ray worker's argv
        {"argv": ["train_ppo_ray.py", "--actor.entropy_coef", "0.1", "--eps_clip", "0.2"]},  # both: not known
    ],
)
def test_an_unknown_release_is_told_both_spellings(extra: dict) -> None:
    lines = every_line(meta(**extra))
    assert "OpenRLHF: --actor.entropy_coef is 0.002; raise it (OpenRLHF < 0.10.2: --entropy_loss_coef)" in lines
    assert lines[0] == (
        "OpenRLHF: --actor.eps_clip_low_high 0.2 0.28 (now 0.2 0.22; clip-higher, DAPO; both sides default to "
        "--actor.eps_clip 0.2) (OpenRLHF < 0.10.2: --eps_clip_low_high, --eps_clip)"
    )
    for line in lines:  # every dotted flag a line names comes with its flat spelling, where it had one
        flat = {f"--{FLAT[m]}" for m in re.findall(r"--((?:actor|algo|rollout)[a-z_.]*[a-z_])", line)
                if m in FLAT}  # fmt: skip
        assert all(f in line.rpartition("(OpenRLHF < 0.10.2: ")[2] for f in flat), line


def test_the_flat_table_is_the_hooks_one() -> None:
    openrlhf = pytest.importorskip("entropy_watch.hooks.openrlhf")
    assert getattr(advice, "_OPENRLHF_FLAT", None) == FLAT == {k: openrlhf.FLAT_ARGS[k] for k in FLAT}


def test_the_alerts_are_the_same_whatever_the_spelling() -> None:
    flat = collapse_alerts(meta(versions={"openrlhf": "0.10.1"}))
    unknown = collapse_alerts(meta())
    assert [(a.kind, a.severity, a.step) for a in flat] == [(a.kind, a.severity, a.step) for a in unknown]
    assert flat[0].actions[0].startswith("OpenRLHF: --eps_clip_low_high 0.2 0.28")
