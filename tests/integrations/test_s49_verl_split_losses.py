"""``loss_mode=ew_<mode>`` records the clip low/high split by ``<mode>``'s own rule, against verl 0.9.1's real losses.

The reference is the loss itself: a token is clipped where verl's loss removes its gradient (autograd through the
real ``core_algos`` function), on the A<0 side (low) or the A>0 side (high). Before hooks/verl_split.py every
``ew_<mode>`` recorded PPO's per-token rule: ``ew_gspo``, ``ew_geo_mean`` and ``ew_dppo_*`` a split their loss does not
make, and ``ew_cispo``, ``ew_sapo``, ``ew_gpg`` ... a clip split of losses that remove no gradient by a ratio clip.
"""

from __future__ import annotations

import logging

import pytest
import torch

from ._verl_ray import ray_if_missing

with ray_if_missing():
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    config_module = pytest.importorskip("verl.workers.config")

pytestmark = pytest.mark.slow

B, L = 16, 7


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks import watch as watch_module

    monkeypatch.delenv("ENTROPY_WATCH_STRICT", raising=False)
    monkeypatch.setattr(watch_module, "_warned_without_watch", set())
    with ray_if_missing():
        ew_verl.register_policy_losses()
        yield
    ew_verl.set_watch(None)


def _config(**policy_loss):
    from verl.workers.config.actor import PolicyLossConfig

    return config_module.ActorConfig(
        strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, clip_ratio=0.2, clip_ratio_low=0.2,
        clip_ratio_high=0.28, clip_ratio_c=1e6,  # no dual-clip: every gradient it removes is a low or high clip
        policy_loss=PolicyLossConfig(**{"dro_beta": 0.1, **policy_loss}),
    )  # fmt: skip


def _batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Log-probs in (-3, 0), ratios well beyond both bounds, one advantage per row (none zero), two padded rows."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, L, generator=g, dtype=torch.float32) * 3
    shift = 0.6 * torch.randn(B, 1, generator=g, dtype=torch.float32)  # whole rows move: GSPO's sequence ratio too
    new = (old + shift + 0.6 * torch.randn(B, L, generator=g, dtype=torch.float32)).clamp(max=-1e-3)
    adv = torch.randn(B, generator=g, dtype=torch.float32)
    adv = (adv + adv.sign() * 0.1)[:, None].expand(B, L).contiguous()
    mask = torch.ones(B, L, dtype=torch.float32)
    mask[0, 4:] = 0
    mask[5, 2:] = 0
    return old, new, adv, mask


def _gradient_removed(mode: str, cfg) -> tuple[float, float]:
    """(low, high): the shares of response tokens whose gradient verl's ``mode`` loss removes, A<0 / A>0."""
    old, new, adv, mask = _batch()
    new = new.clone().requires_grad_(True)
    loss, _ = core_algos.get_policy_loss_fn(mode)(old, new, adv, mask, "token-mean", cfg)
    (grad,) = torch.autograd.grad(loss, new)
    removed = (grad == 0) & mask.bool()
    n = float(mask.sum())
    return float((removed & (adv < 0)).sum()) / n, float((removed & (adv > 0)).sum()) / n


@pytest.mark.parametrize("mode", ["vanilla", "gspo", "geo_mean", "dppo_tv", "dppo_kl", "clip_cov"])
def test_split_is_the_tokens_whose_gradient_the_loss_itself_clips(mode, caplog):
    # clip_cov: no token inside (lb, ub), so the only gradients it removes are its own PPO clip's
    cfg = _config(clip_cov_lb=1e6, clip_cov_ub=2e6) if mode == "clip_cov" else _config()
    low, high = _gradient_removed(mode, cfg)
    assert low > 0.01 and high > 0.01  # the batch exercises both sides
    old, new, adv, mask = _batch()
    torch.manual_seed(0)
    base_loss, base_m = core_algos.get_policy_loss_fn(mode)(old, new, adv, mask, "token-mean", cfg)
    torch.manual_seed(0)
    loss, m = core_algos.get_policy_loss_fn(f"ew_{mode}")(old, new, adv, mask, "token-mean", cfg)
    assert torch.equal(loss, base_loss) and {k: m[k] for k in base_m} == base_m  # the loss runs unchanged
    assert m["actor/ew_clipfrac_low"] == pytest.approx(low, abs=1e-6)
    assert m["actor/ew_clipfrac_high"] == pytest.approx(high, abs=1e-6)
    if mode in ("vanilla", "gspo"):  # their pg_clipfrac is the clip's share, both sides
        assert low + high == pytest.approx(base_m["actor/pg_clipfrac"], abs=1e-6)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("mode", ["cispo", "sapo", "gpg", "dro", "kl_cov"])
def test_losses_without_a_ratio_clip_record_no_split_and_say_so_once(mode, caplog):
    old, new, adv, mask = _batch()
    fn = core_algos.get_policy_loss_fn(f"ew_{mode}")
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        for _ in range(3):
            _, m = fn(old, new, adv, mask, "token-mean", _config())
    assert "actor/ew_clipfrac_low" not in m and "actor/ew_clipfrac_high" not in m
    assert m["actor/ew_onpolicy"] == 0.0  # what does not depend on the clip rule is still added
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"loss_mode=ew_{mode}:" in warnings[0] and "no clip low/high split" in warnings[0]
    if "actor/pg_clipfrac" in m:  # cispo, sapo
        assert "verl's own actor/pg_clipfrac still stands as clip/region_frac" in warnings[0]
    else:
        assert "logs no actor/pg_clipfrac" in warnings[0]


def test_an_unknown_mode_gets_no_split_and_one_warning(caplog):
    from entropy_watch.hooks.verl import wrap_policy_loss

    def recipe_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None):
        return (advantages * log_prob).mean(), {"actor/pg_clipfrac": 0.25}

    old, new, adv, mask = _batch()
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        _, m = wrap_policy_loss(recipe_loss, "ew_recipe_loss")(old, new, adv, mask, "token-mean", _config())
    assert "actor/ew_clipfrac_low" not in m and m["actor/pg_clipfrac"] == 0.25
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "loss_mode=ew_recipe_loss: entropy_watch does not know how verl's 'recipe_loss' loss clips" in warning
