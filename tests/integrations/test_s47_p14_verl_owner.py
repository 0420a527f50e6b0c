"""verl: the driver's per-token pass owns the names it recorded. An input left out alone (here the advantages of an
estimator that returns integers) costs the step only the advantage names: ``entropy/mean`` stays the driver's token
mean beside its quantiles (was verl's ``loss_agg_mode`` aggregate: a mix), and verl's ``critic/advantages/mean``
fills ``adv/mean``. Real verl 0.9.1 ``Tracking``, ``DataProto``, ``agg_loss`` and GRPO estimator; the trainer is the
stand-in of ``_verl_ray.py``, driven in ``fit``'s order."""

from __future__ import annotations

import json

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


@pytest.fixture(autouse=True)
def _ray():
    with ray_if_missing():
        yield


def test_advantages_left_out_keep_the_step_the_drivers_entropy(tmp_path, monkeypatch):
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks.watch import Watch

    grpo = core_algos.compute_grpo_outcome_advantage
    integer = {"on": True}

    def estimator(*args, **kwargs):  # a custom estimator whose advantages are integers (the sign of GRPO's)
        adv, ret = grpo(*args, **kwargs)
        return (adv.sign().long() if integer["on"] else adv), ret

    monkeypatch.setattr(core_algos, "compute_grpo_outcome_advantage", estimator)
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(B, L, V, generator=g) * torch.linspace(0.3, 4.0, B)[:, None, None]
    responses = torch.randint(0, V, (B, L), generator=g)
    mask = torch.ones(B, L)
    mask[1, 1:] = 0  # short responses: the token mean and verl's seq-mean-token-mean differ
    mask[5, 2:] = 0
    trainer, module, tracking = teed_driver(monkeypatch, tmp_path, logits)
    root = tmp_path / "store"
    w = Watch("verl-t", store=str(root), flush_secs=0.05, vocab_size=V, reduce=False)  # verl's: async statistics
    ew_verl.set_watch(w)
    token_mean = {}
    try:
        for n in (1, 2):
            integer["on"] = n == 1
            trainer.global_steps = n
            batch = grpo_batch(responses, mask)
            old, _ = trainer._compute_old_log_prob(batch)
            ent = old.batch["entropys"]
            metrics = {"actor/entropy": core_algos.agg_loss(ent, mask, "seq-mean-token-mean").item()}
            batch = module.compute_advantage(batch.union(old), adv_estimator="grpo", num_repeat=4)
            metrics["critic/advantages/mean"] = batch.batch["advantages"].double()[mask.bool()].mean().item()
            token_mean[n] = float((ent.double() * mask).sum() / mask.sum())
            tracking.log(metrics, step=n)
    finally:
        ew_verl.set_watch(None)
    w.close()
    logged = {}
    for line in (tmp_path / "verl.jsonl").read_text().splitlines():
        row = json.loads(line)
        logged[row["step"]] = row["data"]
    assert abs(logged[1]["actor/entropy"] - token_mean[1]) > 0.05  # the two aggregates differ: the test can tell
    assert w.errors == 1  # the integer advantages, left out once
    store = Store(root)
    s, v = store.series("verl-t", M.ENTROPY_MEAN)
    entropy = dict(zip(s.tolist(), v.tolist(), strict=True))
    assert entropy[1] == pytest.approx(token_mean[1], abs=1e-5)  # was verl's aggregate beside the driver's quantiles
    assert entropy[2] == pytest.approx(token_mean[2], abs=1e-5)
    s, v = store.series("verl-t", M.ADV_MEAN)
    adv = dict(zip(s.tolist(), v.tolist(), strict=True))
    assert adv[1] == logged[1]["critic/advantages/mean"]  # the driver recorded none: verl's fills it
    assert adv[2] == pytest.approx(logged[2]["critic/advantages/mean"], abs=1e-6)  # the driver's, recorded
    assert sorted(set(store.table("verl-t", "hist").to_pydict()["step"])) == [1, 2]
