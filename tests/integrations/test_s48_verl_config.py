"""verl runs store the config verl hands ``Tracking`` in ``run.json`` (``hooks/verl.py`` :func:`run_config`), so the
alerts' suggested actions (``analysis/advice.py``) quote the current values of the keys they name. Driven through the
real verl 0.9.1 ``Tracking`` with its own generated ``ppo_trainer`` config, as ``RayPPOTrainer.fit`` builds it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import layout

from ._verl_ray import ray_if_missing

with ray_if_missing():
    tracking = pytest.importorskip("verl.utils.tracking")
    OmegaConf = pytest.importorskip("omegaconf").OmegaConf

SECRETS = ("hf_SECRET_token_value", "wandb_SECRET_key_value", "pw_SECRET_value", "sk-SECRET-api")


@pytest.fixture(autouse=True)
def _ray():
    with ray_if_missing():
        yield


def verl_config():
    """verl's own resolved default config (``_generated_ppo_trainer.yaml``) with a user's overrides, secrets among
    them: environment variables for the Ray workers, a proxy URL with credentials, a custom API key."""
    path = Path(tracking.__file__).parents[1] / "trainer" / "config" / "_generated_ppo_trainer.yaml"
    cfg = OmegaConf.load(path)
    actor = cfg.actor_rollout_ref.actor
    actor.clip_ratio_high, actor.entropy_coeff, actor.optim.lr = 0.24, 0.003, 3e-6
    cfg.actor_rollout_ref.rollout.n = 8
    cfg.ray_kwargs.ray_init.runtime_env = {"env_vars": {"HF_TOKEN": SECRETS[0], "WANDB_API_KEY": SECRETS[1]}}
    cfg.trainer.wandb_proxy = f"http://me:{SECRETS[2]}@proxy.internal:8080"
    OmegaConf.set_struct(cfg, False)
    cfg.actor_rollout_ref.rollout.api_key = SECRETS[3]
    return cfg


@pytest.fixture
def teed(monkeypatch, tmp_path):
    """verl's real ``Tracking`` teed by ``install_tracking_tee`` (restored after), the store in ``tmp_path``."""
    from entropy_watch.hooks import verl as ew_verl

    monkeypatch.setattr(tracking.Tracking, "__init__", tracking.Tracking.__init__)
    monkeypatch.setattr(tracking.Tracking, "log", tracking.Tracking.log)
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "verl.jsonl"))
    monkeypatch.setenv("ENTROPY_WATCH_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("ENTROPY_WATCH_RUN", "verl-cfg")
    monkeypatch.setenv("ENTROPY_WATCH_STRICT", "1")
    ew_verl.set_watch(None)
    ew_verl.install_tracking_tee()
    yield tmp_path / "store"
    w = ew_verl._state["watch"]
    ew_verl.set_watch(None)
    if w is not None:
        w.close()


def collapse(tr) -> None:
    """An entropy collapse logged through ``Tracking.log`` as verl's driver logs it, then the run closed."""
    from entropy_watch.hooks import verl as ew_verl

    for step, h in enumerate(np.exp(-np.arange(240) / 60.0) + 0.02, start=1):
        tr.log({"actor/entropy": float(h)}, step=step)
    ew_verl.get_watch().close()


def collapse_actions(root: Path) -> list[str]:
    from entropy_watch.analysis import RunSeries, analyze
    from entropy_watch.store import Store

    alerts = analyze(RunSeries.from_reader(Store(root), "verl-cfg")).verdict.alerts
    return next(a.actions for a in alerts if a.kind == "collapse" and a.severity != "info")


def test_fit_s_config_reaches_run_json_and_the_actions_quote_its_values(teed: Path) -> None:
    cfg = verl_config()
    tr = tracking.Tracking("proj", "exp", default_backend=["file"], config=OmegaConf.to_container(cfg, resolve=True))
    collapse(tr)
    text = layout.run_json_path(teed, "verl-cfg").read_text()
    stored = json.loads(text)["config"]
    actor = stored["actor_rollout_ref"]["actor"]
    assert (actor["clip_ratio_high"], actor["entropy_coeff"], actor["optim"]["lr"]) == (0.24, 0.003, 3e-6)
    assert actor["kl_loss_coef"] == cfg.actor_rollout_ref.actor.kl_loss_coef and "use_kl_loss" in actor
    assert stored["actor_rollout_ref"]["rollout"]["n"] == 8 and stored["algorithm"]["adv_estimator"] == "gae"
    assert not [s for s in SECRETS if s in text], "no credential reaches run.json"
    assert "ray_kwargs" not in stored and "api_key" not in stored["actor_rollout_ref"]["rollout"]
    assert len(json.dumps(stored)) <= 32_000
    said = "\n".join(collapse_actions(teed))
    assert "actor_rollout_ref.actor.clip_ratio_high=0.28 (now 0.24)" in said, said
    assert "actor_rollout_ref.actor.entropy_coeff is 0.003; raise it" in said, said
    assert "actor_rollout_ref.actor.optim.lr (now 3e-06)" in said, said


def test_a_dictconfig_positional_and_a_watch_made_before_tracking(teed: Path) -> None:
    """``Tracking(project, experiment, backend, DictConfig)``: positional, not resolved, after the Watch exists
    (its run.json is updated)."""
    from entropy_watch.hooks import verl as ew_verl

    ew_verl.get_watch()
    tr = tracking.Tracking("proj", "exp", ["file"], verl_config())
    collapse(tr)
    stored = json.loads(layout.run_json_path(teed, "verl-cfg").read_text())["config"]
    assert stored["actor_rollout_ref"]["actor"]["clip_ratio_high"] == 0.24
    assert "actor_rollout_ref.actor.clip_ratio_high=0.28 (now 0.24)" in "\n".join(collapse_actions(teed))


def test_run_config_is_bounded_and_never_breaks_tracking(teed: Path) -> None:
    from entropy_watch.hooks.verl import MAX_CONFIG_CHARS, run_config

    big = OmegaConf.to_container(verl_config(), resolve=True)
    big["data"]["filler"] = {f"k{i}": "x" * 400 for i in range(200)}  # a section far past the bound: left out
    big["trainer"]["notes"] = "y" * 5000  # a long string: cut
    kept = run_config(big)
    assert len(json.dumps(kept)) <= MAX_CONFIG_CHARS and "data" not in kept
    assert kept["actor_rollout_ref"]["actor"]["clip_ratio_high"] == 0.24 and len(kept["trainer"]["notes"]) <= 501
    assert run_config(None) == {} and run_config("not a config") == {}
    broken = OmegaConf.create({"actor_rollout_ref": {"actor": {"clip_ratio_high": "${nowhere}", "entropy_coeff": 0}}})
    assert run_config(broken)["actor_rollout_ref"]["actor"]["entropy_coeff"] == 0  # unresolvable: as written
    tr = tracking.Tracking("proj", "exp", ["file"], object())  # no config advice can read: training goes on
    tr.log({"actor/entropy": 0.5}, step=1)
