"""verl: one step, one ``entropy/mean``. The driver wraps (``_compute_old_log_prob`` + ``compute_advantage``) and the
tracking tee (``Tracking.log``) both reach canonical names at every training step; at a step the driver's per-token
pass recorded, it owns them (the TRL hook's rule), and verl's ``actor/entropy`` — aggregated by ``loss_agg_mode`` —
stays under verl's name. Real verl 0.9.1 ``Tracking``, ``DataProto``, ``agg_loss`` and GRPO estimator; the trainer
is test_verl.py's stand-in (the real ``ray_trainer`` needs Ray and the serving stack), driven in ``fit``'s order."""

from __future__ import annotations

import logging

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


@pytest.fixture
def verl_run(tmp_path, monkeypatch):
    """A verl driver as ``RayPPOTrainer.fit`` runs it: (run one step, the store), through the real Tracking tee."""
    from entropy_watch.hooks import verl as ew_verl

    g = torch.Generator().manual_seed(7)
    logits = torch.randn(B, L, V, generator=g) * torch.linspace(0.3, 4.0, B)[:, None, None]  # rows differ in entropy
    responses = torch.randint(0, V, (B, L), generator=g)
    mask = torch.ones(B, L)
    mask[1, 1:] = 0  # short responses: token mean and sequence mean of token means differ
    mask[5, 2:] = 0

    wiring = {"log_probs_as_entropy": False}

    def entropys(lp, logp):  # a mis-wired fork passes log-probs: refused
        return logp if wiring["log_probs_as_entropy"] else -(lp.exp() * lp).sum(-1)

    trainer, module, tracking = teed_driver(monkeypatch, tmp_path, logits, entropys)
    ref: dict[int, dict[str, float]] = {}

    def step(n: int, loss_agg_mode: str, driver: bool = True, before_log=None, refused: bool = False) -> None:
        """One training step: old log-probs and actor/entropy as fit computes them, advantages, then Tracking.log.
        ``refused``: the old-log-prob pass hands log-probs as ``entropys`` (``log_tokens`` refuses them)."""
        trainer.global_steps = n
        wiring["log_probs_as_entropy"] = refused
        metrics = {"actor/pg_clipfrac": 0.125, "actor/ppo_kl": 0.01}
        if driver:
            batch = grpo_batch(responses, mask)
            old, _ = trainer._compute_old_log_prob(batch)
            ent = old.batch["entropys"] if not refused else -old.batch["old_log_probs"]  # verl's own: its actor's
            metrics["actor/entropy"] = core_algos.agg_loss(
                loss_mat=ent, loss_mask=mask, loss_agg_mode=loss_agg_mode
            ).item()
            batch = module.compute_advantage(batch.union(old), adv_estimator="grpo", num_repeat=4)
            valid = torch.masked_select(batch.batch["advantages"], mask.bool())  # verl's compute_data_metrics
            metrics |= {"critic/advantages/mean": valid.mean().item(), "critic/advantages/max": valid.max().item(),
                        "critic/advantages/min": valid.min().item()}  # fmt: skip
            ref[n] = {
                "token_mean": float((ent.double() * mask).sum() / mask.sum()),
                "adv": valid.double().mean().item(),
            }
        else:  # e.g. rollout-correction bypass mode: no old-log-prob pass, verl's update logs its own entropy
            metrics["actor/entropy"] = 1.5
        if before_log is not None:
            before_log()
        tracking.log(metrics, step=n)

    yield step, ref
    ew_verl.set_watch(None)


def _series(root, name):
    s, v = Store(root).series("verl-t", name)
    return dict(zip(s.tolist(), v.tolist(), strict=True))


@pytest.mark.parametrize("loss_agg_mode", ["token-mean", "seq-mean-token-mean"])
def test_entropy_mean_is_the_driver_token_mean_beside_verls_own_aggregate(verl_run, tmp_path, loss_agg_mode, caplog):
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks.watch import Watch

    step, ref = verl_run
    root = tmp_path / "store"
    w = Watch("verl-t", store=str(root), strict=True, flush_secs=0.05, vocab_size=V, reduce=False)
    ew_verl.set_watch(w)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        step(1, loss_agg_mode)
        step(2, loss_agg_mode)
        step(3, loss_agg_mode, driver=False)
    w.close()
    logged = {n: float(r["actor/entropy"]) for n, r in _verl_lines(tmp_path)}
    if loss_agg_mode == "seq-mean-token-mean":  # the two aggregates differ on this batch: the test can tell them apart
        assert abs(logged[1] - ref[1]["token_mean"]) > 0.05
    entropy = _series(root, M.ENTROPY_MEAN)
    assert entropy[1] == pytest.approx(ref[1]["token_mean"], abs=1e-5)  # the histogram's pass, the histogram's mean
    assert entropy[2] == pytest.approx(ref[2]["token_mean"], abs=1e-5)
    assert entropy[3] == logged[3]  # a step without the driver's pass: verl's logged entropy fills the curve
    assert _series(root, "actor/entropy") == logged  # verl's own number, as logged
    assert _series(root, M.ADV_MEAN)[1] == pytest.approx(ref[1]["adv"], abs=1e-6)
    assert _series(root, M.CLIP_REGION_FRAC) == {1: 0.125, 2: 0.125, 3: 0.125}  # not the driver's: verl's fills it
    assert _series(root, M.KL_OLD) == {1: 0.01, 2: 0.01, 3: 0.01}
    hist = Store(root).table("verl-t", "hist").to_pydict()
    assert sorted(set(hist["step"])) == [1, 2]
    assert [r.getMessage() for r in caplog.records] == []


def test_production_watch_keeps_the_driver_entropy_whatever_finishes_first(verl_run, tmp_path):
    """The Watch verl's driver builds (statistics on a background worker): by the time fit logs a step, the actor
    update has run for minutes and the worker has long written its row — the tee must not replace it."""
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks.watch import Watch

    step, ref = verl_run
    root = tmp_path / "store"
    w = Watch("verl-t", store=str(root), flush_secs=0.05, vocab_size=V, reduce=False)
    ew_verl.set_watch(w)
    step(1, "seq-mean-token-mean", before_log=w.flush)  # the stats job done before Tracking.log, as in a real step
    w.close()
    assert _series(root, M.ENTROPY_MEAN)[1] == pytest.approx(ref[1]["token_mean"], abs=1e-5)
    assert _series(root, "actor/entropy")[1] != pytest.approx(ref[1]["token_mean"], abs=1e-3)


def test_a_refused_driver_pass_leaves_the_step_verls_entropy(verl_run, tmp_path):
    """The driver's pass owns the canonical names only at a step it recorded: refused (here log-probs handed as
    entropies), it recorded nothing, and verl's logged actor/entropy fills entropy/mean, as at a step without it."""
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks.watch import Watch

    step, ref = verl_run
    root = tmp_path / "store"
    w = Watch("verl-t", store=str(root), flush_secs=0.05, vocab_size=V, reduce=False)  # verl's: async statistics
    ew_verl.set_watch(w)
    step(1, "token-mean", refused=True)
    step(2, "token-mean")
    w.close()
    logged = dict(_verl_lines(tmp_path))
    entropy = _series(root, M.ENTROPY_MEAN)
    assert entropy[1] == float(logged[1]["actor/entropy"])  # was missing: the refused pass still claimed the step
    assert _series(root, M.ADV_MEAN)[1] == float(logged[1]["critic/advantages/mean"])
    assert entropy[2] == pytest.approx(ref[2]["token_mean"], abs=1e-5)  # a recorded pass still owns its step
    assert w.errors == 1  # the refusal is counted, once
    assert sorted(set(Store(root).table("verl-t", "hist").to_pydict()["step"])) == [2]


def _verl_lines(tmp_path):
    import json

    for line in (tmp_path / "verl.jsonl").read_text().splitlines():
        row = json.loads(line)
        yield row["step"], row["data"]
