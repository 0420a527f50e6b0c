"""OpenRLHF 0.8-0.10's seams, against stand-ins shaped exactly like those releases' code (no OpenRLHF needed).

* ``openrlhf/models/loss.py::PolicyLoss``: 0.8.0-0.8.1 take one ``clip_eps`` and return the loss alone; 0.8.2 split
  it into ``clip_eps_low``/``clip_eps_high``; 0.8.3-0.8.11 return ``(loss, clip_ratio)``, later versions 4 values.
  ``PPOActor.training_step`` calls it as ``actor_loss_fn(action_log_probs, old_action_log_probs, advantages,
  action_mask=experience.action_mask)`` (``openrlhf/trainer/ray/ppo_actor.py``, 0.8.0 line 218).
* ``training_step`` asks ``Actor.forward`` for the entropy (``return_entropy=``) only when the entropy flag asks:
  ``args.entropy_loss_coef > 1e-8`` before 0.8.3, ``args.entropy_loss_coef is not None`` from 0.8.3,
  ``args.actor.entropy_coef is not None`` from 0.10.2. Without it the hook recorded clip statistics and, silently, no
  entropy at all.
* ``openrlhf/cli/train_ppo_ray.py``'s flags are flat before 0.10.2 (``--eps_clip_low_high``, ``--entropy_loss_coef``,
  ``--actor_learning_rate``, ``--use_wandb KEY``), dotted from 0.10.2 (``--actor.eps_clip_low_high``...).
"""

from __future__ import annotations

import argparse
import logging

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store


def masked_mean(tensor, mask, dim=None):  # openrlhf/models/utils.py (0.8.0)
    if mask is None:
        return tensor.mean(dim=dim)
    return (tensor * mask).sum(dim=dim) / mask.sum(dim=dim)


class PolicyLoss080(torch.nn.Module):  # openrlhf/models/loss.py::PolicyLoss, OpenRLHF 0.8.0
    def __init__(self, clip_eps: float = 0.2, token_level_loss: bool = True) -> None:
        super().__init__()
        self.clip_eps = clip_eps
        self.token_level_loss = token_level_loss

    def forward(self, log_probs, old_log_probs, advantages, action_mask=None):
        ratio = (log_probs - old_log_probs).exp()
        surr1 = ratio * advantages
        surr2 = ratio.clamp(1 - self.clip_eps, 1 + self.clip_eps) * advantages
        loss = -torch.min(surr1, surr2)
        return (masked_mean(loss, action_mask, dim=None) if self.token_level_loss
                else masked_mean(loss, action_mask, dim=-1).mean())  # fmt: skip


class PolicyLoss085(torch.nn.Module):  # openrlhf/models/loss.py::PolicyLoss, OpenRLHF 0.8.5
    def __init__(self, clip_eps_low: float = 0.2, clip_eps_high: float = 0.2, token_level_loss: bool = True) -> None:
        super().__init__()
        self.clip_eps_low, self.clip_eps_high, self.token_level_loss = clip_eps_low, clip_eps_high, token_level_loss

    def forward(self, log_probs, old_log_probs, advantages, action_mask=None):
        ratio = (log_probs - old_log_probs).exp()
        surr1 = ratio * advantages
        surr2 = ratio.clamp(1 - self.clip_eps_low, 1 + self.clip_eps_high) * advantages
        loss = masked_mean(-torch.min(surr1, surr2), action_mask, dim=None)
        return loss, masked_mean(torch.lt(surr2, surr1).float(), action_mask, dim=None)


class Actor(torch.nn.Module):  # openrlhf/models/actor.py::Actor.forward's return_entropy contract (0.8.0-0.11)
    """``forward(sequences, action_mask, attention_mask=None, return_output=False, ..., return_entropy=False)``: with
    ``return_entropy`` it sets ``output.entropy`` (``entropy[:, :-1]`` of the logits' entropy: ``(B, T-1)``, or
    what ``gather_and_pad_tensor`` gives); returns ``(action_log_probs, output)`` with ``return_output``."""

    def __init__(self, logits: torch.Tensor, entropy_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.logits, self.entropy_shape = logits, entropy_shape

    def forward(self, sequences, action_mask=None, attention_mask=None, return_output=False, return_entropy=False,
                **kwargs):  # fmt: skip
        lp = torch.log_softmax(self.logits, -1)
        output = argparse.Namespace(logits=self.logits)
        if return_entropy:
            entropy = -(lp.exp() * lp).sum(-1)
            if self.entropy_shape is not None:  # a gather this hook cannot pair with the loss's tokens
                entropy = entropy.reshape(1, -1)[:, : self.entropy_shape[-1] + 1]
            output.entropy = entropy[:, :-1]
        log_probs = lp[:, :-1].gather(-1, sequences[:, 1:, None]).squeeze(-1)
        log_probs = log_probs[:, -action_mask.shape[1] :]
        return (log_probs, output) if return_output else log_probs


B, T, A, V = 4, 8, 5, 16


@pytest.fixture
def watch(tmp_path, monkeypatch):
    from entropy_watch.hooks import openrlhf
    from entropy_watch.hooks.watch import Watch

    for cls in (PolicyLoss080, PolicyLoss085, Actor):
        monkeypatch.setattr(cls, "forward", cls.forward)  # the class-level wraps, undone after the test
        (openrlhf.wrap_actor if cls is Actor else openrlhf.wrap_policy_loss)(cls)
    w = Watch("orl-old", store=str(tmp_path / "store"), strict=True, flush_secs=0.05, vocab_size=V, reduce=False)
    openrlhf.set_watch(w)
    yield w
    openrlhf.set_watch(None)
    w.close()


def _step(seed=0, spread=0.6):
    g = torch.Generator().manual_seed(seed)
    sequences = torch.randint(0, V, (B, T), generator=g)
    logits = torch.randn(B, T, V, generator=g)
    mask = torch.ones(B, A)
    mask[1, 3:] = 0
    adv = torch.randn(B, 1, generator=g).expand(B, A).contiguous()
    return sequences, logits, mask, adv, spread * torch.randn(B, A, generator=g)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "entropy_watch" and r.levelno >= logging.WARNING]


def _series(tmp_path, name):
    return Store(tmp_path / "store").series("orl-old", name)[1].tolist()


def test_openrlhf_0_8_0_without_entropy_records_the_clip_split_and_warns_once(watch, tmp_path, caplog):
    """OpenRLHF 0.8.0 with ``--entropy_loss_coef 0``: ``training_step`` calls ``Actor.forward(...,
    return_entropy=False)`` (its test is ``> 1e-8``), then the single-``clip_eps`` loss, which returns the loss alone.
    The clip split uses ``clip_eps`` on both sides; one warning says entropy is not recorded and which flag asks for it
    in each OpenRLHF."""
    loss = PolicyLoss080(clip_eps=0.2)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        for seed in (0, 1):  # two micro-batches
            sequences, logits, mask, adv, noise = _step(seed)
            entropy_loss_coef = 0.0
            log_probs, _ = Actor(logits)(sequences, mask, return_output=True,
                                         return_entropy=entropy_loss_coef > 1e-8)  # fmt: skip
            old = log_probs.detach() + noise
            out = loss(log_probs, old, adv, action_mask=mask)  # ppo_actor.py 0.8.0's call
            assert torch.equal(out, PolicyLoss080.forward.__wrapped__(loss, log_probs, old, adv, action_mask=mask))
    watch.flush()
    ratio = torch.exp(log_probs.detach() - old)
    n = float(mask.sum())
    low = float((((ratio < 0.8) & (adv < 0)).float() * mask).sum() / n)
    high = float((((ratio > 1.2) & (adv > 0)).float() * mask).sum() / n)
    assert low + high > 0
    assert _series(tmp_path, M.CLIP_LOW_FRAC)[-1] == pytest.approx(low)
    assert _series(tmp_path, M.CLIP_HIGH_FRAC)[-1] == pytest.approx(high)
    assert _series(tmp_path, M.ENTROPY_MEAN) == []
    (warning,) = _warnings(caplog)
    assert "without a per-token entropy" in warning and "not recorded" in warning
    assert "--actor.entropy_coef 0" in warning and "--entropy_loss_coef 0" in warning and "0.8.3" in warning


def test_openrlhf_0_8_5_with_entropy_records_it_without_a_warning(watch, tmp_path, caplog):
    """OpenRLHF 0.8.5 with ``--entropy_loss_coef 0`` (``is not None``): the entropy comes, the 2-value loss's
    ``clip_ratio`` is clip-low + clip-high, and nothing is warned."""
    loss = PolicyLoss085(clip_eps_low=0.2, clip_eps_high=0.28)
    sequences, logits, mask, adv, noise = _step(2)
    entropy_loss_coef = 0.0
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        log_probs, _ = Actor(logits)(sequences, mask, return_output=True,
                                     return_entropy=entropy_loss_coef is not None)  # fmt: skip
        _, clip_ratio = loss(log_probs, log_probs.detach() + noise, adv, action_mask=mask)
    watch.flush()
    lp = torch.log_softmax(logits, -1)
    ent = (-(lp.exp() * lp).sum(-1))[:, :-1][:, -A:]
    assert _series(tmp_path, M.ENTROPY_MEAN) == pytest.approx([float((ent * mask).sum() / mask.sum())], rel=1e-5)
    region = _series(tmp_path, M.CLIP_LOW_FRAC)[0] + _series(tmp_path, M.CLIP_HIGH_FRAC)[0]
    assert region == pytest.approx(float(clip_ratio), abs=1e-6)
    assert _warnings(caplog) == []


def test_an_entropy_that_does_not_pair_with_the_loss_tokens_is_warned_not_dropped_silently(watch, tmp_path, caplog):
    loss = PolicyLoss085()
    sequences, logits, mask, adv, noise = _step(3)
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        log_probs, _ = Actor(logits, entropy_shape=(1, 2 * T))(sequences, mask, return_output=True,
                                                               return_entropy=True)  # fmt: skip
        loss(log_probs, log_probs.detach() + noise, adv, action_mask=mask)
    watch.flush()
    assert _series(tmp_path, M.ENTROPY_MEAN) == [] and len(_series(tmp_path, M.CLIP_LOW_FRAC)) == 1
    (warning,) = _warnings(caplog)
    assert "does not match the loss's log-probs" in warning and f"({B}, {A})" in warning


def test_flat_flags_before_0_10_2_are_kept_under_their_dotted_paths():
    """OpenRLHF 0.10.1's ``train_ppo_ray`` namespace (flat flags): the settings advice quotes are kept under the
    0.10.2+ dotted paths; the W&B key never is."""
    from entropy_watch.hooks.openrlhf import run_args

    args = argparse.Namespace(
        eps_clip=0.2, eps_clip_low_high=[0.2, 0.28], dual_clip=None, entropy_loss_coef=0.0, actor_learning_rate=1e-6,
        max_norm=1.0, policy_loss_type="ppo", advantage_estimator="group_norm", init_kl_coef=0.01, use_kl_loss=True,
        dynamic_filtering=False, dynamic_filtering_reward_range=[0.0, 1.0], n_samples_per_prompt=8, temperature=1.0,
        use_wandb="wandb-secret-key-000", critic_learning_rate=9e-6,
    )  # fmt: skip
    cfg = run_args(args)
    assert cfg["actor"] == {"eps_clip": 0.2, "eps_clip_low_high": [0.2, 0.28], "entropy_coef": 0.0,
                            "adam": {"lr": 1e-6}, "max_norm": 1.0, "policy_loss_type": "ppo"}  # fmt: skip
    assert cfg["algo"] == {"advantage": {"estimator": "group_norm"}, "kl": {"init_coef": 0.01, "use_loss": True},
                           "dynamic_filtering_enable": False, "dynamic_filtering_range": [0.0, 1.0]}  # fmt: skip
    assert cfg["rollout"] == {"n_samples_per_prompt": 8, "temperature": 1.0}
    assert cfg["wandb"] is True and "wandb-secret-key-000" not in repr(cfg)
    nested = argparse.Namespace(actor=argparse.Namespace(entropy_coef=0.01), entropy_loss_coef=0.5)
    assert run_args(nested)["actor"] == {"entropy_coef": 0.01}  # the dotted flag wins where it exists
