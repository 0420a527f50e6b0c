"""step_stats on three real gloo ranks with uneven inputs: each rank's numbers equal one process's over the ranks'
tokens concatenated (computed here), a rank whose entropies are negative loses only its own tokens, and the ranks
always make the same, few collectives.

Each scenario is one step on three ranks holding different batch sizes and sequence lengths: a prompt group split
across the ranks, off-policy tokens that clip low and high, a rank with every token masked, a rank with no rows, NaN
advantages / log-probs / entropies on one rank, and a rank that passes log-probs as entropies (refused).
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks.stats import step_stats

from ..gloo_ranks import run_ranks

pytestmark = pytest.mark.dist

WORLD = 3

BUILD = textwrap.dedent(
    """
    import torch

    def part(scenario, rank):
        g = torch.Generator().manual_seed(1000 * rank + len(scenario))
        B, T = (2, 3, 4)[rank], (5, 7, 3)[rank]
        logp = -torch.rand(B, T, generator=g) * 2
        d = {
            "entropy": torch.rand(B, T, generator=g) ** 2 * 3,
            "mask": torch.rand(B, T, generator=g) > 0.2,
            "logp": logp,
            "old_logp": logp + torch.randn(B, T, generator=g) * 0.5,  # clips both ways
            "advantages": torch.randn(B, generator=g),
            "group_ids": torch.arange(B) // 2 + 7,  # group 7 on every rank: split across them
        }
        d["advantages"][:2] = 0.25  # group 7 has one advantage everywhere: a zero-std group only when merged
        if scenario == "uneven" and rank == 1:
            d["group_ids"] = d["group_ids"] + 100 * (torch.arange(B) >= 2)  # a group of rank 1 alone
        if scenario == "masked" and rank == 1:
            d["mask"][:] = False
        if scenario == "masked" and rank == 2:
            d = {k: v[:0] for k, v in d.items()}  # no rows at all
        if scenario == "nan" and rank == 1:
            d["advantages"][:] = float("nan")
            d["old_logp"][0] = float("nan")
            d["logp"][1, :2] = float("nan")
        if scenario == "nan" and rank == 2:
            d["entropy"][:] = float("nan")
        if scenario in ("negative", "negative_groups") and rank == 1:
            d["entropy"] = d["logp"] - 0.5  # log-probs passed as entropies: refused on this rank only
            if scenario == "negative_groups":
                d["group_ids"] = d["group_ids"] + 50  # groups only rank 1 holds: not the others' groups
        return d

    SCENARIOS = ("uneven", "masked", "nan", "negative", "negative_groups", "no_groups")

    def inputs(scenario, rank):
        d = part(scenario, rank)
        if scenario == "no_groups":
            d.pop("group_ids")
        return d
    """
)

WORKER = BUILD + textwrap.dedent(
    """
    import json, os, sys
    import torch.distributed as dist
    from entropy_watch.hooks.stats import step_stats

    rank, out_dir = int(os.environ["RANK"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out_dir, "rdv"), rank=rank,
                            world_size=int(os.environ["WORLD_SIZE"]))
    calls = []
    for name in ("all_reduce", "all_gather", "all_gather_into_tensor", "broadcast", "barrier"):
        real = getattr(dist, name)
        setattr(dist, name, lambda *a, _real=real, _name=name, **k: (calls.append(_name), _real(*a, **k))[1])
    results = {}
    for step, scenario in enumerate(SCENARIOS):
        del calls[:]
        try:
            s = step_stats(**inputs(scenario, rank), dual_clip=2.5, sample_tokens=2, step=step)
            results[scenario] = {"scalars": s.scalars, "hist": s.hist.tolist(), "n": s.n_tokens, "calls": list(calls)}
        except Exception as exc:
            results[scenario] = {"error": f"{type(exc).__name__}: {exc}", "calls": list(calls)}
    dist.barrier()
    dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    """
)


def _inputs(scenario: str, rank: int) -> dict[str, torch.Tensor]:
    scope: dict = {}
    exec(BUILD, scope)  # the same tensors the workers build
    return scope["inputs"](scenario, rank)


def _flat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The ranks' tokens as one flat batch (their (B, T) differ): per-sequence inputs repeated over the tokens."""
    out: dict[str, list[torch.Tensor]] = {}
    for d in parts:
        B, T = d["entropy"].shape
        for k, v in d.items():
            out.setdefault(k, []).append((v[:, None].expand(B, T) if v.dim() == 1 else v).reshape(-1))
    return {k: torch.cat(v) for k, v in out.items()}


def _reference(scenario: str, ranks: tuple[int, ...] = tuple(range(WORLD))):
    batch = _flat([_inputs(scenario, r) for r in ranks])
    return step_stats(**batch, dual_clip=2.5, sample_tokens=0, process_group=False)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("gloo3")
    run_ranks(WORKER, out, WORLD, hung="the ranks hung: their collectives did not match")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def _assert_same(got: dict, want) -> None:
    assert "error" not in got, got
    assert got["n"] == want.n_tokens
    assert got["hist"] == want.hist.tolist()  # exact
    assert set(got["scalars"]) == set(want.scalars)
    for name, value in want.scalars.items():
        assert got["scalars"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


@pytest.mark.parametrize("scenario", ["uneven", "masked", "nan", "no_groups"])
def test_every_rank_reads_the_concatenated_batch(ranks: list[dict], scenario: str):
    want = _reference(scenario)
    for r in range(WORLD):
        _assert_same(ranks[r][scenario], want)
    names = set(want.scalars)
    assert {M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.COV_LOGP_ADV, M.ADV_STD, M.ENTROPY_MEAN} <= names
    if scenario != "no_groups":
        assert M.ADV_FRAC_ZERO_GROUPS in names
    if scenario == "nan":  # rank 2's entropies and rank 1's advantages are NaN: left out, nothing NaN written
        assert want.scalars[M.ENTROPY_NONFINITE_FRAC] > 0
        assert want.scalars[M.ADV_MEAN] == pytest.approx(_reference(scenario, (0, 2)).scalars[M.ADV_MEAN])


@pytest.mark.parametrize("scenario", ["negative", "negative_groups"])
def test_negative_entropies_on_one_rank_refuse_that_rank_only(ranks: list[dict], scenario: str):
    """Rank 1 passes log-probs as entropies. It is refused, alone; ranks 0 and 2 keep the step, over their own
    tokens (before: all three refused it, each warning of negative entropies it never had)."""
    assert "negative" in ranks[1][scenario]["error"], ranks[1][scenario]
    want = _reference(scenario, (0, 2))
    for r in (0, 2):
        _assert_same(ranks[r][scenario], want)
    assert ranks[0][scenario]["calls"] == ranks[1][scenario]["calls"]  # the refused rank took part in each one


def test_the_ranks_make_the_same_few_collectives(ranks: list[dict]):
    """Every rank makes the same calls at every step, whatever its input (no rows, all masked, refused): a SUM and
    a MAX all-reduce, and one all-gather only when some rank has advantage groups (before: four, groups or not)."""
    for scenario in ranks[0]:
        calls = [ranks[r][scenario]["calls"] for r in range(WORLD)]
        assert calls[0] == calls[1] == calls[2], (scenario, calls)
    assert ranks[0]["no_groups"]["calls"] == ["all_reduce", "all_reduce"]
    assert ranks[0]["uneven"]["calls"] == ["all_reduce", "all_reduce", "all_gather"]
