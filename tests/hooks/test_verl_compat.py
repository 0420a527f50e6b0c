"""verl's policy-loss and driver contracts as other verl versions ship them, against stand-ins (no verl needed).

The ``ew_*`` losses must never break a verl training step: verl has called its registered losses with other keywords
(``rollout_log_probs`` before ``rollout_is_weights``; the diffusion ``flow_grpo`` loss without ``response_mask``) and
the older registry returned ``(loss, clipfrac, ppo_kl, clipfrac_lower)`` instead of ``(loss, metrics dict)``. Such a
call or return is passed through unchanged with one warning. The real registry is tested in
tests/integrations/test_verl.py (verl 0.9.1, which `make setup` installs).
"""

from __future__ import annotations

import logging
import types

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks import verl as ew_verl
from entropy_watch.hooks import watch as watch_module
from entropy_watch.hooks.control import ControlConfig, EntropyController

CONFIG = types.SimpleNamespace(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0)


@pytest.fixture(autouse=True)
def _not_strict(monkeypatch):
    monkeypatch.delenv("ENTROPY_WATCH_STRICT", raising=False)
    monkeypatch.setattr(watch_module, "_warned_without_watch", set())  # each test sees its own first warning
    ew_verl.set_watch(None)
    yield
    ew_verl.set_watch(None)


def _core_algos(*losses):
    """A stand-in for ``verl.trainer.ppo.core_algos``: the registry, its decorator and its getter."""
    registry: dict = {}

    def register_policy_loss(name):
        def deco(fn):
            registry[name] = fn
            return fn

        return deco

    for name, fn in losses:
        registry[name] = fn
    return types.SimpleNamespace(
        POLICY_LOSS_REGISTRY=registry,
        register_policy_loss=register_policy_loss,
        get_policy_loss_fn=registry.__getitem__,
    )


def _batch(seed=0, B=6, L=4):
    g = torch.Generator().manual_seed(seed)
    log_prob = -torch.rand(B, L, generator=g) * 2
    old = log_prob + 0.8 * torch.randn(B, L, generator=g)
    adv = torch.randn(B, generator=g)[:, None].expand(B, L).contiguous()
    return old, log_prob, adv, torch.ones(B, L)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "entropy_watch" and r.levelno == logging.WARNING]


def test_ew_loss_accepts_the_older_rollout_log_probs_keyword():
    # verl's registry before rollout_is_weights: (..., config, rollout_log_probs=None) -> (loss, metrics dict)
    def vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
                rollout_log_probs=None):  # fmt: skip
        return (advantages * response_mask).mean(), {"actor/pg_clipfrac": 0.5}

    core = _core_algos(("vanilla", vanilla))
    ew_verl.register_policy_losses(core)
    old, new, adv, mask = _batch()
    kwargs = dict(old_log_prob=old, log_prob=new, advantages=adv, response_mask=mask, loss_agg_mode="token-mean",
                  config=CONFIG, rollout_log_probs=None)  # fmt: skip
    loss, metrics = core.get_policy_loss_fn("ew_vanilla")(**kwargs)
    assert torch.equal(loss, vanilla(**kwargs)[0]) and metrics["actor/pg_clipfrac"] == 0.5
    assert metrics[ew_verl.CLIPFRAC_LOW] + metrics[ew_verl.CLIPFRAC_HIGH] > 0
    loss, metrics = core.get_policy_loss_fn(ew_verl.REPO_R_LOSS)(**kwargs)  # REPO-R takes the same keywords
    assert M.CONTROL_ZETA in metrics


def test_ew_loss_passes_a_four_tuple_return_through_with_one_warning(caplog):
    # the older registry: (loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower), unpacked by verl itself
    def vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None):
        return (advantages * response_mask).mean(), torch.tensor(0.1), torch.tensor(0.0), torch.tensor(0.0)

    core = _core_algos(("vanilla", vanilla))
    ew_verl.register_policy_losses(core)
    old, new, adv, mask = _batch()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        for _ in range(2):
            out = core.get_policy_loss_fn("ew_vanilla")(old, new, adv, mask, "token-mean", CONFIG)
            assert len(out) == 4 and torch.equal(out[0], vanilla(old, new, adv, mask)[0])
    (warning,) = _warnings(caplog)  # once, not per micro-batch
    assert "verl.policy_loss" in warning and "metrics dict" in warning


def test_ew_loss_passes_a_call_without_response_mask_through(caplog):
    # verl's diffusion loss calls its registered loss (flow_grpo) with old_log_prob, log_prob, advantages, config only
    def flow_grpo(old_log_prob, log_prob, advantages, response_mask=None, loss_agg_mode="token-mean", config=None,
                  rollout_is_weights=None):  # fmt: skip
        return -(advantages * (log_prob - old_log_prob).exp()).mean(), {"actor/pg_clipfrac": 0.0}

    core = _core_algos(("flow_grpo", flow_grpo))
    ew_verl.register_policy_losses(core)
    old, new, adv, _ = _batch()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        loss, metrics = core.get_policy_loss_fn("ew_flow_grpo")(old_log_prob=old, log_prob=new, advantages=adv,
                                                               config=CONFIG)  # fmt: skip
    assert torch.equal(loss, flow_grpo(old, new, adv)[0]) and metrics == {"actor/pg_clipfrac": 0.0}
    (warning,) = _warnings(caplog)
    assert "response_mask" in warning


def test_repo_r_loss_keeps_its_advantages_when_the_base_returns_a_four_tuple():
    seen = {}

    def vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None):
        seen["adv"] = advantages
        return advantages.sum(), torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)

    ctl = EntropyController(ControlConfig("repo-r", target=5.0, centering="raw", zeta0=0.1, zeta_max=0.5))
    out = ew_verl.repo_r_policy_loss(vanilla, ctl)(torch.tensor([[-1.0]]), torch.tensor([[-1.0]]),
                                                   torch.tensor([[2.0]]), torch.ones(1, 1))  # fmt: skip
    assert len(out) == 4 and torch.allclose(seen["adv"], torch.tensor([[2.2]]))  # A(1 - zeta L) = 2 * 1.1
    assert ctl.zeta == pytest.approx(0.2)  # the controller still stepped


# ---- driver side ---------------------------------------------------------------------------------------------------
def _driver(tmp_path):
    """Stand-ins for ``verl.utils.tracking.Tracking`` and ``verl.trainer.ppo.ray_trainer``, wrapped."""
    from entropy_watch.hooks.watch import Watch

    class Tracking:
        def __init__(self, project_name, experiment_name, default_backend="console", config=None):
            self.logged = []

        def log(self, data, step, backend=None):
            self.logged.append(step)

    class RayPPOTrainer:
        global_steps = 1

        def _compute_old_log_prob(self, batch):
            raise AssertionError("not called: a trainer other than RayPPOTrainer does the old-log-prob pass")

    def compute_advantage(data, adv_estimator=None, **kwargs):
        return data

    module = types.SimpleNamespace(RayPPOTrainer=RayPPOTrainer, compute_advantage=compute_advantage)
    ew_verl.install_tracking_tee(Tracking)
    ew_verl.wrap_driver(RayPPOTrainer, module)
    w = Watch("verl-c", store=str(tmp_path / "store"), flush_secs=0.05, vocab_size=50, reduce=False)
    ew_verl.set_watch(w)
    return Tracking, module, w


def test_tee_warns_once_when_no_driver_step_ever_reaches_the_wraps(tmp_path, caplog):
    # verl's main_ppo_sync / v1 trainers log through Tracking but never call RayPPOTrainer's methods
    Tracking, _, w = _driver(tmp_path)
    tracker = Tracking("proj", "exp")
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        tracker.log({"val-core/gsm8k/reward/mean@1": 0.5}, step=0)  # validation before training: no warning yet
        assert _warnings(caplog) == []
        for step in (1, 2):
            tracker.log({"actor/entropy": 0.5, "actor/pg_clipfrac": 0.1}, step=step)
    w.close()
    (warning,) = _warnings(caplog)
    assert "per-token" in warning and "RayPPOTrainer" in warning
    assert tracker.logged == [0, 1, 2]  # verl's own backends still ran


def test_no_entropy_warning_names_both_causes(tmp_path, caplog):
    _, module, w = _driver(tmp_path)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        module.compute_advantage(types.SimpleNamespace(batch={}), adv_estimator="grpo")
    w.close()
    (warning,) = _warnings(caplog)
    assert "bypass" in warning and "RayPPOTrainer._compute_old_log_prob" in warning


def _train(tracker, steps, entropy: float) -> None:
    for step in steps:
        tracker.log({"actor/entropy": entropy, "actor/pg_clipfrac": 0.1, "critic/score/mean": 0.5}, step=step)


def test_a_resumed_verl_training_records_its_resume(tmp_path, caplog):
    """verl's ``trainer.resume_mode=auto`` after a crash at step 10: it loads ``global_step_6``, validates at step 6
    and trains from step 7, into the same run. The tee records a ``resume`` at step 7 (the analysis keeps the run's
    baselines), and the first process's steps 7-10, a trajectory the resume replaced, are no longer read once the
    resumed process stops at step 8. A training from step 1 under the run's name is warned about, no resume."""
    from entropy_watch.hooks.watch import Watch
    from entropy_watch.store import Store

    Tracking, _, w = _driver(tmp_path)
    _train(Tracking("proj", "exp"), range(1, 11), 1.0)
    w.close("failed")
    again = Watch("verl-c", store=str(tmp_path / "store"), flush_secs=0.05, vocab_size=50, reduce=False)
    ew_verl.set_watch(again)
    tracker = Tracking("proj", "exp")
    tracker.log({"val-core/gsm8k/reward/mean@1": 0.5}, step=6)  # validation before training, at the checkpoint's step
    _train(tracker, range(7, 9), 0.5)
    again.close()
    store = Store(tmp_path / "store")
    assert [(e["step"], e["kind"], e["payload"]) for e in store.events("verl-c")] == [
        (7, "resume", '{"checkpoint_step": 6}')
    ]
    steps, h = store.series("verl-c", M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(1, 9)) and h.tolist() == [1.0] * 6 + [0.5] * 2
    assert store.series("verl-c", "val-core/gsm8k/reward/mean@1")[0].tolist() == [6]

    scratch = Watch("verl-c", store=str(tmp_path / "store"), flush_secs=0.05, vocab_size=50, reduce=False)
    ew_verl.set_watch(scratch)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        _train(Tracking("proj", "exp"), range(1, 3), 0.7)
    scratch.close()
    assert any("already holds an earlier training (its last session reached step 8)" in m for m in _warnings(caplog))
    assert [e["step"] for e in store.events("verl-c")] == [7]


def _rename_dict(data: dict, prefix: str = "") -> dict:
    """verl's ``verl.utils.py_functional.rename_dict``: ``prefix`` on every key that does not start with it."""
    return {k if k.startswith(prefix) else prefix + k: v for k, v in data.items()}


def test_repo_r_control_metrics_renamed_by_verls_update_actor_keep_their_canonical_names(tmp_path):
    """verl's ``RayPPOTrainer._update_actor`` (engine workers, the path of current verl) passes the workers' loss
    metrics through ``rename_dict(metrics, "actor/")`` before ``Tracking.log``: ``ew_repo_r``'s ``control/zeta``
    arrives as ``actor/control/zeta``. The tee records the canonical ``control/*`` from it."""
    from entropy_watch.store import Store

    def vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
                rollout_is_weights=None):  # fmt: skip
        return (advantages * response_mask).mean(), {"actor/pg_clipfrac": 0.1, "actor/ppo_kl": 0.0}

    ctl = EntropyController(ControlConfig("repo-r", target=5.0, centering="raw", zeta0=0.1, zeta_max=0.5))
    old, new, adv, mask = _batch()
    _, worker_metrics = ew_verl.wrap_policy_loss(ew_verl.repo_r_policy_loss(vanilla, ctl))(
        old_log_prob=old, log_prob=new, advantages=adv, response_mask=mask.bool(), loss_agg_mode="token-mean",
        config=CONFIG, rollout_is_weights=None)  # fmt: skip
    assert M.CONTROL_ZETA in worker_metrics
    logged = _rename_dict(worker_metrics, "actor/")
    assert "actor/control/zeta" in logged and "actor/ew_clipfrac_high" in logged  # verl's own keys keep their name
    Tracking, _, w = _driver(tmp_path)
    Tracking("proj", "exp").log({**logged, "actor/entropy": 0.5}, step=1)
    w.close()
    store = Store(tmp_path / "store")
    assert store.series("verl-c", M.CONTROL_ZETA)[1].tolist() == pytest.approx([0.1])
    assert store.series("verl-c", M.CONTROL_ENTROPY)[1].tolist() == pytest.approx([worker_metrics[M.CONTROL_ENTROPY]])
    assert store.series("verl-c", "actor/control/zeta")[1].tolist() == pytest.approx([0.1])  # verl's name too
