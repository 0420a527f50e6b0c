"""``StepAccumulator.add`` (the TRL and OpenRLHF adapters' path) follows ``Watch.log_tokens``'s rule for an optional
input that does not fit the entropy (``token_batch.drop_unusable``): the micro-batch is recorded without it and one
failure is counted; a step with ``old_logp`` left out of a micro-batch is never called on-policy."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.errors import InvalidTensor
from entropy_watch.hooks.accumulate import TRL_MIRRORED, StepAccumulator
from entropy_watch.hooks.token_batch import LeftOut

from ..gloo_ranks import run_ranks

V = 40


def _micro(seed: int, b: int = 2, t: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t)
    mask[0, t - 2 :] = 0
    logp = -torch.rand(b, t, generator=g)
    return {
        "entropy": torch.rand(b, t, generator=g) * 3,
        "mask": mask,
        "logp": logp,
        "adv": torch.randn(b, generator=g),
    }


def _watch(tmp_path, **kw):
    from entropy_watch.hooks.watch import Watch

    return Watch("acc", store=str(tmp_path / "s"), flush_secs=60, vocab_size=V, reduce=False, **kw)


def test_a_mismatched_advantages_costs_its_micro_batch_only_the_advantage_statistics(tmp_path, caplog):
    w = _watch(tmp_path)
    acc = StepAccumulator(w)
    a, b = _micro(1), _micro(2)
    acc.add(a["entropy"], a["mask"], step=1, logp=a["logp"], advantages=a["adv"])
    acc.add(b["entropy"], b["mask"], step=1, logp=b["logp"], advantages=torch.rand(3))  # 3 rows for 2 sequences
    assert acc.pending == 2  # was 0 more: add raised InvalidTensor and the micro-batch's entropy was lost
    assert w.errors == 1
    assert "advantages has shape (3,)" in caplog.text
    scalars = acc.flush(1)
    ent = torch.cat([m["entropy"][m["mask"].bool()] for m in (a, b)]).double()
    assert scalars[M.TOKENS_COUNT] == ent.numel()
    assert scalars[M.ENTROPY_MEAN] == pytest.approx(float(ent.mean()), rel=1e-6)
    adv_a = a["adv"][:, None].expand(2, 5)[a["mask"].bool()].double()  # the first micro-batch's advantages alone
    assert scalars[M.ADV_MEAN] == pytest.approx(float(adv_a.mean()), rel=1e-6)
    w.close()


def _onpolicy(tmp_path, first_off: bool, left_out: bool) -> dict[str, float]:
    w = _watch(tmp_path)
    acc = StepAccumulator(w, mirror=TRL_MIRRORED)
    a, b = _micro(3), _micro(4)
    acc.add(a["entropy"], a["mask"], step=1, logp=a["logp"], old_logp=a["logp"] - (0.5 if first_off else 0.0))
    old_b = b["logp"][:, :1] if left_out else b["logp"]  # (B, 1): not a per-token old log-prob
    acc.add(b["entropy"], b["mask"], step=1, logp=b["logp"], old_logp=old_b, extra={M.CLIP_ONPOLICY: 1.0})
    assert w.errors == int(left_out)
    out = acc.flush(1)
    w.close()
    return out


def test_old_logp_left_out_of_one_micro_batch_is_never_on_policy(tmp_path):
    assert _onpolicy(tmp_path / "a", first_off=False, left_out=False)[M.CLIP_ONPOLICY] == 1.0  # the test can tell
    assert M.CLIP_ONPOLICY not in _onpolicy(tmp_path / "b", first_off=False, left_out=True)  # unknown: N/A
    assert _onpolicy(tmp_path / "c", first_off=True, left_out=True)[M.CLIP_ONPOLICY] == 0.0  # known off-policy


def test_strict_raises_left_out_after_recording_and_an_adapter_guard_counts_it_once(tmp_path):
    w = _watch(tmp_path, strict=True)
    acc = StepAccumulator(w)
    a = _micro(5)
    with pytest.raises(LeftOut) as info:
        acc.add(a["entropy"], a["mask"], step=1, logp=a["logp"], token_ids=torch.rand(2, 5))  # float ids
    assert acc.pending == 1 and w.errors == 1
    with pytest.raises(LeftOut):
        w.failure("trl.loss_forward", info.value)  # the TRL/OpenRLHF guards hand it on: counted already
    assert w.errors == 1
    assert acc.flush(1)[M.TOKENS_COUNT] == float(a["mask"].sum())
    with pytest.raises(InvalidTensor):  # an unusable entropy still refuses the micro-batch
        acc.add(torch.ones(2, 5, dtype=torch.long), a["mask"], step=2)
    assert acc.pending == 0
    w.close()


WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist
    from entropy_watch.hooks.accumulate import StepAccumulator
    from entropy_watch.hooks.watch import Watch

    rank, out = int(os.environ["RANK"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=2)
    w = Watch("g", store=os.path.join(out, "s"), flush_secs=60, vocab_size=40)
    acc = StepAccumulator(w)
    g = torch.Generator().manual_seed(rank)
    ent, adv = torch.rand(2, 5, generator=g) * 3, torch.randn(2, generator=g)
    acc.add(ent, torch.ones(2, 5), step=1, advantages=adv if rank == 0 else torch.rand(3))  # rank 1's: 3 rows
    acc.add(ent + 1, torch.ones(2, 5), step=1, advantages=adv)
    scalars = acc.flush(1)
    errors = w.errors
    w.close()
    dist.destroy_process_group()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"scalars": scalars, "errors": errors, "ent": ent.tolist(), "adv": adv.tolist()}, f)
    """
)


@pytest.mark.slow
def test_a_rank_leaving_out_advantages_keeps_the_collectives_matched(tmp_path):
    run_ranks(WORKER, tmp_path, 2, hung="the ranks hung: their collectives did not match")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["errors"] for r in ranks] == [0, 1]
    ent = torch.cat([torch.tensor(r["ent"]) + k for r in ranks for k in (0, 1)]).double()
    adv = [torch.tensor(r["adv"]).double().repeat_interleave(5) for r in ranks]
    adv_mean = float(torch.cat([adv[0], adv[0], adv[1]]).mean())  # rank 1's first micro-batch has none
    for r in ranks:  # every rank reads the same reduced step
        assert r["scalars"][M.TOKENS_COUNT] == 40.0  # was 30: rank 1's first micro-batch was refused whole
        assert r["scalars"][M.ENTROPY_MEAN] == pytest.approx(float(ent.mean()), rel=1e-6)
        assert r["scalars"][M.ADV_MEAN] == pytest.approx(adv_mean, rel=1e-6, abs=1e-9)
