"""verl 0.4-0.6's seams, against stand-ins shaped exactly like those releases' code (verl 0.9.1's real ``DataProto``,
``agg_loss``, GRPO estimator and ``Tracking`` inside them; ``make setup`` installs 0.9.1 only).

* The driver: verl 0.4.1-0.6.1's ``verl/trainer/ppo/ray_trainer.py::RayPPOTrainer`` has no
  ``_compute_old_log_prob``. Its ``fit`` runs ``old_log_prob = self.actor_rollout_wg.compute_log_prob(batch)``
  inline, hands ``old_log_prob.batch["entropys"]`` to the module-level ``agg_loss(loss_mat=entropys,
  loss_mask=response_masks, loss_agg_mode=loss_agg_mode)`` for ``actor/entropy``, pops the entropy and unions the
  rest (``old_log_probs``) into the batch before ``batch = compute_advantage(batch, ...)`` (0.4.1 lines 1035-1045,
  1107). The hooks used to refuse that trainer ("no attribute '_compute_old_log_prob'") and the store's
  ``entropy/mean`` was verl's ``loss_agg_mode`` aggregate, with no histogram.
* The policy losses: verl 0.4.1-0.5.0's ``core_algos.py`` registers no ``"vanilla"`` (``dp_actor.py`` calls
  ``compute_policy_loss`` itself when ``loss_mode == "vanilla"``, ``get_policy_loss_fn(loss_mode)`` otherwise and
  unpacks 4 values); verl 0.6.0 registers ``"vanilla"`` but still returns ``(pg_loss, pg_clipfrac, ppo_kl,
  pg_clipfrac_lower)``; 0.6.1 returns ``(loss, metrics dict)``.
"""

from __future__ import annotations

import logging
import types

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store

from ._verl_ray import grpo_batch, ray_if_missing

with ray_if_missing():
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    pytest.importorskip("verl.utils.tracking")

pytestmark = pytest.mark.slow

B, L, V = 8, 6, 50


@pytest.fixture(autouse=True)
def _ray():
    with ray_if_missing():
        yield


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks import watch as watch_module

    monkeypatch.delenv("ENTROPY_WATCH_STRICT", raising=False)
    monkeypatch.setattr(watch_module, "_warned_without_watch", set())
    monkeypatch.setitem(ew_verl._state, "seam", None)
    yield
    ew_verl.set_watch(None)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "entropy_watch" and r.levelno >= logging.WARNING]


def old_driver(logits: dict[int, torch.Tensor], bypass: tuple[int, ...] = ()) -> tuple[type, types.SimpleNamespace]:
    """verl 0.4.1's ``RayPPOTrainer`` and its module's globals (``agg_loss``, ``compute_advantage``), as ``fit``
    reaches them: ``(RayPPOTrainer, module)``. The worker group's ``compute_log_prob`` returns what verl 0.4.1's
    ``fsdp_workers.py::ActorRolloutRefWorker.compute_log_prob`` returns (``old_log_probs``, ``entropys``) for the
    logits of the step. At a step in ``bypass`` there is no old-log-prob pass (0.6.1's rollout-correction bypass
    mode: ``old_log_probs`` are the rollout's)."""
    from verl import DataProto
    from verl.utils.tracking import Tracking

    def compute_advantage(data, adv_estimator, gamma=1.0, lam=1.0, num_repeat=1, multi_turn=False,
                          norm_adv_by_std_in_grpo=True, config=None):  # type: ignore[no-untyped-def]  # fmt: skip
        adv, ret = core_algos.compute_grpo_outcome_advantage(
            data.batch["token_level_rewards"], data.batch["response_mask"], data.non_tensor_batch["uid"]
        )
        data.batch["advantages"], data.batch["returns"] = adv, ret
        return data

    module = types.SimpleNamespace(agg_loss=core_algos.agg_loss, compute_advantage=compute_advantage)

    class WorkerGroup:
        step = 0

        def compute_log_prob(self, batch: DataProto) -> DataProto:
            lp = torch.log_softmax(logits[self.step], -1)
            logp = lp.gather(-1, batch.batch["responses"][..., None]).squeeze(-1)
            return DataProto.from_dict(tensors={"old_log_probs": logp, "entropys": -(lp.exp() * lp).sum(-1)})

    class RayPPOTrainer:
        def __init__(self, batches: list[DataProto], loss_agg_mode: str) -> None:
            self.batches, self.loss_agg_mode = batches, loss_agg_mode
            self.actor_rollout_wg = WorkerGroup()

        def fit(self) -> None:  # verl 0.4.1 ray_trainer.py::RayPPOTrainer.fit, the lines the hooks rely on
            logger = Tracking(project_name="proj", experiment_name="exp", default_backend=["file"], config=None)
            self.global_steps = 0
            self.global_steps += 1
            for batch in self.batches:
                metrics: dict[str, float] = {}
                self.actor_rollout_wg.step = self.global_steps
                if self.global_steps not in bypass:
                    old_log_prob = self.actor_rollout_wg.compute_log_prob(batch)
                    entropys = old_log_prob.batch["entropys"]
                    response_masks = batch.batch["response_mask"]
                    entropy_agg = module.agg_loss(
                        loss_mat=entropys, loss_mask=response_masks, loss_agg_mode=self.loss_agg_mode
                    )
                    metrics["actor/entropy"] = entropy_agg.detach().item()
                    old_log_prob.batch.pop("entropys")
                    batch = batch.union(old_log_prob)
                else:
                    batch.batch["old_log_probs"] = torch.zeros(batch.batch["responses"].shape)
                    metrics["actor/entropy"] = 1.5  # the update's own (actor.calculate_entropy)
                batch = module.compute_advantage(batch, adv_estimator="grpo", num_repeat=4)
                valid = torch.masked_select(batch.batch["advantages"], batch.batch["response_mask"].bool())
                metrics |= {"critic/advantages/mean": valid.mean().item(), "actor/pg_clipfrac": 0.125}
                logger.log(data=metrics, step=self.global_steps)
                self.global_steps += 1

    return RayPPOTrainer, module


def test_verl_0_4_to_0_6_driver_records_the_old_log_prob_pass_per_token(tmp_path, monkeypatch, caplog):
    """Three steps of verl 0.4.1's ``fit`` (the third in bypass mode): steps 1-2 hold the token mean of the pass's
    entropy (not verl's seq-mean-token-mean ``actor/entropy``), its histogram, the sampled-token NLL of the
    ``old_log_probs`` the batch gained and the GRPO advantages; step 3 keeps verl's logged entropy, with one warning."""
    from verl.utils.tracking import Tracking

    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks.watch import Watch

    monkeypatch.setattr(Tracking, "__init__", Tracking.__init__)  # the class-level tee, undone after the test
    monkeypatch.setattr(Tracking, "log", Tracking.log)
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "verl.jsonl"))
    g = torch.Generator().manual_seed(3)
    logits = {n: torch.randn(B, L, V, generator=g) * torch.linspace(0.3, 4.0, B)[:, None, None] for n in (1, 2, 3)}
    mask = torch.ones(B, L)
    mask[1, 1:] = 0  # short responses: the token mean and the mean of sequence means differ
    mask[5, 2:] = 0
    batches = [grpo_batch(torch.randint(0, V, (B, L), generator=g), mask) for _ in range(3)]
    responses = [b.batch["responses"].clone() for b in batches]
    trainer_cls, module = old_driver(logits, bypass=(3,))
    assert ew_verl.wrap_driver(trainer_cls, module) == ew_verl.FIT_SEAM
    wrapped = (trainer_cls.fit, module.agg_loss, module.compute_advantage)
    assert ew_verl.wrap_driver(trainer_cls, module) == ew_verl.FIT_SEAM  # install() twice: wrapped once
    assert (trainer_cls.fit, module.agg_loss, module.compute_advantage) == wrapped
    ew_verl.install_tracking_tee()
    root = tmp_path / "store"
    w = Watch("verl-old", store=str(root), strict=True, flush_secs=0.05, vocab_size=V, reduce=False)
    ew_verl.set_watch(w)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        trainer_cls(batches, "seq-mean-token-mean").fit()
    w.close()

    store = Store(root)

    def series(name):
        s, v = store.series("verl-old", name)
        return dict(zip(s.tolist(), v.tolist(), strict=True))

    ref = {}
    for n in (1, 2):
        lp = torch.log_softmax(logits[n], -1)
        ent = -(lp.exp() * lp).sum(-1)
        logp = lp.gather(-1, responses[n - 1][..., None]).squeeze(-1)
        ref[n] = {"H": float((ent.double() * mask).sum() / mask.sum()), "nll": float(-(logp.double() * mask).sum()
                  / mask.sum()), "agg": core_algos.agg_loss(ent, mask, "seq-mean-token-mean").item()}  # fmt: skip
    entropy, logged = series(M.ENTROPY_MEAN), series("actor/entropy")
    assert abs(ref[1]["agg"] - ref[1]["H"]) > 0.05  # the two aggregates differ on this batch: the test tells them apart
    assert entropy[1] == pytest.approx(ref[1]["H"], abs=1e-5) and entropy[2] == pytest.approx(ref[2]["H"], abs=1e-5)
    assert logged[1] == pytest.approx(ref[1]["agg"]) and entropy[3] == logged[3] == 1.5  # verl's own, as logged
    nll = series(M.ENTROPY_SAMPLED_NLL)  # the old_log_probs compute_advantage found in the batch
    assert nll[1] == pytest.approx(ref[1]["nll"], abs=1e-5) and 3 not in nll
    assert series(M.TOKENS_COUNT) == {1: mask.sum().item(), 2: mask.sum().item()}
    hist = store.table("verl-old", "hist").to_pydict()
    assert sorted(set(hist["step"])) == [1, 2] and sum(hist["count"]) == 2 * int(mask.sum())
    assert series(M.ADV_MEAN)[1] == pytest.approx(series("critic/advantages/mean")[1], abs=1e-6)
    assert series(M.ADV_STD)[1] > 0.1  # GRPO groups with spread (SCORES): advantages, not zeros
    (warning,) = _warnings(caplog)  # the bypass step, once
    assert "no per-token entropy this step" in warning and "agg_loss" in warning and "0.4-0.6" in warning


def test_a_trainer_with_neither_seam_is_refused_with_what_is_not_recorded(caplog):
    """A ``RayPPOTrainer`` without ``_compute_old_log_prob`` in a module without ``agg_loss`` (a fork): one warning
    from ``install`` says per-token entropy is not recorded and the logged scalars are."""
    from entropy_watch.hooks import verl as ew_verl

    class RayPPOTrainer:
        def fit(self) -> None:
            pass

    module = types.SimpleNamespace(RayPPOTrainer=RayPPOTrainer, compute_advantage=lambda data, **kw: data)
    with pytest.raises(AttributeError) as err:
        ew_verl.wrap_driver(RayPPOTrainer, module)
    assert "no per-token entropy" in str(err.value) and "logged scalars" in str(err.value)
    assert "\n" not in str(err.value)
    assert module.compute_advantage.__name__ == "<lambda>"  # nothing half-wrapped


def _registry(*losses):
    """verl 0.5.0's ``core_algos``: the registry, ``register_policy_loss(name)`` and ``get_policy_loss_fn(name)``
    raising "Unsupported loss mode" for a name it lacks."""
    registry = dict(losses)

    def register_policy_loss(name):
        def decorator(func):
            registry[name] = func
            return func

        return decorator

    def get_policy_loss_fn(name):
        if name not in registry:
            raise ValueError(f"Unsupported loss mode: {name}. Supported modes are: {list(registry.keys())}")
        return registry[name]

    return types.SimpleNamespace(POLICY_LOSS_REGISTRY=registry, register_policy_loss=register_policy_loss,
                                 get_policy_loss_fn=get_policy_loss_fn)  # fmt: skip


def _four_tuple_loss(seen=None):
    """A loss as verl 0.4.1-0.6.0 return them: ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)``."""

    def loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
             rollout_is_weights=None):  # fmt: skip
        if seen is not None:
            seen.append(advantages)
        return (advantages * response_mask).mean(), torch.tensor(0.25), torch.tensor(0.0), torch.tensor(0.0)

    return loss


CONFIG = types.SimpleNamespace(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0)


def _inputs(seed=0, n=6, t=4):
    g = torch.Generator().manual_seed(seed)
    new = -torch.rand(n, t, generator=g) * 2
    return {"old_log_prob": new + 0.8 * torch.randn(n, t, generator=g), "log_prob": new,
            "advantages": torch.randn(n, generator=g)[:, None].expand(n, t).contiguous(),
            "response_mask": torch.ones(n, t)}  # fmt: skip


@pytest.mark.parametrize("mode", ["ew_vanilla", "ew_repo_r"])
def test_verl_0_5_refuses_ew_vanilla_and_ew_repo_r_in_one_line(mode):
    """verl 0.5.0 registers gpg, clip_cov and kl_cov, no vanilla: ``loss_mode=ew_vanilla`` / ``ew_repo_r`` cannot be
    honoured (REPO-R wraps the registry's vanilla loss; a 4-value return carries no clip split). Asked for, they say
    so in one line, where verl said "Unsupported loss mode"; the modes it has are wrapped."""
    from entropy_watch.hooks import verl as ew_verl

    core = _registry(*((m, _four_tuple_loss()) for m in ("gpg", "clip_cov", "kl_cov")))
    assert ew_verl.register_policy_losses(core) == ["ew_gpg", "ew_clip_cov", "ew_kl_cov"]
    # dp_actor.py (verl 0.5.0) for loss_mode != "vanilla": get_policy_loss_fn(loss_mode)(old_log_prob=..., ...)
    with pytest.raises(ValueError) as err:
        core.get_policy_loss_fn(mode)(**_inputs(), loss_agg_mode="token-mean", config=CONFIG)
    message = str(err.value)
    assert message.startswith(f"entropy_watch: loss_mode={mode} cannot run on this verl") and "\n" not in message
    assert "verl >= 0.6.1" in message
    assert ew_verl.register_policy_losses(core) == ["ew_gpg", "ew_clip_cov", "ew_kl_cov"]  # no ew_ew_*


def test_verl_0_5_ew_clip_cov_runs_clip_cov_and_says_what_is_not_recorded(caplog):
    from entropy_watch.hooks import verl as ew_verl

    base = _four_tuple_loss()
    core = _registry(("clip_cov", base))
    ew_verl.register_policy_losses(core)
    x = _inputs()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        for _ in range(3):  # micro-batches
            out = core.get_policy_loss_fn("ew_clip_cov")(x["old_log_prob"], x["log_prob"], x["advantages"],
                                                         x["response_mask"], "token-mean", CONFIG)  # fmt: skip
            assert len(out) == 4 and all(torch.equal(a, b) for a, b in zip(out, base(**x), strict=True))
    (warning,) = _warnings(caplog)
    assert "loss_mode=ew_clip_cov runs clip_cov unchanged" in warning and "not recorded" in warning
    assert "clip/low_frac" in warning


def test_verl_0_6_0_ew_repo_r_applies_repo_r_with_one_warning(caplog, monkeypatch):
    """verl 0.6.0 registers ``"vanilla"`` returning 4 values: ``ew_repo_r`` trains with REPO-R's advantages, and one
    warning (not one per layer) says its ``control/*`` and the clip split are not recorded."""
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks.control import ControlConfig, EntropyController

    seen: list[torch.Tensor] = []
    core = _registry(("vanilla", _four_tuple_loss(seen)))
    ew_verl.register_policy_losses(core)
    ctl = EntropyController(ControlConfig("repo-r", target=5.0, centering="raw", zeta0=0.1, zeta_max=0.5))
    monkeypatch.setitem(ew_verl._state, "repo", ctl)  # this worker's controller
    x = _inputs()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        for _ in range(2):
            out = core.get_policy_loss_fn(ew_verl.REPO_R_LOSS)(**x, loss_agg_mode="token-mean", config=CONFIG,
                                                              rollout_is_weights=None)  # fmt: skip
            assert len(out) == 4
    assert not torch.equal(seen[0], x["advantages"])  # REPO-R's advantages reached verl's loss
    (warning,) = _warnings(caplog)
    assert "REPO-R's advantages are applied" in warning and "control/*" in warning and "not recorded" in warning


def test_verl_0_4_0_without_a_registry_says_what_is_not_recorded():
    """verl 0.4.0's ``core_algos.py`` has no ``POLICY_LOSS_REGISTRY`` (``dp_actor.py`` calls ``compute_policy_loss``
    itself and its config has no ``policy_loss``): ``install`` warns once that no ``ew_*`` mode exists and what that
    leaves out."""
    from entropy_watch.hooks import verl as ew_verl

    core = types.SimpleNamespace(compute_policy_loss=_four_tuple_loss(), agg_loss=core_algos.agg_loss)
    with pytest.raises(AttributeError) as err:
        ew_verl.register_policy_losses(core)
    assert "no policy-loss registry" in str(err.value) and "clip low/high split is not recorded" in str(err.value)
