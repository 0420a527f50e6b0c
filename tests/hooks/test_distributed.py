"""step_stats under torch.distributed: two real gloo processes give the numbers of the concatenated batch.

The ranks run as subprocesses (rendezvous through a file), each writes its StepStats as JSON; the test compares
them with one single-process step_stats over the whole batch: exact for counts and the histogram, 1e-6 for floats.
The batch is built so that a local computation would be wrong: a prompt group is split across the ranks (equal
advantages on each side, not overall), and only rank 1's tokens are off-policy.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks.distributed import reduction_group
from entropy_watch.hooks.stats import step_stats

from ..gloo_ranks import run_ranks

BUILD = textwrap.dedent(
    """
    import torch

    SPLIT = 4  # rank 0 holds sequences 0..3, rank 1 sequences 4..6

    def build(fully_masked_rank1=False):
        g = torch.Generator().manual_seed(123)
        B, T = 7, 10
        logp = -torch.rand(B, T, generator=g) * 2
        old = logp.clone()
        old[SPLIT:] += torch.randn(B - SPLIT, T, generator=g) * 0.4  # only rank 1 is off-policy
        mask = torch.rand(B, T, generator=g) > 0.2
        if fully_masked_rank1:
            mask[SPLIT:] = False
        return {
            "entropy": torch.rand(B, T, generator=g) ** 2 * 3,
            "mask": mask,
            "logp": logp,
            "old_logp": old,
            "advantages": torch.tensor([1.0, -1.0, 0.5, 0.5, 0.7, -0.2, -0.2]),
            "group_ids": torch.tensor([0, 0, 1, 1, 1, 2, 2]) + 2**62,  # group 1 straddles the ranks; big ids
            "token_ids": torch.arange(B * T).reshape(B, T),
        }
    """
)

WORKER = BUILD + textwrap.dedent(
    """
    import json, os, sys
    import torch.distributed as dist
    from entropy_watch.hooks.stats import step_stats

    rank, out_dir = int(os.environ["RANK"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out_dir, "rdv"), rank=rank, world_size=2)
    results = {}
    for name, kwargs in (("full", {}), ("rank1_masked", {"fully_masked_rank1": True})):
        batch = build(**kwargs)
        part = {k: v[:SPLIT] if rank == 0 else v[SPLIT:] for k, v in batch.items()}
        s = step_stats(**part, dual_clip=2.0, sample_tokens=2, step=5)
        results[name] = {"scalars": s.scalars, "hist": s.hist.tolist(), "n": s.n_tokens, "rows": len(s.tokens)}
    part = {k: v[:SPLIT] if rank == 0 else v[SPLIT:] for k, v in build().items()}
    s = step_stats(**part, dual_clip=2.0, sample_tokens=0, process_group=False)
    results["local"] = {"scalars": s.scalars, "hist": s.hist.tolist(), "n": s.n_tokens, "rows": 0}
    dist.barrier()
    dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    """
)


def _build(**kwargs: bool) -> dict[str, torch.Tensor]:
    scope: dict = {}
    exec(BUILD, scope)  # the same batch the workers build
    return scope["build"](**kwargs)


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("gloo")
    run_ranks(WORKER, out, timeout=180)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def _assert_same(got: dict, want_stats, tol: float = 1e-6) -> None:
    assert got["n"] == want_stats.n_tokens
    assert got["hist"] == want_stats.hist.tolist()  # exact
    assert set(got["scalars"]) == set(want_stats.scalars)
    for name, value in want_stats.scalars.items():
        if name in (M.TOKENS_COUNT,):
            assert got["scalars"][name] == value
        else:
            assert got["scalars"][name] == pytest.approx(value, rel=tol, abs=tol), name


@pytest.mark.dist
@pytest.mark.parametrize("case, kwargs", [("full", {}), ("rank1_masked", {"fully_masked_rank1": True})])
def test_two_gloo_ranks_equal_the_concatenated_batch(gloo_results: list[dict], case: str, kwargs: dict):
    whole = step_stats(**_build(**kwargs), dual_clip=2.0, sample_tokens=0, process_group=False)
    for rank in (0, 1):
        _assert_same(gloo_results[rank][case], whole)
    if case == "full":  # the parts of the batch a local computation gets wrong
        assert whole.scalars[M.ADV_FRAC_ZERO_GROUPS] == pytest.approx(1 / 3)  # group 1 is not zero overall; 2 is
        assert whole.scalars[M.CLIP_ONPOLICY] == 0.0 and M.CLIP_LOW_FRAC in whole.scalars
        assert gloo_results[0][case]["rows"] == 4 and gloo_results[1][case]["rows"] == 4  # rows stay per rank
    else:
        assert gloo_results[1][case]["rows"] == 0


@pytest.mark.dist
def test_process_group_false_stays_local(gloo_results: list[dict]):
    batch = _build()
    rank0 = step_stats(**{k: v[:4] for k, v in batch.items()}, dual_clip=2.0, sample_tokens=0, process_group=False)
    _assert_same(gloo_results[0]["local"], rank0)
    assert rank0.scalars[M.ADV_FRAC_ZERO_GROUPS] == 0.5 and rank0.scalars[M.CLIP_ONPOLICY] == 1.0  # local view


def test_no_reduction_without_an_initialised_group():
    assert reduction_group(None) is None and reduction_group(False) is None


WATCH_WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch.distributed as dist
    from entropy_watch.hooks import Watch

    rank, out_dir = int(os.environ["RANK"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out_dir, "rdv"), rank=rank, world_size=2)
    B, T, V = 2 + rank, 5, 16  # the ranks hold different batch sizes
    g = torch.Generator().manual_seed(rank)
    with Watch("refused", store=os.path.join(out_dir, "store")) as w:
        for step in range(4):
            mask = torch.ones(B, T)
            logged_step = step
            if rank == 1 and step == 1:
                mask = torch.ones(B, T + 1)  # refused inside step_stats
            if rank == 1 and step == 2:
                logged_step = -5  # refused before it
            w.log_tokens(logged_step, logits=torch.randn(B, T, V, generator=g), mask=mask,
                         advantages=torch.randn(B, generator=g), group_ids=torch.arange(B) + 10 * rank)
        print("errors", w.errors, flush=True)
    dist.barrier()
    dist.destroy_process_group()
    """
)


@pytest.mark.dist
def test_a_refused_input_on_one_rank_neither_hangs_nor_shifts_the_others(tmp_path: Path):
    """Rank 1's input is refused at steps 1 (a wrong mask: inside step_stats) and 2 (a bad step: before it); it must
    still take part in those steps' collectives, or rank 0 waits forever — or pairs its step 1 with rank 1's step 2.
    """
    outs = run_ranks(WATCH_WORKER, tmp_path, hung="a rank whose input was refused left the others waiting")
    assert "errors 2" in outs[1][0]  # rank 1 counted both refusals ...
    assert outs[1][1].count("log_tokens failed on rank 1") == 1, outs[1][1]  # ... and warned once, naming itself
    from entropy_watch.store import Store

    rows = Store(tmp_path / "store").scalars("refused", names=[M.TOKENS_COUNT]).to_pylist()
    counts = {r["step"]: r["value"] for r in rows}
    both, rank0 = (2 + 3) * 5, 2 * 5
    assert counts == {0: both, 1: rank0, 2: rank0, 3: both}


def test_a_trl_micro_batch_refused_before_the_accumulator_still_joins_its_collectives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRL's loss-forward wrap reads the trainer's inputs before the accumulator sees them; when that fails on one
    rank (a missing key), the rank must still take part in the micro-batch's collectives, once — not twice when the
    accumulator itself refused and joined already."""
    import types

    import entropy_watch.hooks.stats as stats_mod
    from entropy_watch.hooks import Watch
    from entropy_watch.hooks.accumulate import StepAccumulator
    from entropy_watch.hooks.trl import LOGPS_METHOD, TrlHandle, _install_wraps

    joins: list[object] = []
    monkeypatch.setattr(stats_mod, "join_refused", lambda edges, group, like=None: joins.append(like))
    entropies = torch.rand(2, 3)

    class Trainer:
        model = types.SimpleNamespace(training=True)
        state = types.SimpleNamespace(global_step=0)
        args = types.SimpleNamespace(delta=None)
        epsilon_low = epsilon_high = 0.2

        def compute_loss(self, model, inputs):
            return getattr(self, LOGPS_METHOD)()

    setattr(Trainer, LOGPS_METHOD, lambda self: (-torch.rand(2, 3), entropies))
    with Watch("trl-refused", store=tmp_path, vocab_size=16) as watch:
        watch.reduce = True  # as under torch.distributed (the collectives themselves are stubbed above)
        trainer = Trainer()
        handle = TrlHandle(trainer=trainer, watch=watch, callback=None, mode="per-token")
        handle.accumulator = StepAccumulator(watch, vocab_size=16)
        _install_wraps(handle, strict=False)
        trainer.compute_loss(None, {"no_completion_mask": 1})  # refused in the wrap: KeyError before add()
        assert joins == [entropies] and watch.errors == 1
        bad_mask = {"completion_mask": torch.ones(2, 4)}  # refused inside add(): it joins itself, not the wrap again
        trainer.compute_loss(None, bad_mask)
        assert len(joins) == 2 and watch.errors == 2


SHIFTED_WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch.distributed as dist
    from entropy_watch.hooks import Watch

    rank, out_dir = int(os.environ["RANK"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out_dir, "rdv"), rank=rank, world_size=2)
    B, T, V = 2 + rank, 5, 16
    g = torch.Generator().manual_seed(rank)
    with Watch("shifted", store=os.path.join(out_dir, "store")) as w:
        for step in range(4):
            logged_step = 33 if (rank == 1 and step == 1) else step  # a rank-local counter that drifted
            w.log_tokens(logged_step, logits=torch.randn(B, T, V, generator=g), mask=torch.ones(B, T))
        print("errors", w.errors, flush=True)
    dist.barrier()
    dist.destroy_process_group()
    """
)


@pytest.mark.dist
def test_ranks_logging_different_steps_together_are_refused_not_paired(tmp_path: Path):
    """Rank 1 logs step 33 where rank 0 logs step 1 (both call, in lockstep): the collective pairs two different
    steps. Neither rank may record rank 1's tokens under rank 0's step 1 (CONTRACTS: "no step pairs with another"):
    both refuse that step with one warning, count it, and the steps around it are the union as before."""
    outs = run_ranks(SHIFTED_WORKER, tmp_path, hung="ranks logging different steps hung")
    assert "errors 1" in outs[0][0] and "errors 1" in outs[1][0], outs
    assert outs[1][1].count("different steps") == 1, outs[1][1]
    from entropy_watch.store import Store

    rows = Store(tmp_path / "store").scalars("shifted", names=[M.TOKENS_COUNT]).to_pylist()
    both = (2 + 3) * 5
    assert {r["step"]: r["value"] for r in rows} == {0: both, 2: both, 3: both}
