"""verl's ``ew_repo_r`` loss: the controller's entropy sum and token count stay tensors on the device, in float32 at
least, added up and read back once per call by the controller's update (they were turned into two Python floats per
micro-batch, two waits for the device on a GPU, and a bf16 count rounded 1,001 tokens to 1,000)."""

from __future__ import annotations

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks.control import ControlConfig, EntropyController
from entropy_watch.hooks.verl import repo_r_policy_loss

from ..host_reads import HostReads


def test_loss_reads_back_once_per_call_and_counts_bf16_tokens_exactly() -> None:
    def vanilla(old, new, adv, mask, agg="token-mean", config=None, is_weights=None):  # verl's signature
        return (adv * mask).sum(), {"actor/pg_loss": 0.0}

    ctl = EntropyController(ControlConfig("repo-r", target=5.0, centering="raw"))
    loss_fn = repo_r_policy_loss(vanilla, ctl)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):  # two micro-batches of 1,001 bf16 tokens (and 3 padded ones)
        logp = (-torch.rand(1, 1004, generator=gen) * 3).to(torch.bfloat16)
        mask = torch.ones(1, 1004, dtype=torch.long)
        mask[0, 1001:] = 0
        adv = torch.ones(1, 1004, dtype=torch.bfloat16)
        with HostReads() as mode:
            _, metrics = loss_fn(logp, logp, adv, mask)
        assert mode.reads == 1  # the controller's update (zeta after every call): one read of the stacked pair
        want = -logp[0, :1001].double().sum().item() / 1001  # the surprisal mean over the 1,001 bf16 values
        assert metrics[M.CONTROL_ENTROPY] == pytest.approx(want, rel=1e-6)
