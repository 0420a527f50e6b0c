"""Verdicts that are not sums, across ranks: an unknown on-policy verdict (``old_logp`` left out on one rank) and an
adapter's own verdict (TRL's sequence-level ratio) reach the writing rank; and TRL's hook stops claiming the names an
input it left out was needed for, so TRL's logged values fill them."""

from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from entropy_watch import metrics as M

from ..gloo_ranks import run_ranks
from ..integrations.test_trl_seams import LOGGED, GRPOTrainer, batch, series

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist
    from entropy_watch import metrics as M
    from entropy_watch.hooks.accumulate import TRL_MIRRORED, StepAccumulator
    from entropy_watch.hooks.watch import Watch

    rank, out = int(os.environ["RANK"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=2)
    w = Watch("v", store=os.path.join(out, "s"), flush_secs=60, vocab_size=40)
    acc = StepAccumulator(w, mirror=TRL_MIRRORED)
    g = torch.Generator().manual_seed(rank)
    ent, lp = torch.rand(2, 5, generator=g) * 3, -torch.rand(2, 5, generator=g)
    res = {}
    # 1: rank 1's old_logp is (B, 1), left out; rank 0's tokens are on-policy
    acc.add(ent, None, step=1, logp=lp, old_logp=lp if rank == 0 else lp[:, :1])
    res["left_out"] = acc.flush(1).get(M.CLIP_ONPOLICY)
    # 2: the same, and rank 0's tokens are off-policy: known 0
    acc.add(ent, None, step=2, logp=lp, old_logp=lp - 0.5 if rank == 0 else lp[:, :1])
    res["left_out_off"] = acc.flush(2).get(M.CLIP_ONPOLICY)
    # 3: the adapter's own verdict (TRL's sequence-level ratio) is off-policy on rank 1 only
    acc.add(ent, None, step=3, logp=lp, old_logp=lp, extra={M.CLIP_ONPOLICY: float(rank == 0)})
    res["extra_off"] = acc.flush(3).get(M.CLIP_ONPOLICY)
    # 4: the sums' own path: rank 1 notes that its old_logp was left out (what Watch.log_tokens knows)
    try:
        from entropy_watch.hooks.stats import finalize, note_verdicts, reduce_sums, token_sums
        from entropy_watch.hooks.token_batch import prepare_batch

        sums = token_sums(prepare_batch(ent, None, lp, lp if rank == 0 else None), w._edges)
        res["sums"] = finalize(reduce_sums(note_verdicts(sums, unknown=rank == 1)), w._edges)[0].get(M.CLIP_ONPOLICY)
    except ImportError as exc:  # no note_verdicts
        res["sums"] = str(exc)
        dist.barrier()
    # 5: nothing unknown: on-policy everywhere reads 1 (the test can tell)
    acc.add(ent, None, step=5, logp=lp, old_logp=lp, extra={M.CLIP_ONPOLICY: 1.0})
    res["on"] = acc.flush(5).get(M.CLIP_ONPOLICY)
    w.close()
    dist.destroy_process_group()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    """
)


@pytest.mark.dist
def test_a_verdict_made_on_one_rank_reaches_every_rank(tmp_path) -> None:
    """Before: each verdict stayed on the rank that made it, so rank 0 (the writer) stored clip/onpolicy = 1 for a step
    whose rank 1 had its old log-probs left out, or read its sequence-level ratio off-policy."""
    run_ranks(WORKER, tmp_path, 2, hung="the ranks hung: their collectives did not match")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    want = {"left_out": None, "left_out_off": 0.0, "extra_off": 0.0, "sums": None, "on": 1.0}
    assert ranks == [want, want]


def _train(trainer: Any, tmp_path: Any, inputs: dict[str, Any], steps: int = 2) -> Any:
    """``attach`` (not strict: a left-out input is counted), then ``steps`` optimizer steps: loss, step end, log."""
    from entropy_watch.hooks.trl import attach

    handle = attach(trainer, run="seam", store=tmp_path / "store", flush_secs=0.05)
    cb, ctl = handle.callback, SimpleNamespace()
    for _ in range(steps):
        trainer.compute_loss(trainer.model, inputs)
        trainer.state.global_step += 1
        cb.on_step_end(trainer.args, trainer.state, ctl)
        cb.on_log(trainer.args, trainer.state, ctl, logs={**LOGGED, "adv_mean": 0.125})
    handle.close()
    return handle


@pytest.mark.parametrize("left_out", ["advantages", "old_per_token_logps", None])
def test_trl_names_an_input_was_left_out_of_are_filled_by_trls_logs(tmp_path, left_out: str | None) -> None:
    """A mismatched input costs the per-token layer its own statistics; before, the hook still claimed their names,
    so TRL's logged clip ratios (and a logged advantage mean) were dropped and the store had none at those steps."""
    inputs = batch(old=torch.full((2, 3), -1.3), adv=(1.0, -1.0))  # the stand-in's log-probs are -1: ratio e^0.3
    if left_out is not None:
        inputs[left_out] = inputs[left_out][:1]  # one row for two sequences
    handle = _train(GRPOTrainer(tmp_path), tmp_path, inputs)
    assert handle.watch.errors == (2 if left_out else 0)
    clip, adv = series(tmp_path, M.CLIP_HIGH_FRAC), series(tmp_path, M.ADV_MEAN)
    assert series(tmp_path, M.ENTROPY_MEAN) == {1: 0.5, 2: 0.5}  # the per-token layer's entropy stands
    if left_out is None:  # recomputed: the one positive-advantage sequence clips high; adv from the tokens
        assert clip == {1: 0.5, 2: 0.5} and adv == {1: 0.0, 2: 0.0}
    else:
        assert clip == {1: LOGGED["clip_ratio/high_mean"], 2: LOGGED["clip_ratio/high_mean"]}
        assert adv == ({1: 0.125, 2: 0.125} if left_out == "advantages" else {1: 0.0, 2: 0.0})
