"""OpenRLHF wraps against stand-ins with OpenRLHF 0.11's signatures (``openrlhf.models`` needs flash_attn to import,
so the real classes cannot load on CPU; INTEGRATIONS §3.4)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store


class PolicyLoss(torch.nn.Module):  # openrlhf/models/loss.py (0.11.x): forward returns a 5-tuple
    def __init__(self, clip_eps_low: float = 0.2, clip_eps_high: float = 0.28) -> None:
        super().__init__()
        self.clip_eps_low, self.clip_eps_high = clip_eps_low, clip_eps_high

    def forward(self, log_probs, old_log_probs, advantages, action_mask=None, rollout_log_probs=None):
        ratio = (log_probs - old_log_probs).exp()
        surr1 = ratio * advantages
        surr2 = ratio.clamp(1 - self.clip_eps_low, 1 + self.clip_eps_high) * advantages
        loss = -torch.min(surr1, surr2)
        clip_ratio = ((surr2 < surr1).float() * action_mask).sum() / action_mask.sum()
        loss = (loss * action_mask).sum() / action_mask.sum()
        return loss, clip_ratio, torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)


class Actor(torch.nn.Module):  # openrlhf/models/actor.py: forward(..., return_entropy=True) -> output with .entropy
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, sequences, action_mask=None, return_output=False, return_entropy=False):
        lp = torch.log_softmax(self.logits, -1)
        out = {"entropy": -(lp.exp() * lp).sum(-1)}  # (B, T-1)
        return lp[:, -action_mask.shape[1] :].gather(-1, sequences[:, -action_mask.shape[1] :, None]).squeeze(-1), out


@pytest.fixture
def watch(tmp_path):
    from entropy_watch.hooks import openrlhf
    from entropy_watch.hooks.watch import Watch

    w = Watch("orl", store=str(tmp_path / "s"), strict=True, flush_secs=0.05, vocab_size=30, reduce=False)
    openrlhf.set_watch(w)
    openrlhf.wrap_policy_loss(PolicyLoss)
    openrlhf.wrap_actor(Actor)
    yield w
    openrlhf.set_watch(None)
    openrlhf.set_step_fn(None)
    w.close()


def test_policy_loss_and_actor_entropy(watch, tmp_path):
    from entropy_watch.hooks import openrlhf

    g = torch.Generator().manual_seed(0)
    B, T, A, V = 8, 9, 5, 30
    actor = Actor(torch.randn(B, T - 1, V, generator=g) * 2)
    seqs = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, A)
    mask[2, 3:] = 0
    logp, out = actor(seqs, action_mask=mask, return_entropy=True)
    old = logp + 0.5 * torch.randn(B, A, generator=g)
    adv = torch.randn(B, 1, generator=g).expand(B, A)
    openrlhf.set_step_fn(lambda: 7)
    result = PolicyLoss()(logp, old, adv, action_mask=mask)
    assert len(result) == 5  # the trainer's return value is untouched
    watch.flush()
    store = Store(tmp_path / "s")

    def one(name):
        steps, vals = store.series("orl", name)
        assert steps.tolist() == [7], name
        return vals[0]

    ent = out["entropy"][:, -A:]
    assert one(M.ENTROPY_MEAN) == pytest.approx(float((ent * mask).sum() / mask.sum()), abs=1e-5)
    lo, hi = one(M.CLIP_LOW_FRAC), one(M.CLIP_HIGH_FRAC)
    assert lo + hi == pytest.approx(float(result[1]), abs=1e-6)  # OpenRLHF's combined ppo_clip_ratio, split
    ratio = (logp - old).exp()
    assert hi == pytest.approx(float((((ratio > 1.28) & (adv > 0)).float() * mask).sum() / mask.sum()), abs=1e-6)
    assert sum(store.table("orl", "hist").to_pydict()["count"]) == int(mask.sum())


def test_without_entropy_records_clip_and_advantages(watch, tmp_path):
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(4, 6, generator=g)
    old = logp + 0.6 * torch.randn(4, 6, generator=g)
    adv = torch.tensor([[1.0], [-1.0], [2.0], [-0.5]]).expand(4, 6)
    PolicyLoss()(logp, old, adv, action_mask=torch.ones(4, 6))
    PolicyLoss()(logp, logp, adv, action_mask=torch.ones(4, 6))  # on-policy: nothing clips
    watch.flush()
    store = Store(tmp_path / "s")
    steps, onp = store.series("orl", M.CLIP_ONPOLICY)
    assert steps.tolist() == [1, 2] and onp.tolist() == [0.0, 1.0]
    low_steps, low = store.series("orl", M.CLIP_LOW_FRAC)
    assert low_steps.tolist() == [1, 2] and low[0] > 0 and low[1] == 0.0  # 0 on-policy (the old-log-prob rule)
    assert store.series("orl", M.ADV_MAX)[1].tolist() == [2.0, 2.0]
    assert store.series("orl", M.ENTROPY_MEAN)[0].tolist() == []


def test_install_reports_missing_openrlhf():
    from entropy_watch.hooks.openrlhf import install

    report = install()
    assert set(report) == {"policy_loss", "actor"}  # "ok" where OpenRLHF imports, else the reason; never raises


class ModelOutput(OrderedDict):  # transformers' ModelOutput: a dict whose extra fields OpenRLHF sets as attributes
    pass


class HFActor(Actor):  # openrlhf/models/actor.py (0.8 - 0.11): setattr(output, "entropy", entropy[:, :-1])
    def forward(self, sequences, action_mask=None, return_output=False, return_entropy=False):
        lp = torch.log_softmax(self.logits, -1)
        output = ModelOutput(logits=self.logits)
        if return_entropy:
            output.entropy = -(lp.exp() * lp).sum(-1)
        A = action_mask.shape[1]
        return lp[:, -A:].gather(-1, sequences[:, -A:, None]).squeeze(-1), output


def test_entropy_set_as_an_attribute_of_a_model_output(watch, tmp_path):
    from entropy_watch.hooks import openrlhf

    openrlhf.wrap_actor(HFActor)
    g = torch.Generator().manual_seed(2)
    B, T, A, V = 4, 7, 3, 30
    actor = HFActor(torch.randn(B, T - 1, V, generator=g))
    mask = torch.ones(B, A)
    logp, output = actor(torch.randint(0, V, (B, T), generator=g), action_mask=mask, return_entropy=True)
    assert output.get("entropy") is None  # what a dict lookup sees: nothing
    PolicyLoss()(logp, logp + 0.1, torch.ones(B, A), action_mask=mask)
    watch.flush()
    steps, ent = Store(tmp_path / "s").series("orl", M.ENTROPY_MEAN)
    assert steps.tolist() == [1] and ent[0] == pytest.approx(float(output.entropy[:, -A:].mean()), abs=1e-5)


def test_actor_without_entropy_warns_once(tmp_path, caplog):
    import logging

    from entropy_watch.hooks import openrlhf
    from entropy_watch.hooks.watch import Watch

    class Bare(Actor):  # return_entropy=True but nothing attached: an OpenRLHF whose output we do not read
        def forward(self, sequences, action_mask=None, return_output=False, return_entropy=False):
            return torch.zeros(action_mask.shape), ModelOutput(logits=self.logits)

    w = Watch("orl-bare", store=str(tmp_path / "b"), flush_secs=0.05, vocab_size=30, reduce=False)
    openrlhf.set_watch(w)
    openrlhf.wrap_actor(Bare)
    actor = Bare(torch.zeros(2, 3, 30))
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        for _ in range(3):
            actor(torch.zeros(2, 4, dtype=torch.long), action_mask=torch.ones(2, 2), return_entropy=True)
    openrlhf.set_watch(None)
    w.close()
    warnings = [r.getMessage() for r in caplog.records if "openrlhf.actor_forward" in r.getMessage()]
    assert len(warnings) == 1 and "entropy" in warnings[0]
