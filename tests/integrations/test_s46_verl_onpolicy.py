"""verl: ``clip/onpolicy`` is the update's, never the driver's. The driver's per-token pass (``_compute_old_log_prob``
+ ``compute_advantage`` -> ``Watch.log_tokens`` with pi_old's log-probs, no ratio) records no ``clip/onpolicy``; the
``ew_*`` losses, which see the ratio on the workers, log ``actor/ew_onpolicy`` per call, verl averages it over the
step's calls, and the tee records ``clip/onpolicy`` = 1 only when every call was on-policy. Before, every verl step
read on-policy (1) beside clipping verl measured, so the analysis never judged clip-higher for verl runs.

Real verl 0.9.1 ``Tracking``, ``DataProto``, GRPO estimator, ``ew_vanilla`` loss and the metric aggregation of its
engine workers (``Metric.aggregate_dp`` per mini-batch, ``reduce_metrics`` over mini-batches); the trainer is
test_verl.py's stand-in (the real ``ray_trainer`` needs Ray and the serving stack)."""

from __future__ import annotations

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store

from ._verl_ray import grpo_batch, ray_if_missing, teed_driver

with ray_if_missing():
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    pytest.importorskip("verl.utils.tracking")

pytestmark = pytest.mark.slow

B, L, V = 8, 6, 50
NOISE = 1e-6  # log-prob noise of a recomputation, far below hooks.stats.ONPOLICY_LOG_RATIO_TOL (1e-4)
ONPOLICY = "actor/ew_onpolicy"  # hooks.verl.ONPOLICY
CFG = {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 3.0, "global_batch_info": {}}


@pytest.fixture(autouse=True)
def _ray():
    with ray_if_missing():
        yield


def _update_metrics(old, adv, mask, minibatches, g, loss_mode="ew_vanilla"):
    """The actor update's logged loss metrics as verl's engine workers reduce them: per mini-batch ``Metric``s of the
    loss calls (two micro-batches on two DP ranks), ``Metric.aggregate_dp``, then ``reduce_metrics`` over mini-batches.
    ``minibatches``: per mini-batch, the scale of the log-prob change since the rollout (0: the ratio is 1)."""
    from omegaconf import OmegaConf
    from verl.utils.metric.utils import AggregationType, Metric, reduce_metrics

    fn = core_algos.get_policy_loss_fn(loss_mode)
    cfg = OmegaConf.create(CFG)
    per_minibatch: dict[str, list[float]] = {}
    for scale in minibatches:
        new = old + scale * torch.randn(old.shape, generator=g)
        calls: dict[str, list[Metric]] = {}
        for rank in range(2):
            for micro in (slice(0, B // 2), slice(B // 2, B)):
                rows = slice(micro.start + rank, micro.stop, 2)  # each rank's half of each micro-batch
                _, m = fn(old_log_prob=old[rows], log_prob=new[rows], advantages=adv[rows],
                          response_mask=mask[rows].bool(), loss_agg_mode="token-mean", config=cfg)  # fmt: skip
                for k, v in Metric.from_dict(m, aggregation=AggregationType.MEAN).items():
                    calls.setdefault(k, [Metric(aggregation=v.aggregation) for _ in range(2)])[rank].append(v.values[0])
        for k, per_rank in calls.items():
            per_minibatch.setdefault(f"actor/{k.removeprefix('actor/')}", []).append(Metric.aggregate_dp(per_rank))
    return {k: float(v) for k, v in reduce_metrics(per_minibatch).items()}


@pytest.fixture
def verl_step(tmp_path, monkeypatch):
    """One verl training step in ``fit``'s order: the driver's old-log-prob pass and advantages, the actor update
    (``minibatches``: see :func:`_update_metrics`; None: a loss without the ew_ split), then ``Tracking.log``."""
    from entropy_watch.hooks import verl as ew_verl

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(B, L, V, generator=g) * 2
    responses = torch.randint(0, V, (B, L), generator=g)
    mask = torch.ones(B, L)
    mask[2, 3:] = 0
    trainer, module, tracking = teed_driver(monkeypatch, tmp_path, logits)
    ew_verl.register_policy_losses()
    logged: dict[int, dict[str, float]] = {}

    def step(n: int, minibatches: list[float] | None) -> None:
        trainer.global_steps = n
        batch = grpo_batch(responses, mask)
        old, _ = trainer._compute_old_log_prob(batch)
        batch = module.compute_advantage(batch.union(old), adv_estimator="grpo", num_repeat=4)
        o, a = batch.batch["old_log_probs"], batch.batch["advantages"]
        if minibatches is None:  # loss_mode=vanilla: verl's own metrics only
            metrics = _update_metrics(o, a, mask, [0.5], g, loss_mode="vanilla")
        else:
            metrics = _update_metrics(o, a, mask, minibatches, g)
        logged[n] = metrics
        tracking.log(metrics, step=n)

    yield step, logged
    ew_verl.set_watch(None)


def _series(root, name):
    s, v = Store(root).series("verl-t", name)
    return dict(zip(s.tolist(), v.tolist(), strict=True))


@pytest.mark.parametrize("strict", [True, False], ids=["sync", "async"])  # async: the Watch verl's driver builds
def test_clip_onpolicy_is_the_updates_not_the_drivers(verl_step, tmp_path, strict):
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks.watch import Watch

    step, logged = verl_step
    root = tmp_path / "store"
    w = Watch("verl-t", store=str(root), strict=strict, flush_secs=0.05, vocab_size=V, reduce=False)
    ew_verl.set_watch(w)
    step(1, [0.0, 0.5, 0.5])  # ppo_mini_batch_size = batch / 3: the first mini-batch at ratio 1, later ones moved
    step(2, [0.0])  # one mini-batch, one epoch: strictly on-policy, nothing can clip
    step(3, [NOISE])  # recomputation noise far below the tolerance: still on-policy
    step(4, None)  # a loss without the ew_ split: the update's ratio is not reported
    w.close()
    assert w.errors == 0
    assert logged[1]["actor/pg_clipfrac"] > 0 and logged[2]["actor/pg_clipfrac"] == 0.0  # step 1 clips, 2 cannot
    assert _series(root, M.CLIP_ONPOLICY) == {1: 0.0, 2: 1.0, 3: 1.0}  # was {1: 1, 2: 1, 3: 1, 4: 1}: the driver's
    assert logged[1][ONPOLICY] == pytest.approx(1 / 3)  # verl's mean of the per-call flags
    assert _series(root, ONPOLICY) == {n: logged[n][ONPOLICY] for n in (1, 2, 3)}  # verl's, as logged
    assert _series(root, M.CLIP_REGION_FRAC) == {n: logged[n]["actor/pg_clipfrac"] for n in (1, 2, 3, 4)}
    assert sorted(_series(root, M.ENTROPY_MEAN)) == [1, 2, 3, 4]  # the driver's pass still records its step


def test_ew_loss_onpolicy_follows_the_tolerance_on_valid_tokens():
    """``actor/ew_onpolicy`` of one loss call against the rule written out: 1 iff every valid, finite token's
    |log ratio| is within ``ONPOLICY_LOG_RATIO_TOL``; padding does not count."""
    from omegaconf import OmegaConf

    from entropy_watch.hooks.stats import ONPOLICY_LOG_RATIO_TOL
    from entropy_watch.hooks.verl import register_policy_losses

    register_policy_losses()
    fn = core_algos.get_policy_loss_fn("ew_vanilla")
    cfg = OmegaConf.create(CFG)
    g = torch.Generator().manual_seed(5)
    old = -torch.rand(B, L, generator=g) * 2
    adv = torch.randn(B, 1, generator=g).expand(B, L).contiguous()
    mask = torch.ones(B, L)
    mask[0, 4:] = 0

    def flag(new):
        _, m = fn(old, new, adv, mask.bool(), "token-mean", cfg)
        return m[ONPOLICY]

    def rule(new):
        return float(bool(((new - old).abs() <= ONPOLICY_LOG_RATIO_TOL)[mask.bool()].all()))

    cases = {"equal": old.clone(), "noise": old + ONPOLICY_LOG_RATIO_TOL / 10 * torch.randn(B, L, generator=g)}
    past = old.clone()
    past[3, 2] += 10 * ONPOLICY_LOG_RATIO_TOL  # one valid token past the tolerance
    cases["one token past"] = past
    padded = old.clone()
    padded[0, 5] += 1.0  # a padding token's log-prob moved: not a response token
    cases["padding moved"] = padded
    for name, new in cases.items():
        assert flag(new) == rule(new), name
    assert [flag(new) for new in cases.values()] == [1.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("strict", [True, False], ids=["sync", "async"])
def test_log_tokens_without_old_logp_is_on_policy_unless_not_the_update_pass(tmp_path, strict):
    """The rule for every ``Watch`` user: without ``old_logp`` the caller's loss takes ``logp`` as the old log-probs
    (TRL ``num_iterations=1``), ratio 1; with ``Watch.update_pass = False`` (log-probs of a pass before the update)
    it says nothing about the ratio and records no ``clip/onpolicy``, read at each call; every other statistic is the
    same."""
    from entropy_watch.hooks.watch import Watch

    g = torch.Generator().manual_seed(2)
    ent, logp = torch.rand(B, L, generator=g) * 3, -torch.rand(B, L, generator=g) * 2
    adv = torch.randn(B, generator=g)
    root = tmp_path / "s"
    with Watch("w", store=str(root), strict=strict, vocab_size=V, reduce=False, sample_tokens=0, flush_secs=0.05) as w:
        w.log_tokens(1, entropy=ent, logp=logp, advantages=adv)
        w.update_pass = False
        w.log_tokens(2, entropy=ent, logp=logp, advantages=adv)
        w.update_pass = True  # read at each call: a job already queued keeps its own
        w.log_tokens(3, entropy=ent, logp=logp, advantages=adv)
    store = Store(root)

    def at(step):
        return {n: v for n in store.scalar_names("w") for s, v in zip(*store.series("w", n), strict=True) if s == step}

    assert at(1)[M.CLIP_ONPOLICY] == 1.0 and at(3) == at(1)
    assert at(2) == {k: v for k, v in at(1).items() if k != M.CLIP_ONPOLICY}
