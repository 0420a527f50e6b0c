"""OpenRLHF with ``set_step_fn``: the micro-batches of one optimizer step are recorded as one step (a stand-in with
OpenRLHF's ``PolicyLoss.forward`` signature: the real class needs flash_attn to import, INTEGRATIONS §3.4)."""

from __future__ import annotations

import logging

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store


class PolicyLoss(torch.nn.Module):  # openrlhf/models/loss.py: forward(log_probs, old_log_probs, advantages, ...)
    clip_eps_low, clip_eps_high = 0.2, 0.28

    def forward(self, log_probs, old_log_probs, advantages, action_mask=None, rollout_log_probs=None):
        return (-(log_probs - old_log_probs).exp() * advantages * action_mask).sum(), torch.tensor(0.0)


def _micro(g: torch.Generator, b: int, a: int) -> tuple[torch.Tensor, ...]:
    ent = torch.rand(b, a, generator=g) * 3
    logp = -torch.rand(b, a, generator=g)
    mask = torch.ones(b, a)
    mask[0, a // 2 :] = 0
    return ent, logp, mask


def test_micro_batches_of_one_step_are_one_record(tmp_path, caplog) -> None:
    from entropy_watch.hooks import openrlhf
    from entropy_watch.hooks.watch import Watch

    w = Watch("orl", store=str(tmp_path / "s"), strict=True, flush_secs=60, vocab_size=30, reduce=False)
    openrlhf.set_watch(w)
    openrlhf.wrap_policy_loss(PolicyLoss)
    step = {"now": 3}
    openrlhf.set_step_fn(lambda: step["now"])
    g = torch.Generator().manual_seed(0)
    micro = {3: [_micro(g, 4, 6), _micro(g, 3, 6)], 4: [_micro(g, 5, 6)]}
    try:
        with caplog.at_level(logging.WARNING, logger="entropy_watch"):
            for s, batches in micro.items():
                step["now"] = s
                for ent, logp, mask in batches:
                    openrlhf._state["entropy"] = ent  # what the Actor.forward wrap keeps (return_entropy=True)
                    PolicyLoss()(logp, logp.detach(), torch.ones(logp.shape[0], 1), action_mask=mask)
            w.flush()  # step 4 is still being merged: flushing the watch records it
        assert "twice" not in caplog.text
        store = Store(tmp_path / "s")
        steps, mean = store.series("orl", M.ENTROPY_MEAN)
        assert steps.tolist() == [3, 4]
        for k, s in enumerate((3, 4)):
            ent = torch.cat([e[m.bool()] for e, _, m in micro[s]])
            assert mean[k] == pytest.approx(float(ent.double().mean()), rel=1e-5)  # over all its micro-batches
        _, counts = store.hist_matrix("orl", 200)
        assert counts.sum(1).tolist() == [sum(float(m.sum()) for _, _, m in micro[s]) for s in (3, 4)]
    finally:
        openrlhf.set_watch(None)
        openrlhf.set_step_fn(None)
        w.close()


def test_the_last_step_is_recorded_when_the_run_closes(tmp_path) -> None:
    from entropy_watch.hooks import openrlhf
    from entropy_watch.hooks.watch import Watch

    w = Watch("orl", store=str(tmp_path / "s"), strict=True, flush_secs=60, vocab_size=30, reduce=False)
    openrlhf.set_watch(w)
    openrlhf.wrap_policy_loss(PolicyLoss)
    openrlhf.set_step_fn(lambda: 9)
    g = torch.Generator().manual_seed(1)
    micro = [_micro(g, 2, 4), _micro(g, 3, 4)]
    try:
        for ent, logp, mask in micro:
            openrlhf._state["entropy"] = ent
            PolicyLoss()(logp, logp.detach(), torch.ones(logp.shape[0], 1), action_mask=mask)
    finally:
        openrlhf.set_watch(None)
        openrlhf.set_step_fn(None)
        w.close()  # no flush before: closing records the step still being merged
    store = Store(tmp_path / "s")
    steps, mean = store.series("orl", M.ENTROPY_MEAN)
    assert steps.tolist() == [9]
    assert mean[0] == pytest.approx(float(torch.cat([e[m.bool()] for e, _, m in micro]).double().mean()), rel=1e-5)
    assert store.hist_matrix("orl", 200)[1].sum() == sum(float(m.sum()) for _, _, m in micro)
