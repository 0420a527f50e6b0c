"""step_stats against explicit Python loops: entropy distribution, clip fractions, advantages, covariance terms,
zero-variance groups, on-policy detection, masking, non-finite tokens, sampled rows and device-to-host traffic."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.errors import InvalidTensor
from entropy_watch.histogram import bin_index, entropy_bin_edges
from entropy_watch.hooks.entropy import token_entropy
from entropy_watch.hooks.stats import N_SLOTS, ONPOLICY_LOG_RATIO_TOL, finalize, step_stats, token_sums
from entropy_watch.hooks.token_batch import prepare_batch

EDGES = entropy_bin_edges(50_000)


def make_batch(seed: int = 0, B: int = 6, T: int = 9, per_token_adv: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    entropy = torch.rand(B, T, generator=g) ** 3 * 4.0  # many low values, a tail
    entropy[0, :3] = 0.0
    logp = -torch.rand(B, T, generator=g) * 3.0
    old = logp + torch.randn(B, T, generator=g) * 0.3
    adv = torch.randn(B, T, generator=g) if per_token_adv else torch.randn(B, generator=g)
    adv_seq = adv if per_token_adv else adv
    if not per_token_adv:
        adv_seq[2] = adv_seq[3] = 0.5  # group 1 = sequences 2, 3: zero variance
    mask = torch.rand(B, T, generator=g) > 0.25
    return {
        "entropy": entropy,
        "mask": mask,
        "logp": logp,
        "old_logp": old,
        "advantages": adv_seq,
        "group_ids": torch.tensor([0, 0, 1, 1, 2, 2])[:B],
    }


def reference(b: dict[str, torch.Tensor], eps_low: float = 0.2, eps_high: float = 0.2, c: float = 3.0) -> dict:
    """Every statistic with explicit loops over the valid tokens (float64 Python arithmetic)."""
    B, T = b["entropy"].shape
    toks = []
    for i in range(B):
        for j in range(T):
            if not bool(b["mask"][i, j]):
                continue
            a = b["advantages"][i, j] if b["advantages"].dim() == 2 else b["advantages"][i]
            toks.append(
                {
                    "h": float(b["entropy"][i, j]),
                    "lp": float(b["logp"][i, j]),
                    "old": float(b["old_logp"][i, j]),
                    "a": float(a),
                    "g": int(b["group_ids"][i]),
                }
            )
    n = len(toks)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    hs = [t["h"] for t in toks]
    lps = [t["lp"] for t in toks]
    advs = [t["a"] for t in toks]
    # ratio in fp32 like TRL's coef_1
    ratios = [float(torch.exp(torch.tensor(t["lp"]) - torch.tensor(t["old"]))) for t in toks]
    groups: dict[int, list[float]] = {}
    for t in toks:
        groups.setdefault(t["g"], []).append(t["a"])
    out = {
        M.TOKENS_COUNT: n,
        M.ENTROPY_MEAN: mean(hs),
        M.ENTROPY_FRAC_LOW: sum(h < 0.01 for h in hs) / n,
        M.ENTROPY_FRAC_HIGH: sum(h > 0.672 for h in hs) / n,
        M.ENTROPY_SAMPLED_NLL: mean([-x for x in lps]),
        M.ADV_MEAN: mean(advs),
        M.ADV_STD: math.sqrt(mean([(a - mean(advs)) ** 2 for a in advs])),
        M.ADV_MIN: min(advs),
        M.ADV_MAX: max(advs),
        M.ADV_FRAC_ZERO_GROUPS: sum(max(v) == min(v) for v in groups.values()) / len(groups),
        M.COV_LOGP_ADV: mean([(lp - mean(lps)) * (a - mean(advs)) for lp, a in zip(lps, advs, strict=True)]),
        M.COV_PG_DRIVE: mean([math.exp(t["lp"]) * (t["lp"] + t["h"]) * t["a"] for t in toks]),
        M.RATIO_LOG_MEAN: mean([t["lp"] - t["old"] for t in toks]),
        M.RATIO_MAX: max(math.exp(t["lp"] - t["old"]) for t in toks),
        M.KL_OLD: mean([math.exp(t["lp"] - t["old"]) - 1 - (t["lp"] - t["old"]) for t in toks]),
        M.CLIP_ONPOLICY: 0.0,
        M.CLIP_LOW_FRAC: sum(t["a"] < 0 and r < 1 - eps_low for t, r in zip(toks, ratios, strict=True)) / n,
        M.CLIP_HIGH_FRAC: sum(t["a"] > 0 and r > 1 + eps_high for t, r in zip(toks, ratios, strict=True)) / n,
        M.CLIP_DUAL_FRAC: sum(t["a"] < 0 and r > c for t, r in zip(toks, ratios, strict=True)) / n,
    }
    out[M.CLIP_REGION_FRAC] = out[M.CLIP_LOW_FRAC] + out[M.CLIP_HIGH_FRAC]
    return out


def assert_scalars_close(got: dict[str, float], want: dict[str, float], tol: float = 1e-6) -> None:
    for name, value in want.items():
        assert name in got, name
        assert got[name] == pytest.approx(value, rel=tol, abs=tol), name


@pytest.mark.parametrize("per_token_adv", [False, True])
def test_scalars_match_python_loops(per_token_adv: bool):
    b = make_batch(per_token_adv=per_token_adv)
    b["old_logp"][1, 2] = b["logp"][1, 2] - 2.0  # ratio e^2 > c = 3 with A < 0: dual clip
    b["old_logp"][1, 3] = b["logp"][1, 3] + 1.0  # ratio 1/e < 1 - eps_low with A < 0: clip low
    b["mask"][1, 2:4] = True
    if per_token_adv:
        b["advantages"][1, 2:4] = -1.0
    else:
        b["advantages"][1] = -1.0
    s = step_stats(**b, dual_clip=3.0, edges=EDGES, sample_tokens=0)
    want = reference(b)
    assert_scalars_close(s.scalars, want)
    assert s.n_tokens == want[M.TOKENS_COUNT] == int(b["mask"].sum())
    assert s.scalars[M.ENTROPY_NONFINITE_FRAC] == 0.0
    assert s.scalars[M.CLIP_DUAL_FRAC] > 0 and s.scalars[M.CLIP_HIGH_FRAC] > 0 and s.scalars[M.CLIP_LOW_FRAC] > 0
    assert set(s.scalars) <= set(M.CANONICAL)
    assert s.hist.dtype == np.int64 and s.hist.shape == (len(EDGES),)


def test_histogram_bins_like_numpy_and_quantiles_in_the_true_bin():
    g = torch.Generator().manual_seed(1)
    h = torch.cat(
        [
            torch.zeros(40),  # exact zeros: bin 0
            torch.rand(300, generator=g) * 1e-4,
            torch.exp(torch.randn(900, generator=g) * 2.0 - 1.0),  # decades of spread
            torch.tensor(EDGES[1:20], dtype=torch.float32),  # values on the edges
            torch.tensor([50.0]),  # above the last edge: last bin
        ]
    )
    s = step_stats(h, edges=EDGES, sample_tokens=0)
    want = np.bincount(bin_index(h.double().numpy(), EDGES), minlength=len(EDGES))
    np.testing.assert_array_equal(s.hist, want)
    for name, q in M.ENTROPY_QUANTILES.items():
        exact = torch.quantile(h.double(), q).item()
        assert bin_index(np.array([s.scalars[name]]), EDGES)[0] == bin_index(np.array([exact]), EDGES)[0], name


def test_onpolicy_detection_and_clip_fractions_with_equal_old_logps():
    """Without old log-probs the clip fractions are N/A; with old log-probs equal to the new ones (TRL's first pass
    over a generation batch) they are measured, 0, as TRL logs them, and ``clip/onpolicy`` is 1 within the
    tolerance (float noise of a recomputation), 0 beyond it."""
    b = make_batch()
    no_old = step_stats(b["entropy"], b["mask"], logp=b["logp"], advantages=b["advantages"], edges=EDGES)
    assert no_old.scalars[M.CLIP_ONPOLICY] == 1.0
    assert not {M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.CLIP_REGION_FRAC, M.CLIP_DUAL_FRAC} & set(no_old.scalars)
    assert M.RATIO_LOG_MEAN not in no_old.scalars

    noise = torch.randn(b["logp"].shape, generator=torch.Generator().manual_seed(1)) * ONPOLICY_LOG_RATIO_TOL / 10
    for old in (b["logp"].clone(), b["logp"] + noise):
        s = step_stats(**{**b, "old_logp": old}, dual_clip=3.0, edges=EDGES)
        assert s.scalars[M.CLIP_ONPOLICY] == 1.0
        for name in (M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.CLIP_REGION_FRAC, M.CLIP_DUAL_FRAC):
            assert s.scalars[name] == 0.0, name
    same = step_stats(**{**b, "old_logp": b["logp"].clone()}, edges=EDGES)
    assert same.scalars[M.RATIO_LOG_MEAN] == 0.0 and same.scalars[M.KL_OLD] == 0.0 and same.scalars[M.RATIO_MAX] == 1.0

    off = b["logp"].clone()
    off[~b["mask"]] += 1.0  # differences only on masked-out tokens still count as on-policy
    assert step_stats(**{**b, "old_logp": off}, edges=EDGES).scalars[M.CLIP_ONPOLICY] == 1.0
    i, j = (int(x) for x in b["mask"].nonzero()[0])
    off[i, j] += 10 * ONPOLICY_LOG_RATIO_TOL  # one valid token past the tolerance: off-policy
    assert step_stats(**{**b, "old_logp": off}, edges=EDGES).scalars[M.CLIP_ONPOLICY] == 0.0


def test_masked_positions_are_ignored():
    b = make_batch(seed=3)
    garbage = {k: v.clone() for k, v in b.items()}
    for k in ("entropy", "logp", "old_logp"):
        garbage[k][~b["mask"]] = 1e6
    assert step_stats(**garbage, edges=EDGES, sample_tokens=0).scalars == step_stats(**b, edges=EDGES).scalars


def test_fully_masked_batch_is_a_clean_no_tokens_step():
    b = make_batch()
    b["mask"] = torch.zeros_like(b["mask"])
    s = step_stats(**b, token_ids=torch.zeros(6, 9, dtype=torch.long), edges=EDGES)
    assert s.scalars == {M.TOKENS_COUNT: 0.0} and s.n_tokens == 0 and s.tokens == []
    assert s.hist.shape == (len(EDGES),) and s.hist.sum() == 0
    assert step_stats(torch.zeros(0)).scalars == {M.TOKENS_COUNT: 0.0}


ADV_NAMES = (M.ADV_MEAN, M.ADV_STD, M.ADV_MIN, M.ADV_MAX)


def test_nonfinite_logits_are_counted_and_nothing_else_is_nan():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5, 32, generator=g)
    logits[0, 1, 4] = math.nan
    logits[2, 3, 0] = math.inf
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 4] = False
    ids = torch.randint(0, 32, (3, 5), generator=g)
    entropy, logp = token_entropy(logits, token_ids=ids)
    adv = torch.randn(3, generator=g)
    s = step_stats(entropy, mask, logp=logp, old_logp=logp + 0.1, advantages=adv, token_ids=ids, edges=EDGES)
    assert s.scalars[M.ENTROPY_NONFINITE_FRAC] == pytest.approx(2 / 14)
    assert all(math.isfinite(v) for v in s.scalars.values())
    assert all(math.isfinite(r["entropy"]) and math.isfinite(r["logp"]) for r in s.tokens)
    clean = mask.clone()
    clean[0, 1] = clean[2, 3] = False  # the same step with those tokens masked out
    want = step_stats(entropy, clean, logp=logp, old_logp=logp + 0.1, advantages=adv, edges=EDGES).scalars
    del want[M.ENTROPY_NONFINITE_FRAC]
    # the advantages of those tokens are finite: the advantage statistics keep them (their logits say nothing of A)
    want_adv = step_stats(entropy.nan_to_num(0.0), mask, advantages=adv, edges=EDGES).scalars
    want |= {name: want_adv[name] for name in ADV_NAMES}
    assert_scalars_close(s.scalars, want, tol=1e-12)


def test_a_step_whose_every_entropy_is_nan_writes_a_nan_mean():
    """Diverged logits must reach the analysis' non-finite guard: the mean of no finite entropy is NaN, not absent."""
    nan_all = step_stats(torch.full((2, 3), math.nan), edges=EDGES)
    assert set(nan_all.scalars) == {M.TOKENS_COUNT, M.ENTROPY_NONFINITE_FRAC, M.ENTROPY_MEAN}
    assert nan_all.scalars[M.TOKENS_COUNT] == 0.0 and nan_all.scalars[M.ENTROPY_NONFINITE_FRAC] == 1.0
    assert math.isnan(nan_all.scalars[M.ENTROPY_MEAN])
    masked_out = step_stats(torch.full((2, 3), math.nan), torch.zeros(2, 3), edges=EDGES)
    assert M.ENTROPY_MEAN not in masked_out.scalars  # no valid token at all: nothing to say


def test_nan_advantages_do_not_move_the_entropy_statistics():
    """A zero-variance group divided without an epsilon gives NaN advantages; the entropy is still every token's."""
    g = torch.Generator().manual_seed(9)
    entropy, logp = torch.rand(6, 7, generator=g) * 3, -torch.rand(6, 7, generator=g)
    adv = torch.randn(6, generator=g)
    adv[::2] = math.nan
    s = step_stats(entropy, logp=logp, old_logp=logp - 0.05, advantages=adv, edges=EDGES).scalars
    alone = step_stats(entropy, logp=logp, edges=EDGES).scalars  # the same step without advantages
    for name in (M.ENTROPY_MEAN, M.ENTROPY_FRAC_LOW, M.ENTROPY_FRAC_HIGH, M.ENTROPY_SAMPLED_NLL, M.TOKENS_COUNT):
        assert s[name] == pytest.approx(alone[name], rel=1e-12), name
    assert s[M.ENTROPY_NONFINITE_FRAC] == 0.0
    finite_rows = torch.isfinite(adv)
    sub = step_stats(entropy[finite_rows], logp=logp[finite_rows], old_logp=logp[finite_rows] - 0.05,
                     advantages=adv[finite_rows], edges=EDGES).scalars  # fmt: skip
    for name in (*ADV_NAMES, M.COV_LOGP_ADV, M.COV_PG_DRIVE, M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC):
        assert s[name] == pytest.approx(sub[name], rel=1e-12, abs=1e-15), name
    assert all(math.isfinite(v) for v in s.values())


def test_negative_entropies_are_refused_in_one_line():
    logp = -torch.rand(2, 5) * 3  # log-probs passed as entropy= by mistake
    with pytest.raises(InvalidTensor, match="negative.*not log-probs") as e:
        step_stats(logp, edges=EDGES)
    assert "\n" not in str(e.value)
    tiny = torch.rand(2, 5)
    tiny[0, 0] = -1e-7  # rounding of an entropy computed in low precision: kept
    assert step_stats(tiny, edges=EDGES).scalars[M.TOKENS_COUNT] == 10


def test_zero_variance_groups_by_loop():
    adv = torch.tensor([1.0, 1.0, -0.3, 0.7, 0.0, 0.0, 2.0])  # groups: {0,1} equal, {2,3} not, {4,5} equal, {6}
    groups = torch.tensor([10, 10, 11, 11, 12, 12, 13])
    h = torch.rand(7, 4)
    s = step_stats(h, advantages=adv, group_ids=groups, edges=EDGES)
    by_group: dict[int, set[float]] = {}
    for a, gid in zip(adv.tolist(), groups.tolist(), strict=True):
        by_group.setdefault(gid, set()).add(a)
    assert s.scalars[M.ADV_FRAC_ZERO_GROUPS] == sum(len(v) == 1 for v in by_group.values()) / len(by_group) == 0.75


def test_microbatch_sums_merge_to_the_whole_batch():
    b = make_batch(seed=5)
    whole = step_stats(**b, edges=EDGES, sample_tokens=0).scalars
    halves = [{k: v[sl] for k, v in b.items()} for sl in (slice(0, 3), slice(3, 6))]
    parts = [token_sums(prepare_batch(**h), EDGES) for h in halves]
    merged, hist = finalize(parts[0].merge(parts[1]), EDGES)
    assert_scalars_close(merged, whole, tol=1e-9)
    assert hist.sum() == int(b["mask"].sum())


class FakeTokenizer:
    def decode(self, ids: list[int]) -> str:
        return f"<{ids[0]}>"


def test_sampled_rows_top_entropy_random_and_labels():
    b = make_batch(seed=6)
    b["old_logp"][0, 5] = b["logp"][0, 5] - 1.0  # ratio e: clip-high when A > 0, dual when A < 0 and c < e
    ids = torch.arange(54).reshape(6, 9)
    s = step_stats(**b, token_ids=ids, tokenizer=FakeTokenizer(), dual_clip=2.0, sample_tokens=3, step=7)
    rows = s.tokens
    assert len(rows) == 6 and len({(r["seq"], r["pos"]) for r in rows}) == 6
    valid_h = sorted(b["entropy"][b["mask"]].tolist(), reverse=True)
    assert [r["entropy"] for r in rows[:3]] == pytest.approx(valid_h[:3])
    for r in rows:
        i, j = r["seq"], r["pos"]
        assert bool(b["mask"][i, j]) and r["token_id"] == 9 * i + j and r["token_text"] == f"<{9 * i + j}>"
        assert r["step"] == 7 and r["advantage"] == pytest.approx(float(b["advantages"][i]))
        ratio = math.exp(float(b["logp"][i, j]) - float(b["old_logp"][i, j]))
        a = r["advantage"]
        want = (
            "low"
            if a < 0 and ratio < 0.8
            else "high"
            if a > 0 and ratio > 1.2
            else "dual"
            if a < 0 and ratio > 2
            else ""
        )
        assert r["clipped"] == want
    again = step_stats(**b, token_ids=ids, dual_clip=2.0, sample_tokens=3, step=7).tokens
    assert [(r["seq"], r["pos"]) for r in again] == [(r["seq"], r["pos"]) for r in rows]  # seeded by step
    others = [step_stats(**b, sample_tokens=3, step=k).tokens for k in range(8, 12)]
    assert any([(r["seq"], r["pos"]) for r in o[3:]] != [(r["seq"], r["pos"]) for r in rows[3:]] for o in others)
    bare = step_stats(b["entropy"], sample_tokens=2).tokens[0]
    assert bare["token_id"] == -1 and bare["token_text"] == "" and bare["logp"] is None and bare["advantage"] is None


def test_only_small_tensors_cross_to_the_host():
    """Count every device-to-host read during step_stats: one packed vector plus the sampled rows."""
    reads: list[int] = []

    class HostReads(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            if func in (torch.Tensor.cpu, torch.Tensor.item, torch.Tensor.tolist):  # .numpy() needs a CPU tensor
                reads.append(args[0].numel())
            return func(*args, **(kwargs or {}))

    b = make_batch(seed=7, B=6, T=400)
    b["group_ids"] = None
    with HostReads():
        step_stats(**b, edges=EDGES, sample_tokens=0)
    assert len(reads) == 1 and reads[0] <= N_SLOTS + len(EDGES) + 8, reads
    reads.clear()
    with HostReads():
        step_stats(**b, edges=EDGES, sample_tokens=4)
    assert len(reads) == 2 and max(reads) <= N_SLOTS + len(EDGES) + 8, reads


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"entropy": torch.ones(2, 3, 4)}, "entropy must be"),
        ({"entropy": torch.ones(2, 3), "mask": torch.ones(3, 2)}, "mask has shape"),
        ({"entropy": torch.ones(2, 3), "advantages": torch.ones(3)}, "advantages has shape"),
        ({"entropy": torch.ones(2, 3), "logp": torch.ones(2, 3, dtype=torch.long)}, "logp must be a float"),
        ({"entropy": torch.ones(2, 3), "old_logp": torch.ones(2, 3)}, "old_logp needs logp"),
        ({"entropy": torch.ones(2, 3), "group_ids": torch.ones(2, dtype=torch.long)}, "group_ids needs advantages"),
        ({"entropy": torch.ones(2, 3), "eps_low": -0.1}, "eps_low"),
        ({"entropy": torch.ones(2, 3), "eps_low": math.inf}, "eps_low"),
        ({"entropy": torch.ones(2, 3), "eps_high": math.nan}, "eps_high"),
        ({"entropy": torch.ones(2, 3), "dual_clip": 0.5}, "dual_clip"),
        ({"entropy": torch.ones(2, 3), "edges": np.array([1.0, 2.0])}, "edges"),
    ],
)
def test_bad_input_is_a_one_line_error(kwargs: dict, match: str):
    with pytest.raises(InvalidTensor, match=match):
        step_stats(**kwargs)
