"""verl runs' advice reads the settings run.json holds (hooks/verl.py keeps ``actor_rollout_ref.actor``/``.rollout``
and ``algorithm`` of the config verl hands Tracking): a run already on Clip-Cov, a KL loss, dynamic sampling, a
known group size and temperature is not told to set them, and an entropy bonus of 0 is said to be 0. Keys are verl
0.9.1's own (its ``_generated_ppo_trainer.yaml``, read from the installed package where it is there)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from entropy_watch.analysis import Analyzer, RunSeries
from entropy_watch.analysis.advice import Facts, actions, run_facts

from ._series import collapsing

# verl 0.9.1's defaults for what advice reads (ppo_trainer.yaml), as hooks/verl.py's run_config keeps them
CONFIG: dict[str, Any] = {
    "actor_rollout_ref": {
        "actor": {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2, "clip_ratio_c": 3.0,
                  "policy_loss": {"loss_mode": "vanilla", "clip_cov_ratio": 0.0002, "kl_cov_ratio": 0.0002},
                  "entropy_coeff": 0, "use_kl_loss": False, "kl_loss_coef": 0.001, "kl_loss_type": "low_var_kl",
                  "grad_clip": 1.0, "optim": {"lr": 1e-6}},
        "rollout": {"n": 1, "temperature": 1.0},
    },
    "algorithm": {"filter_groups": {"enable": False, "metric": "reward"}, "use_kl_in_reward": False,
                  "kl_ctrl": {"type": "fixed", "kl_coef": 0.001}},
}  # fmt: skip


def verl_config(*, mode: str = "vanilla", kl_loss: bool = False, filter_groups: bool = False) -> dict[str, Any]:
    cfg = copy.deepcopy(CONFIG)
    actor = cfg["actor_rollout_ref"]["actor"]
    actor["policy_loss"]["loss_mode"], actor["use_kl_loss"], actor["kl_loss_coef"] = mode, kl_loss, 0.005
    cfg["algorithm"]["filter_groups"]["enable"] = filter_groups
    cfg["actor_rollout_ref"]["rollout"].update(n=4, temperature=0.7)
    return cfg


def advice(kind: str, cfg: dict[str, Any]) -> list[str]:
    return actions(kind, Facts(run_facts({"framework": "verl", "config": cfg}), {}))


def test_a_run_on_clip_cov_is_not_told_to_use_it() -> None:
    for mode in ("clip_cov", "kl_cov", "ew_clip_cov"):  # ew_<mode>: hooks/verl.py's wrap of verl's <mode>
        said = "\n".join(advice("collapse", verl_config(mode=mode)))
        assert "loss_mode" not in said, mode
    vanilla = advice("collapse", verl_config())
    assert any("policy_loss.loss_mode is vanilla; try clip_cov or kl_cov" in x for x in vanilla), vanilla


def test_a_run_on_repo_r_is_not_told_to_attach_it_nor_to_add_a_bonus() -> None:
    said = "\n".join(advice("collapse", verl_config(mode="ew_repo_r")))
    assert "loss_mode" not in said and "entropy_coeff" not in said, said


def test_a_zero_entropy_bonus_is_said_to_be_zero() -> None:
    said = advice("collapse", verl_config())
    assert "verl: actor_rollout_ref.actor.entropy_coeff is 0 (no entropy bonus); set it above 0" in said, said
    assert not any("(default 0)" in x for x in said)


def test_a_run_with_a_kl_loss_is_told_its_coefficient() -> None:
    said = advice("explosion", verl_config(kl_loss=True))
    assert "verl: the KL penalty actor_rollout_ref.actor.kl_loss_coef is 0.005; raise it" in said, said
    off = advice("explosion", verl_config())
    assert any(x.startswith("verl: use_kl_loss is False; set actor_rollout_ref.actor.use_kl_loss=True") for x in off)
    cfg = verl_config()
    cfg["algorithm"]["use_kl_in_reward"] = True  # read from `algorithm`, not only actor_rollout_ref
    assert "verl: the KL penalty algorithm.kl_ctrl.kl_coef is 0.001; raise it" in advice("explosion", cfg)


def test_dynamic_sampling_on_is_not_advised_and_group_size_quotes_the_run() -> None:
    said = advice("zero_variance_groups", verl_config(filter_groups=True))
    assert not any("filter_groups" in x for x in said), said
    assert "(n is 4 and temperature is 0.7)" in "\n".join(said), said
    assert any("algorithm.filter_groups.enable=True" in x for x in advice("zero_variance_groups", verl_config()))


def test_a_null_clip_ratio_high_reads_clip_ratio_as_verl_does() -> None:
    cfg = verl_config()
    actor = cfg["actor_rollout_ref"]["actor"]
    actor["clip_ratio"], actor["clip_ratio_low"], actor["clip_ratio_high"] = 0.28, None, None
    assert not any("clip_ratio_high" in x for x in advice("collapse", cfg))  # verl clips at 0.28 already


def test_the_analysis_of_a_verl_run_gives_its_alerts_these_actions() -> None:
    h = collapsing()
    meta = {"framework": "verl", "config": verl_config(mode="kl_cov")}
    s = RunSeries.from_arrays("v", np.arange(h.size), h, meta=meta)
    got = [a for a in Analyzer().analyze(s).alerts if a.kind == "collapse"]
    assert got
    for a in got:
        said = "\n".join(a.actions)
        assert "loss_mode" not in said and "entropy_coeff is 0 (no entropy bonus)" in said, said


def test_the_keys_read_are_those_of_the_installed_verl() -> None:
    spec = importlib.util.find_spec("verl")
    if spec is None or spec.origin is None:
        pytest.skip("verl is not installed")
    path = Path(spec.origin).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml"
    if not path.is_file():
        pytest.skip("this verl has no generated trainer config")
    real = yaml.safe_load(path.read_text())

    def keys(d: dict[str, Any], under: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
        out = set()
        for k, v in d.items():
            out |= keys(v, (*under, k)) if isinstance(v, dict) and v else {(*under, k)}
        return out

    assert keys(CONFIG) <= keys(real), keys(CONFIG) - keys(real)
    actor = real["actor_rollout_ref"]["actor"]
    actor["policy_loss"]["loss_mode"], actor["use_kl_loss"] = "clip_cov", True
    real["algorithm"]["filter_groups"]["enable"] = True
    facts = run_facts({"framework": "verl", "config": real})
    assert facts["loss_mode"] == "clip_cov" and facts["kl_loss"] is True and facts["dynamic_sampling"] is True
