"""OpenRLHF wraps against stand-ins with OpenRLHF 0.11.2's signatures (and the vLLM IS flag of earlier versions),
small enough to set up the cases the real classes make awkward: any return arity, an entropy attached to a
``ModelOutput``, an actor without it. The real ``PolicyLoss`` and ``Actor`` of OpenRLHF 0.11.2 drive the same hooks
in test_s46_real_openrlhf.py (``import openrlhf.models`` needs flash_attn and deepspeed; stand-in modules take their
place there, INTEGRATIONS §3.4)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store


class PolicyLoss(torch.nn.Module):  # openrlhf/models/loss.py (0.11.2): the ratio rule of PolicyLoss.forward
    """``policy_loss_type`` "ppo" clips the token ratio (log clamped to ±20), "gspo" one sequence ratio per row (the
    masked mean log-ratio, against ``rollout_log_probs`` when ``is_correction_level`` is not "off");
    ``clip_ratio`` is ``masked_mean(surr2 < surr1)``. The return is a tuple whose arity changed across versions (5
    here, as 0.11.2's). The IS correction's reweighting of the PPO loss is left out: it changes no clip share."""

    def __init__(self, clip_eps_low=0.2, clip_eps_high=0.28, dual_clip=None, token_level_loss=True,
                 policy_loss_type="ppo", is_correction_level="off") -> None:  # fmt: skip
        super().__init__()
        self.clip_eps_low, self.clip_eps_high, self.dual_clip = clip_eps_low, clip_eps_high, dual_clip
        self.policy_loss_type, self.is_correction_level = policy_loss_type, is_correction_level

    def _corrected(self) -> bool:
        return self.is_correction_level != "off"

    def forward(self, log_probs, old_log_probs, advantages, action_mask=None, rollout_log_probs=None, dp_size=1,
                batch_num_tokens=None, global_batch_size=None):  # fmt: skip
        if self.policy_loss_type == "ppo":
            ratio = torch.clamp(log_probs - old_log_probs, min=-20.0, max=20.0).exp()
        else:  # gspo
            ref = rollout_log_probs if self._corrected() else old_log_probs
            ratio = ((log_probs - ref) * action_mask).sum(dim=-1) / action_mask.sum(dim=-1).clamp(min=1)
            ratio = ratio.exp().unsqueeze(-1) * action_mask
        surr1 = ratio * advantages
        surr2 = ratio.clamp(1 - self.clip_eps_low, 1 + self.clip_eps_high) * advantages
        loss = -torch.min(surr1, surr2)
        if self.dual_clip is not None:
            loss = -torch.where(advantages < 0, torch.max(torch.min(surr1, surr2), self.dual_clip * advantages),
                                torch.min(surr1, surr2))  # fmt: skip
        clip_ratio = ((surr2 < surr1).float() * action_mask).sum() / action_mask.sum()
        loss = (loss * action_mask).sum() / action_mask.sum()
        return loss, clip_ratio, torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)


class PolicyLossPre011(PolicyLoss):  # OpenRLHF before 0.11: one flag, enable_vllm_is_correction, instead of the level
    def __init__(self, *args, enable_vllm_is_correction=False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        del self.is_correction_level  # no such attribute before 0.11
        self.enable_vllm_is_correction = enable_vllm_is_correction

    def _corrected(self) -> bool:
        return self.enable_vllm_is_correction


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
    openrlhf.wrap_policy_loss(PolicyLoss)  # PolicyLossPre011 inherits the wrapped forward
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


@pytest.mark.parametrize("entropy", [False, True])
def test_gspo_split_is_openrlhfs_sequence_level_clip_ratio(watch, tmp_path, entropy):
    """``--policy_loss_type gspo``: OpenRLHF clips one sequence-level ratio per row, so a token-level split would
    not add up to its ``ppo_clip_ratio`` (a row whose tokens straddle the clip range clips all or none)."""
    from entropy_watch.hooks import openrlhf

    openrlhf.wrap_actor(HFActor)  # idempotent; wrapped here too, so the test does not lean on an earlier one's
    g = torch.Generator().manual_seed(3)
    B, T, A, V = 8, 9, 5, 30
    actor = HFActor(torch.randn(B, T - 1, V, generator=g))
    seqs = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, A)
    mask[1, 3:] = 0
    logp, _ = actor(seqs, action_mask=mask, return_entropy=entropy)
    shift = torch.tensor([-0.5, 0.5, 0.1, -0.1, -0.4, 0.4, 0.05, 0.3])[:, None]  # rows 0, 1, 4, 5 clip as a whole
    old = logp + shift + 0.3 * torch.randn(B, A, generator=g)  # token ratios spread around the sequence ratio
    adv = torch.tensor([1.0, -1.0, 2.0, -0.5, 1.5, -2.0, 0.5, -1.0])[:, None].expand(B, A)
    result = PolicyLoss(policy_loss_type="gspo")(logp, old, adv, action_mask=mask, rollout_log_probs=None)
    watch.flush()
    store = Store(tmp_path / "s")
    lo, hi = (store.series("orl", name)[1][0] for name in (M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC))
    assert 0 < float(result[1]) < 1
    assert lo + hi == pytest.approx(float(result[1]), abs=1e-6)
    seq_ratio = (((logp - old) * mask).sum(-1) / mask.sum(-1)).exp()
    expected_hi = float((((seq_ratio > 1.28) & (adv[:, 0] > 0))[:, None] * mask).sum() / mask.sum())
    assert hi == pytest.approx(expected_hi, abs=1e-6)
    assert (store.series("orl", M.ENTROPY_MEAN)[0].tolist() == [1]) is entropy


@pytest.mark.parametrize(
    "make_loss",
    [
        lambda: PolicyLoss(policy_loss_type="gspo", is_correction_level="token"),  # 0.11: --algo.advantage.is_...
        lambda: PolicyLoss(policy_loss_type="gspo", is_correction_level="seq"),
        lambda: PolicyLossPre011(policy_loss_type="gspo", enable_vllm_is_correction=True),  # before 0.11
    ],
    ids=["0.11-token", "0.11-seq", "pre-0.11-flag"],
)
def test_gspo_with_vllm_is_correction_clips_against_the_rollout_log_probs(watch, tmp_path, make_loss):
    g = torch.Generator().manual_seed(4)
    logp = -torch.rand(6, 4, generator=g)
    old = logp.clone()  # on-policy against pi_old ...
    rollout = logp - 0.4 * torch.randn(6, 4, generator=g).abs() * torch.tensor([1, -1, 1, -1, 1, -1.0])[:, None]
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])[:, None].expand(6, 4)
    mask = torch.ones(6, 4)
    result = make_loss()(logp, old, adv, action_mask=mask, rollout_log_probs=rollout)  # ... off-policy to the rollout
    watch.flush()
    store = Store(tmp_path / "s")
    lo, hi = (store.series("orl", name)[1][0] for name in (M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC))
    assert float(result[1]) > 0 and lo + hi == pytest.approx(float(result[1]), abs=1e-6)
