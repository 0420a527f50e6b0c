"""``Watch.log_tokens`` across ranks and under the logit budget: an unknown on-policy verdict made on one rank reaches
the writer; ranks that sampled different shares of their tokens are pooled by their true counts (checked against a
float64 reference over every token); tensors gathered across ranks before ``log_tokens`` are warned about."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.store import Store

from ..gloo_ranks import run_ranks

V = 32
K = 50  # tokens rank 0 samples: the budget is K * V logits a call
MAKE_LOGITS = textwrap.dedent(
    """
    def make_logits(rank):  # rank 0: 300 tokens, low entropy; rank 1: 20 near-uniform ones (ln 32 = 3.47 nats)
        g = torch.Generator().manual_seed(100 + rank)
        if rank == 0:
            return torch.randn(1, 300, 32, generator=g) * 6.0
        return torch.randn(1, 20, 32, generator=g) * 0.1
    """
)
WORKER = (
    "import json, os, sys\nimport torch, torch.distributed as dist\n"
    + MAKE_LOGITS
    + textwrap.dedent(
        """
        from entropy_watch import metrics as M
        from entropy_watch.hooks.watch import Watch

        rank, out = int(os.environ["RANK"]), sys.argv[1]
        dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=2)
        w = Watch("p", store=os.path.join(out, "s"), flush_secs=60, vocab_size=32, sample_tokens=0,
                  max_logits_per_call=50 * 32)
        g = torch.Generator().manual_seed(rank)
        ent, lp = torch.rand(2, 5, generator=g) * 3, -torch.rand(2, 5, generator=g)
        res = {}
        # 1: rank 1's old_logp is (B, 1), left out; rank 0's tokens are on-policy: unknown, not 1
        s = w.log_tokens(1, entropy=ent, logp=lp, old_logp=lp if rank == 0 else lp[:, :1])
        res["left_out"] = s.get(M.CLIP_ONPOLICY)
        s = w.log_tokens(2, entropy=ent, logp=lp, old_logp=lp)  # known on-policy on both: 1
        res["on"] = s.get(M.CLIP_ONPOLICY)
        # 3: rank 0 samples 50 of its 300 tokens (budget), rank 1 computes its 20
        s = w.log_tokens(3, logits=make_logits(rank))
        res["budget"] = {k: s.get(k) for k in (M.TOKENS_COUNT, M.ENTROPY_MEAN, M.HOOKS_ENTROPY_SAMPLE)}
        # 4: the same (gathered) tensors on both ranks
        w.log_tokens(4, entropy=torch.full((4, 5), 1.5))
        w.close()
        dist.destroy_process_group()
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(res, f)
        """
    )
)


def _entropy64(logits: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits.double(), -1)
    return -(p * p.clamp_min(1e-300).log()).sum(-1).reshape(-1)


@pytest.mark.dist
def test_watch_path_across_ranks_verdicts_budget_and_gathered_tensors(tmp_path: Path) -> None:
    """Before: rank 0 stored clip/onpolicy = 1 for a step whose rank 1 had its old log-probs left out; the budget's
    sample weighted rank 0's 50 sampled tokens like rank 1's 20 (tokens/count 70, not 320; the mean 10 standard errors
    off); gathered tensors were counted twice without a word."""
    outs = run_ranks(WORKER, tmp_path, 2, hung="the ranks hung: their collectives did not match")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["left_out"] for r in ranks] == [None, None] and [r["on"] for r in ranks] == [1.0, 1.0]
    assert Store(tmp_path / "s").series("p", M.CLIP_ONPOLICY)[0].tolist()[:1] == [2], "step 1's is not stored"

    scope: dict = {"torch": torch}
    exec(MAKE_LOGITS, scope)  # the worker's logits, rebuilt here
    e0, e1 = (_entropy64(scope["make_logits"](r)) for r in range(2))
    truth = float(torch.cat([e0, e1]).mean())
    # rank 0's sum is 300/50 times the sum of 50 of its 300 tokens drawn without replacement: the estimate's standard
    # error is (300/320) * std(e0) / sqrt(50) * sqrt(1 - 50/300) (finite population); the sample is seeded (the step)
    se = (300 / 320) * float(e0.std()) / math.sqrt(K) * math.sqrt(1 - K / 300)
    for r in ranks:
        got = r["budget"]
        assert got[M.TOKENS_COUNT] == 320.0, "every valid token of both ranks is counted"
        assert got[M.HOOKS_ENTROPY_SAMPLE] == pytest.approx((K + 20) / 320), "the share computed, both ranks"
        assert abs(got[M.ENTROPY_MEAN] - truth) < 4 * se, (got, truth, se)

    for _, err in outs:
        assert err.count("count every token 2 times") == 1 and "same 20 tokens at step 4" in err, err


def _batch(T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, T, V, generator=g) * torch.rand(2, T, 1, generator=g) * 6
    return logits, (torch.rand(2, T, generator=g) > 0.25).float()


@pytest.mark.parametrize("async_stats", [False, True])
def test_a_sampled_step_counts_every_valid_token(tmp_path: Path, async_stats: bool) -> None:
    """One process: tokens/count is the batch's valid tokens (was the sample's K), and the mean is the sample's."""
    logits, mask = _batch(200, 3)
    n_valid = int(mask.sum())
    with Watch("b", store=tmp_path, async_stats=async_stats, max_logits_per_call=K * V, sample_tokens=0) as w:
        w.log_tokens(0, logits=logits, mask=mask)
    store = Store(tmp_path)
    assert store.series("b", M.TOKENS_COUNT)[1].tolist() == [n_valid]
    assert store.series("b", M.HOOKS_ENTROPY_SAMPLE)[1].tolist() == [pytest.approx(K / n_valid)]
    sampled = torch.randperm(n_valid, generator=torch.Generator().manual_seed(0))[:K]
    ref = float(_entropy64(logits)[mask.reshape(-1).bool()][sampled].mean())  # the same seeded draw (step 0)
    assert store.series("b", M.ENTROPY_MEAN)[1].tolist() == [pytest.approx(ref, abs=1e-5)]
