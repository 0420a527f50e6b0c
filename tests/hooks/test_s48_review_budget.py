"""``Watch``'s logit budget samples only what needs the logits. Statistics of inputs given for every token (advantages,
group ids, the caller's log-probs) are the batch's: ``adv/frac_zero_groups`` read groups with one sampled token as
zero-variance (analysis/corroborate.py then backed a collapse verdict with it) and ``adv/min|max``/``ratio/max``
were the sample's. A batch whose mask keeps no token is recorded as without the budget. Reference: the same call
without a budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.store import Store

B, T, V = 64, 32, 64
BUDGET = 10 * V  # 10 of the 2048 tokens


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(B, T, generator=g) > 0.2).float()
    old = -torch.rand(B, T, generator=g) * 3
    return {
        "logits": torch.randn(B, T, V, generator=g),
        "mask": mask,
        "advantages": torch.randn(B, generator=g),  # every group of 8 sequences has distinct advantages
        "group_ids": torch.arange(B) // 8,
        "logp": old + torch.randn(B, T, generator=g) * 0.3,
        "old_logp": old,
    }


def _stats(root: Path, budget: int | None, **drop: None) -> dict[str, float]:
    kw = _inputs() | drop
    with Watch(f"b{budget}", store=root, async_stats=False, max_logits_per_call=budget, strict=True) as w:
        return w.log_tokens(1, **{k: v for k, v in kw.items() if v is not None})


def test_groups_and_extremes_are_the_batchs_under_the_budget(tmp_path: Path) -> None:
    exact, sampled = _stats(tmp_path, None), _stats(tmp_path, BUDGET)
    assert sampled[M.HOOKS_ENTROPY_SAMPLE] < 0.01  # the budget sampled
    assert exact[M.ADV_FRAC_ZERO_GROUPS] == 0.0
    assert sampled[M.ADV_FRAC_ZERO_GROUPS] == exact[M.ADV_FRAC_ZERO_GROUPS]  # before: 0.33
    for name in (M.ADV_MIN, M.ADV_MAX, M.RATIO_MAX):  # the caller's log-probs are given for every token
        assert sampled[name] == pytest.approx(exact[name], rel=1e-12), name


def test_ratio_max_is_absent_when_only_the_sample_has_log_probs(tmp_path: Path) -> None:
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    exact = _stats(tmp_path, None, logp=None, token_ids=ids)  # type: ignore[arg-type]
    assert M.RATIO_MAX in exact and M.RATIO_LOG_MEAN in exact
    w = Watch("own", store=tmp_path, async_stats=False, max_logits_per_call=BUDGET, strict=True)
    with w:
        kw = {k: v for k, v in _inputs().items() if k != "logp"}
        sampled = w.log_tokens(1, token_ids=ids, **kw)  # logp from the sampled logits only
    assert M.RATIO_MAX not in sampled  # before: the sample's maximum
    assert M.RATIO_LOG_MEAN in sampled  # a mean is estimated from the sample
    assert sampled[M.ADV_MAX] == exact[M.ADV_MAX]


def test_the_background_worker_reads_the_batchs_groups(tmp_path: Path) -> None:
    kw = _inputs()
    with Watch("a", store=tmp_path, max_logits_per_call=BUDGET) as w:
        w.log_tokens(1, **kw)
        kw["mask"].zero_()  # the caller reuses its buffers once log_tokens returns
        kw["advantages"].zero_()
    exact = _stats(tmp_path, None)
    s = Store(tmp_path)
    assert s.series("a", M.ADV_FRAC_ZERO_GROUPS)[1].tolist() == [exact[M.ADV_FRAC_ZERO_GROUPS]]
    assert s.series("a", M.ADV_MAX)[1].tolist() == pytest.approx([exact[M.ADV_MAX]])


@pytest.mark.parametrize("strict", [True, False])
def test_a_batch_without_valid_tokens_above_the_budget_is_recorded(tmp_path: Path, strict: bool) -> None:
    logits, mask = torch.randn(4, 64, 256), torch.zeros(4, 64)  # a padding-only micro-batch
    out = {}
    for budget in (None, 1024):
        with Watch(f"m{budget}", store=tmp_path, async_stats=False, max_logits_per_call=budget, strict=strict) as w:
            out[budget] = w.log_tokens(1, logits=logits, mask=mask)  # before: ValueError from torch.cat([])
            assert w.errors == 0
    assert out[1024] == out[None] == {M.TOKENS_COUNT: 0.0}
