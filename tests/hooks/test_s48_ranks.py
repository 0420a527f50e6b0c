"""What a multi-rank user finds in the store equals one process's numbers over the ranks' tokens concatenated.

Two and three real gloo ranks log through ``Watch`` (``reduce=True``: rank 0 writes) steps of uneven data: ranks with
different batch sizes and sequence lengths, bf16 inputs on one rank, a prompt group split across ranks, a rank with no
rows, a rank with every token masked, NaN logits on one rank only, NaN advantages / old log-probs on one rank, and a
rank whose step is refused (it joins the collectives with no tokens). Every canonical metric rank 0 stored (entropy
mean, quantiles, fractions, histogram, sampled NLL, advantage moments and extremes, zero-std groups, covariances,
ratio, KL, clip fractions, on-policy verdict, token counts) is compared to a naive float64 reference computed here
with numpy from the same tensors. The reference's only tie to the hooks is the histogram rule
(``histogram.bin_index``) and the canonical quantile-from-histogram reading (``histogram.quantiles_from_hist``).
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.histogram import bin_index, entropy_bin_edges, quantiles_from_hist
from entropy_watch.hooks.stats import ONPOLICY_LOG_RATIO_TOL

from ..gloo_ranks import run_ranks

pytestmark = pytest.mark.dist

V = 16
EPS_LOW, EPS_HIGH, DUAL = 0.2, 0.28, 3.0

BUILD = textwrap.dedent(
    """
    import torch

    STEPS = {1: "uneven", 2: "zero_rows", 3: "all_masked", 4: "nan_logits", 5: "skipped", 6: "nan_inputs"}
    V = 16

    def inputs(world, step, rank):
        # this rank's log_tokens kwargs at ``step``; "step" is the step it logs (a bad one on the skipped rank)
        scenario = STEPS[step]
        odd = rank == 1  # the rank that gets the odd input
        g = torch.Generator().manual_seed(7919 * step + 31 * rank + world)
        B, T = (3, 2, 4)[rank], (6, 9, 4)[rank]
        if scenario == "zero_rows" and odd:
            B = 0
        logp = -torch.rand(B, T, generator=g) * 3
        d = {
            "entropy": torch.rand(B, T, generator=g) ** 2 * 2.5,
            "mask": (torch.rand(B, T, generator=g) > 0.25).float(),
            "logp": logp,
            "old_logp": logp + torch.randn(B, T, generator=g) * 0.6,  # clips low, high and dual
            "advantages": torch.randn(B, generator=g),
            "group_ids": torch.arange(B) // 2 + 5,  # group 5 on every rank: split across them
        }
        d["advantages"][:2] = 0.5  # group 5 reads zero-std only when the ranks' rows are merged
        if scenario == "uneven" and odd:  # bf16 inputs, as a bf16 model gives them
            for k in ("entropy", "logp", "old_logp", "advantages"):
                d[k] = d[k].bfloat16()
        if scenario == "all_masked" and odd:
            d["mask"][:] = 0.0
        if scenario == "nan_logits":  # logits in: the hook computes entropy and log-probs of the sampled tokens
            logits = torch.randn(B, T, V, generator=g) * 2
            if odd:
                logits[0, 1:3] = float("nan")  # diverged on this rank only
            d.pop("entropy")
            d.pop("logp")
            d["logits"] = logits
            d["token_ids"] = torch.randint(0, V, (B, T), generator=g)
            d["old_logp"] = torch.log_softmax(logits.double(), -1).gather(-1, d["token_ids"][..., None])[..., 0].float()
            d["old_logp"] = d["old_logp"] + torch.randn(B, T, generator=g) * 0.6
            d["old_logp"] = torch.nan_to_num(d["old_logp"], nan=-1.0)
        if scenario == "nan_inputs":
            if rank == 0:
                d["advantages"][-1] = float("nan")  # a zero-variance group divided without an epsilon
            if odd:
                d["old_logp"][:, :2] = float("nan")
                d["logp"][0, -1] = float("nan")
        d["step"] = -1 if (scenario == "skipped" and odd) else step
        return d
    """
)

WORKER = BUILD + textwrap.dedent(
    """
    import json, os, sys
    import torch.distributed as dist
    from entropy_watch.hooks import Watch

    rank, world, out = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=world)
    w = Watch("ranks", store=os.path.join(out, "store"), vocab_size=V, sample_tokens=0, flush_secs=60)
    for step in STEPS:
        d = inputs(world, step, rank)
        w.log_tokens(d.pop("step"), eps_low=0.2, eps_high=0.28, dual_clip=3.0, **d)
    errors = w.errors
    w.close()
    dist.destroy_process_group()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"errors": errors}, f)
    """
)


def _inputs(world: int, step: int, rank: int) -> dict:
    scope: dict = {}
    exec(BUILD, scope)  # the tensors the workers build
    return scope["inputs"](world, step, rank)


def _flat(d: dict) -> dict[str, np.ndarray]:
    """One rank's logged tokens as flat float64 arrays (the entropy and log-probs from the logits, in float64)."""
    if "logits" in d:
        lsm = torch.log_softmax(d["logits"].double(), -1)
        d = {**d, "entropy": -(lsm.exp() * lsm).sum(-1), "logp": lsm.gather(-1, d["token_ids"][..., None])[..., 0]}
    B, T = d["entropy"].shape
    out = {}
    for k in ("entropy", "mask", "logp", "old_logp", "advantages", "group_ids"):
        v = d[k]
        v = v[:, None].expand(B, T) if v.dim() == 1 else v
        out[k] = v.reshape(-1).double().numpy() if k != "group_ids" else v.reshape(-1).numpy()
    return out


def reference(world: int, step: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Naive float64 statistics of the step's tokens on every rank that logged it (a refused step's rank: none)."""
    parts = [_inputs(world, step, r) for r in range(world)]
    parts = [_flat(d) for d in parts if d["step"] == step]
    x = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    h, lp, old, a, gid = x["entropy"], x["logp"], x["old_logp"], x["advantages"], x["group_ids"]
    valid = x["mask"] != 0
    ok = valid & np.isfinite(h)
    edges = entropy_bin_edges(V)
    hist = np.bincount(bin_index(h[ok], edges), minlength=len(edges))
    out = {M.TOKENS_COUNT: float(ok.sum()), M.ENTROPY_NONFINITE_FRAC: float(1 - ok.sum() / valid.sum())}
    out[M.ENTROPY_MEAN] = h[ok].mean()
    qs = quantiles_from_hist(hist, edges, list(M.ENTROPY_QUANTILES.values()))
    out |= dict(zip(M.ENTROPY_QUANTILES, map(float, qs), strict=True))
    out[M.ENTROPY_FRAC_LOW] = np.mean(h[ok] < M.LOW_ENTROPY_NATS)
    out[M.ENTROPY_FRAC_HIGH] = np.mean(h[ok] > M.FORKING_ENTROPY_NATS)
    on = valid & np.isfinite(lp)
    out[M.ENTROPY_SAMPLED_NLL] = -lp[on].mean()
    on = valid & np.isfinite(a)
    out |= {M.ADV_MEAN: a[on].mean(), M.ADV_STD: a[on].std(), M.ADV_MIN: a[on].min(), M.ADV_MAX: a[on].max()}
    groups = {g: a[on & (gid == g)] for g in np.unique(gid[on])}
    out[M.ADV_FRAC_ZERO_GROUPS] = np.mean([v.max() == v.min() for v in groups.values()])
    on = valid & np.isfinite(lp) & np.isfinite(a) & np.isfinite(h)
    out[M.COV_LOGP_ADV] = np.mean(lp[on] * a[on]) - lp[on].mean() * a[on].mean()
    out[M.COV_PG_DRIVE] = np.mean(np.exp(lp[on]) * (lp[on] + h[on]) * a[on])
    on = valid & np.isfinite(lp) & np.isfinite(old)
    r = lp[on] - old[on]
    out |= {M.RATIO_LOG_MEAN: r.mean(), M.RATIO_MAX: np.exp(r).max(), M.KL_OLD: np.mean(np.expm1(r) - r)}
    out[M.CLIP_ONPOLICY] = float(np.all(np.abs(r) <= ONPOLICY_LOG_RATIO_TOL))
    on = valid & np.isfinite(lp) & np.isfinite(old) & np.isfinite(a)
    rho, aa = np.exp(lp[on] - old[on]), a[on]
    near = np.abs(np.log(rho)[:, None] - np.log([1 - EPS_LOW, 1 + EPS_HIGH, DUAL])).min()
    assert near > 1e-4, "a token's ratio sits on a clip bound: change the seed"  # float32 vs float64 agree
    low, high = (aa < 0) & (rho < 1 - EPS_LOW), (aa > 0) & (rho > 1 + EPS_HIGH)
    out |= {M.CLIP_LOW_FRAC: low.mean(), M.CLIP_HIGH_FRAC: high.mean(), M.CLIP_REGION_FRAC: (low | high).mean()}
    out[M.CLIP_DUAL_FRAC] = np.mean((aa < 0) & (rho > DUAL))
    return {k: float(v) for k, v in out.items()}, hist, h[ok]


@pytest.fixture(scope="module", params=[2, 3])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, dict]:
    from entropy_watch.store import Store

    world = request.param
    out = tmp_path_factory.mktemp(f"ranks{world}")
    run_ranks(WORKER, out, world, hung="the ranks hung: their collectives did not match")
    errors = [json.loads((out / f"rank{r}.json").read_text())["errors"] for r in range(world)]
    assert errors == [0, 1] + [0] * (world - 2)  # rank 1's refused step, counted there alone
    store = Store(out / "store")
    scalars: dict[int, dict[str, float]] = {}
    for row in store.scalars("ranks").to_pylist():
        assert row["rank"] == 0  # reduce: rank 0 writes for all
        scalars.setdefault(row["step"], {})[row["name"]] = row["value"]
    hists: dict[int, np.ndarray] = {}
    for row in store.table("ranks", "hist").to_pylist():
        hists.setdefault(row["step"], np.zeros(len(entropy_bin_edges(V)), dtype=np.int64))[row["bin"]] += row["count"]
    return world, scalars, hists


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5, 6])
def test_the_stored_step_is_the_concatenated_batch(stored: tuple[int, dict, dict], step: int) -> None:
    world, scalars, hists = stored
    want, want_hist, h = reference(world, step)
    got = {k: v for k, v in scalars[step].items() if not k.startswith("hooks/")}
    assert set(got) == set(want), (sorted(set(got) ^ set(want)), step)
    edges = entropy_bin_edges(V)
    # the logits step's entropies are the hook's fp32 ones: a token within 1e-5 of an edge may bin next door
    near_edge = int((np.abs(h[:, None] / edges[None, 1:] - 1) < 1e-5).sum()) if step == 4 else 0
    assert np.abs(hists[step] - want_hist).sum() <= 2 * near_edge, step
    tol = 1e-5 if step == 4 else 1e-6  # fp32 entropy from logits (every other input is exact in float64)
    for name, value in want.items():
        if name in M.ENTROPY_QUANTILES and near_edge:
            continue
        assert got[name] == pytest.approx(value, rel=tol, abs=tol), (name, step)
