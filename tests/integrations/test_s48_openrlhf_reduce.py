"""OpenRLHF's policy-loss wrap without entropy (``--actor.entropy_coef`` unset) under a reducing ``Watch``: the clip,
advantage and ratio statistics are all-reduced over the ranks like the entropy path's, not rank 0's own numbers."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.histogram import entropy_bin_edges
from entropy_watch.hooks.stats import finalize, token_sums
from entropy_watch.hooks.token_batch import prepare_batch

from ..gloo_ranks import run_ranks

REPO = Path(__file__).resolve().parents[2]
INPUTS = textwrap.dedent(
    """
    def inputs(rank):  # rank 0: on-policy, positive advantages; rank 1: off-policy, negative ones (clip low binds)
        g = torch.Generator().manual_seed(7 + rank)
        logp = -torch.rand(4, 6, generator=g)
        old = logp if rank == 0 else logp + 0.6 * torch.rand(4, 6, generator=g)
        adv = (torch.rand(4, 1, generator=g) + 0.5) * (1.0 if rank == 0 else -1.0)
        mask = torch.ones(4, 6)
        mask[rank, 3:] = 0
        return logp, old, adv.expand(4, 6), mask
    """
)
WORKER = (
    "import json, os, sys\nimport torch, torch.distributed as dist\n"
    + f"TEST_OPENRLHF = {str(REPO / 'tests' / 'integrations' / 'test_openrlhf.py')!r}\n"
    + INPUTS
    + textwrap.dedent(
        """
        from entropy_watch.hooks import openrlhf
        from entropy_watch.hooks.watch import Watch
        import importlib.util

        spec = importlib.util.spec_from_file_location("stand_ins", TEST_OPENRLHF)  # OpenRLHF 0.11.2's PolicyLoss
        stand_ins = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(stand_ins)
        PolicyLoss = stand_ins.PolicyLoss

        rank, out = int(os.environ["RANK"]), sys.argv[1]
        dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=2)
        w = Watch("orl", store=os.path.join(out, "s"), strict=True, flush_secs=60, vocab_size=30)  # reduce=True
        openrlhf.set_watch(w)
        openrlhf.wrap_policy_loss(PolicyLoss)
        logp, old, adv, mask = inputs(rank)
        PolicyLoss()(logp, old, adv, action_mask=mask)  # no Actor.forward(return_entropy=True): no entropy
        res = openrlhf.record_policy_loss(PolicyLoss(), logp, old, adv, mask)  # what the wrap recorded, again
        w.close()
        dist.destroy_process_group()
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(res, f)
        """
    )
)
NAMES = (M.CLIP_ONPOLICY, M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.CLIP_REGION_FRAC, M.ADV_MEAN, M.ADV_STD, M.ADV_MIN,
         M.ADV_MAX, M.RATIO_LOG_MEAN)  # fmt: skip


@pytest.mark.dist
def test_without_entropy_the_clip_and_advantages_are_reduced_over_the_ranks(tmp_path: Path) -> None:
    """Before: rank 0 wrote its own on-policy numbers (clip/onpolicy 1, clip low 0, advantages > 0) for a step whose
    rank 1 was off-policy with clip-low binding."""
    run_ranks(WORKER, tmp_path, 2, hung="the ranks hung: their collectives did not match")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    scope: dict = {"torch": torch}
    exec(INPUTS, scope)
    both = [torch.cat(t) for t in zip(*(scope["inputs"](r) for r in range(2)), strict=True)]
    logp, old, adv, mask = both  # the concatenated batch of both ranks, reduced in one process (float64 sums)
    want, _ = finalize(
        token_sums(prepare_batch(torch.zeros_like(logp), mask, logp, old, adv), entropy_bin_edges(30), eps_high=0.28),
        entropy_bin_edges(30),
    )
    assert want[M.CLIP_ONPOLICY] == 0.0 and want[M.CLIP_LOW_FRAC] > 0 and want[M.ADV_MIN] < 0 < want[M.ADV_MAX]
    for got in ranks:
        assert {k: got.get(k) for k in NAMES} == {k: pytest.approx(want[k], rel=1e-6, abs=1e-9) for k in NAMES}
        assert M.ENTROPY_MEAN not in got and M.TOKENS_COUNT not in got
    from entropy_watch.store import Store

    store = Store(tmp_path / "s")
    assert store.series("orl", M.CLIP_ONPOLICY)[1].tolist() == [0.0, 0.0]
    assert store.series("orl", M.ENTROPY_MEAN)[0].tolist() == [] and not os.path.isdir(
        tmp_path / "s" / "orl" / "rank=1"
    )
