"""verl: the real ``core_algos`` registry and ``Tracking`` (verl 0.9.1, which ``make setup`` installs with --no-deps),
and the driver wraps against a stand-in ``RayPPOTrainer`` (the real ``ray_trainer`` module needs Ray and the GPU
serving stack to import) that uses verl's real ``DataProto`` and GRPO advantage estimator; the stand-in's seams are
checked against the real ``ray_trainer.py`` source.

verl's modules import ``ray`` at the top (``verl/protocol.py``, for ``DataProtoFuture``'s ``ray.ObjectRef``) but none
of what these tests run calls it; where Ray is not installed (``make setup`` leaves it out) an empty stand-in module
takes its place while this file runs."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store

from ._verl_ray import ray_if_missing, stand_in_driver

with ray_if_missing():
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    pytest.importorskip("verl.utils.tracking")

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _ray():
    with ray_if_missing():  # for anything verl imports lazily while a test runs
        yield


@pytest.fixture
def watch(tmp_path):
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks.watch import Watch

    w = Watch("verl-t", store=str(tmp_path / "store"), strict=True, flush_secs=0.05, vocab_size=50, reduce=False)
    ew_verl.set_watch(w)
    yield w
    ew_verl.set_watch(None)
    w.close()


def _batch(seed=0, B=16, L=5):
    g = torch.Generator().manual_seed(seed)
    log_prob = -torch.rand(B, L, generator=g) * 2
    old = log_prob + 0.8 * torch.randn(B, L, generator=g)
    adv = torch.randn(B, generator=g)[:, None].expand(B, L).contiguous()
    mask = torch.ones(B, L)
    mask[0, 3:] = 0
    mask[4, 1:] = 0
    return old, log_prob, adv, mask


def test_registered_loss_splits_vanilla_clipfrac():
    from omegaconf import OmegaConf

    from entropy_watch.hooks.verl import CLIPFRAC_HIGH, CLIPFRAC_LOW, register_policy_losses

    names = register_policy_losses()
    assert "ew_vanilla" in names and "ew_vanilla" in core_algos.POLICY_LOSS_REGISTRY
    assert register_policy_losses() == [n for n in names]  # idempotent: no ew_ew_*
    cfg = OmegaConf.create(
        {
            "clip_ratio": 0.2,
            "clip_ratio_low": 0.2,
            "clip_ratio_high": 0.28,
            "clip_ratio_c": 3.0,
            "global_batch_info": {},
        }
    )
    old, new, adv, mask = _batch()
    base_loss, base_m = core_algos.get_policy_loss_fn("vanilla")(old, new, adv, mask, "token-mean", cfg)
    loss, m = core_algos.get_policy_loss_fn("ew_vanilla")(old, new, adv, mask, "token-mean", cfg)
    assert torch.equal(loss, base_loss)
    assert {k: m[k] for k in base_m} == base_m
    assert m[CLIPFRAC_LOW] > 0 and m[CLIPFRAC_HIGH] > 0
    assert m[CLIPFRAC_LOW] + m[CLIPFRAC_HIGH] == pytest.approx(base_m["actor/pg_clipfrac"], abs=1e-6)
    # naive reference written out
    ratio = torch.exp(new - old)
    n = mask.sum()
    assert m[CLIPFRAC_LOW] == pytest.approx(float((((ratio < 0.8) & (adv < 0)).float() * mask).sum() / n))
    assert m[CLIPFRAC_HIGH] == pytest.approx(float((((ratio > 1.28) & (adv > 0)).float() * mask).sum() / n))


def test_tracking_tee_records_every_metrics_dict(watch, tmp_path, monkeypatch):
    from verl.utils.tracking import Tracking

    from entropy_watch.hooks.verl import install_tracking_tee

    monkeypatch.setattr(Tracking, "__init__", Tracking.__init__)  # restored after the test
    monkeypatch.setattr(Tracking, "log", Tracking.log)
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "verl.jsonl"))
    install_tracking_tee()
    tr = Tracking("proj", "exp-1", default_backend=["file"])
    first = {"actor/entropy": 0.5, "actor/pg_clipfrac": 0.3, "actor/pg_clipfrac_lower": 0.01}
    first.update({"actor/ew_clipfrac_low": 0.1, "actor/ew_clipfrac_high": 0.2, "critic/advantages/mean": 0.0})
    tr.log(first, step=1)
    tr.log({"actor/entropy": 0.4, "val-core/gsm8k/reward/mean@1": 0.7}, step=2)
    watch.flush()
    store = Store(tmp_path / "store")

    def at(name):
        s, v = store.series("verl-t", name)
        return dict(zip(s.tolist(), v.tolist(), strict=True))

    assert at(M.ENTROPY_MEAN) == {1: 0.5, 2: 0.4} and at("actor/entropy") == {1: 0.5, 2: 0.4}
    assert at(M.CLIP_LOW_FRAC) == {1: 0.1} and at(M.CLIP_HIGH_FRAC) == {1: 0.2}
    assert at(M.CLIP_REGION_FRAC) == {1: 0.3} and at("actor/pg_clipfrac_lower") == {1: 0.01}
    assert at(M.CLIP_DUAL_FRAC) == {}  # "lower" is the dual clip under vanilla only: no config, no loss known
    assert at(M.REWARD_MEAN) == {}  # a validation metric never stands in for the training reward
    assert (tmp_path / "verl.jsonl").read_text().count("\n") == 2  # verl's own backend still ran


def test_driver_wraps_record_entropy_and_advantages(watch, tmp_path):
    from verl import DataProto

    from entropy_watch.hooks.verl import wrap_driver

    B, L, V = 8, 5, 50
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(B, L, V, generator=g)
    responses = torch.randint(0, V, (B, L), generator=g)
    mask = torch.ones(B, L)
    mask[1, 2:] = 0
    scores = torch.zeros(B, L)
    scores[:, 1] = torch.tensor([1.0, 0, 1, 1, 0, 0, 0, 0])

    RayPPOTrainer, module = stand_in_driver(logits, global_steps=3)
    wrap_driver(RayPPOTrainer, module)
    import numpy as np

    batch = DataProto.from_dict(
        tensors={"responses": responses, "response_mask": mask, "token_level_rewards": scores},
        non_tensors={"uid": np.array(["a"] * 4 + ["b"] * 4, dtype=object)},
    )
    trainer = RayPPOTrainer()
    old, _ = trainer._compute_old_log_prob(batch)
    batch = batch.union(old)
    batch = module.compute_advantage(batch, adv_estimator="grpo", num_repeat=4)
    watch.flush()
    store = Store(tmp_path / "store")
    steps, ent = store.series("verl-t", M.ENTROPY_MEAN)
    expected = float((old.batch["entropys"] * mask).sum() / mask.sum())
    assert steps.tolist() == [3] and ent[0] == pytest.approx(expected, abs=1e-5)
    _, zero_groups = store.series("verl-t", M.ADV_MEAN)
    adv = batch.batch["advantages"]
    assert zero_groups[0] == pytest.approx(float((adv * mask).sum() / mask.sum()), abs=1e-5)
    hist = store.table("verl-t", "hist").to_pydict()
    assert sum(hist["count"]) == int(mask.sum())
    assert store.series("verl-t", M.CLIP_ONPOLICY)[1].tolist() == []  # no ratio on the driver: not recorded (N/A)


def test_autoload_module_installs_parts_available_here():
    from entropy_watch.hooks import verl_autoload

    assert verl_autoload.INSTALLED["policy_losses"] == "ok"
    assert verl_autoload.INSTALLED["tracking_tee"] == "ok"
    assert verl_autoload.INSTALLED["checkpoint_state"] == "ok"  # FSDPCheckpointManager imports without a GPU
    assert set(verl_autoload.INSTALLED) == {"policy_losses", "tracking_tee", "checkpoint_state", "driver"}


def test_ew_repo_r_feeds_repo_r_advantages_to_the_vanilla_loss():
    from omegaconf import OmegaConf

    from entropy_watch.hooks import levers
    from entropy_watch.hooks.verl import CLIPFRAC_HIGH, REPO_R_LOSS, register_policy_losses, repo_controller

    assert REPO_R_LOSS in register_policy_losses() and REPO_R_LOSS in core_algos.POLICY_LOSS_REGISTRY
    cfg = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 3.0,
                            "global_batch_info": {}})  # fmt: skip
    old, new, adv, mask = _batch()
    zeta = repo_controller().zeta
    loss, m = core_algos.get_policy_loss_fn(REPO_R_LOSS)(old, new, adv, mask, "token-mean", cfg)
    expected_adv = levers.repo_r_advantages(adv, levers.centred_logp(new, None, "raw"), zeta)
    base_loss, _ = core_algos.get_policy_loss_fn("vanilla")(old, new, expected_adv, mask, "token-mean", cfg)
    assert torch.equal(loss, base_loss)
    assert m[M.CONTROL_ZETA] == zeta and CLIPFRAC_HIGH in m
    assert m[M.CONTROL_ZETA_MAX] == repo_controller().cfg.zeta_max  # the cap the worker's environment gave it


def test_driver_stand_in_matches_the_real_ray_trainer_source():
    """The seams test_driver_wraps_record_entropy_and_advantages stands in for, read from verl's own
    ``ray_trainer.py`` (it imports Ray's actor API and the serving stack, so it is parsed, not imported)."""
    import ast

    path = importlib.util.find_spec("verl").submodule_search_locations[0] + "/trainer/ppo/ray_trainer.py"
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    (trainer,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RayPPOTrainer"]
    methods = {n.name: n for n in trainer.body if isinstance(n, ast.FunctionDef)}

    def params(fn):
        return [a.arg for a in fn.args.args]

    # compute_advantage is a module global the training loop calls by name: wrapping the module attribute reaches it
    assert params(funcs["compute_advantage"]) == ["data", "adv_estimator", "gamma", "lam", "num_repeat",
                                                  "norm_adv_by_std_in_grpo", "config"]  # fmt: skip
    fit = ast.unparse(methods["fit"])
    assert "batch = compute_advantage(" in fit and "self._compute_old_log_prob(batch)" in fit
    assert fit.index("self._compute_old_log_prob(batch)") < fit.index("batch = compute_advantage(")
    # _compute_old_log_prob(self, batch) -> (DataProto with "old_log_probs" and "entropys", mfu)
    old = methods["_compute_old_log_prob"]
    assert params(old) == ["self", "batch"]
    src = ast.unparse(old)
    assert "'old_log_probs'" in src and "'entropys'" in src
    (ret,) = [n for n in ast.walk(old) if isinstance(n, ast.Return)]
    assert isinstance(ret.value, ast.Tuple) and len(ret.value.elts) == 2
    # the step the wrap reads
    assert "self.global_steps" in fit
