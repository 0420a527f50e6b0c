"""Watch in custom training loops, on the tensors real loops produce (session 47): low/high precision and masked
vocabularies, every mask dtype and padding layout, views, autograd and inference mode; and inputs of mismatched
shapes, which lose only their own statistics. Every number is compared with a float64 reference computed here."""

from __future__ import annotations

import gc
import logging
import math
import weakref
from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.store import Store

B, T, V, D = 4, 12, 96, 16


class TinyLM(torch.nn.Module):
    """Embedding -> tanh MLP -> vocabulary head: logits (B, T, V) with a real autograd graph behind them."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = torch.nn.Embedding(V, D)
        self.mlp = torch.nn.Linear(D, D)
        self.head = torch.nn.Linear(D, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mlp(self.emb(ids)))) * 4.0


def _ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def _ref_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Naive float64 entropy per row: -sum p log p, with 0 log 0 = 0 for masked (-inf) entries."""
    lp = torch.log_softmax(logits.double() / temperature, -1)
    p = lp.exp()
    return -torch.where(p > 0, p * lp, torch.zeros_like(p)).sum(-1)


def _ref_mean(logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> float:
    return float(_ref_entropy(logits, temperature)[mask.bool()].mean())


def _padding(kind: str) -> torch.Tensor:
    """A (B, T) 0/1 completion mask: right-padded, left-padded, or packed (several samples per row, gaps between)."""
    lengths = torch.tensor([12, 7, 3, 9])
    pos = torch.arange(T)
    if kind == "right":
        return pos[None] < lengths[:, None]
    if kind == "left":
        return pos[None] >= (T - lengths)[:, None]
    packed = torch.zeros(B, T, dtype=torch.bool)  # samples [0:4) [5:9) [10:12): prompts/separators between
    for a, b in ((0, 4), (5, 9), (10, 12)):
        packed[:, a:b] = True
    return packed


def _watch(tmp_path: Path, name: str, **kw) -> Watch:
    kw.setdefault("async_stats", False)
    return Watch(name, store=tmp_path, strict=False, **kw)


# ---- numbers against a float64 reference ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("vocab_mask", ["none", "top_k", "top_p", "grammar"])
def test_entropy_of_masked_low_precision_logits_matches_float64(tmp_path: Path, dtype, vocab_mask) -> None:
    logits = TinyLM()(_ids()).detach().to(dtype)
    if vocab_mask == "top_k":  # keep the 5 largest logits per token
        logits = logits.masked_fill(logits < logits.topk(5, -1).values[..., -1:], -math.inf)
    elif vocab_mask == "top_p":  # smallest set of tokens holding 0.9 of the probability
        sorted_, order = torch.sort(logits.float(), -1, descending=True)
        cut = sorted_.softmax(-1).cumsum(-1) - sorted_.softmax(-1) > 0.9
        logits = logits.masked_fill(torch.zeros_like(cut).scatter(-1, order, cut), -math.inf)
    elif vocab_mask == "grammar":  # a constrained decoder allows one token at some positions, 3 at others
        allowed = torch.zeros(B, T, V, dtype=torch.bool)
        allowed[:, ::2, 7] = True
        allowed[:, 1::2, 10:13] = True
        logits = logits.masked_fill(~allowed, -math.inf)
    mask = _padding("right")
    with _watch(tmp_path, "m") as w:
        out = w.log_tokens(0, logits=logits, mask=mask)
    assert math.isfinite(out[M.ENTROPY_MEAN]) and out[M.ENTROPY_NONFINITE_FRAC] == 0.0
    assert out[M.ENTROPY_MEAN] == pytest.approx(_ref_mean(logits, mask), abs=1e-5)
    if vocab_mask == "grammar":  # one allowed token: exactly 0 nats; three: a distribution over 3
        assert float(_ref_entropy(logits)[:, ::2].max()) == 0.0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_logits_of_magnitude_1e4_do_not_overflow(tmp_path: Path, dtype) -> None:
    raw = TinyLM()(_ids()).detach()
    logits = (raw * 2500.0 + 1e4 * (raw > 0)).to(dtype)  # |logits| ~ 1e4: exp() of them overflows every dtype
    with torch.no_grad():
        assert not torch.isfinite(logits.double().exp()).all() or dtype == torch.float64
    mask = _padding("left")
    with _watch(tmp_path, "big", temperature=0.7) as w:
        out = w.log_tokens(0, logits=logits, mask=mask)
    assert out[M.ENTROPY_MEAN] == pytest.approx(_ref_mean(logits, mask, 0.7), abs=1e-5)


@pytest.mark.parametrize(
    ("padding", "mask_dtype"),
    [("right", torch.bool), ("left", torch.int64), ("packed", torch.int32), ("right", torch.uint8)]
    + [("left", torch.float32), ("packed", torch.bfloat16)],
)
def test_every_mask_dtype_and_padding_selects_the_same_tokens(tmp_path: Path, padding, mask_dtype) -> None:
    model, ids = TinyLM(), _ids()
    logits = model(ids).detach()
    mask = _padding(padding)
    logp = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    adv = torch.tensor([1.0, -0.5, 0.25, 2.0])
    with _watch(tmp_path, "m") as w:
        out = w.log_tokens(0, logits=logits, mask=mask.to(mask_dtype), logp=logp, advantages=adv)
    sel = mask.bool()
    assert out[M.TOKENS_COUNT] == int(sel.sum())
    assert out[M.ENTROPY_MEAN] == pytest.approx(_ref_mean(logits, mask), abs=1e-6)
    assert out[M.ENTROPY_SAMPLED_NLL] == pytest.approx(float(-logp.double()[sel].mean()), abs=1e-6)
    a_tok = adv[:, None].expand(B, T)[sel].double()
    assert out[M.ADV_MEAN] == pytest.approx(float(a_tok.mean()), abs=1e-9)
    lp = logp.double()[sel]
    cov = float((lp * a_tok).mean() - lp.mean() * a_tok.mean())
    assert out[M.COV_LOGP_ADV] == pytest.approx(cov, abs=1e-6)


def test_an_all_zero_mask_records_no_tokens_and_nothing_non_finite(tmp_path: Path) -> None:
    logits = TinyLM()(_ids()).detach()
    with _watch(tmp_path, "z") as w:
        for step, dtype in enumerate((torch.bool, torch.int64, torch.float32)):
            out = w.log_tokens(step, logits=logits, mask=torch.zeros(B, T, dtype=dtype))
            assert out == {M.TOKENS_COUNT: 0.0}
        assert w.errors == 0


def test_rows_of_minus_inf_under_the_mask_are_left_out(tmp_path: Path) -> None:
    logits = TinyLM()(_ids()).detach()
    mask = _padding("right")
    logits[~mask] = -math.inf  # a loop that blanks the padding positions' whole rows
    with _watch(tmp_path, "pad") as w:
        out = w.log_tokens(0, logits=logits, mask=mask)
    assert out[M.ENTROPY_NONFINITE_FRAC] == 0.0
    assert out[M.ENTROPY_MEAN] == pytest.approx(_ref_mean(logits.masked_fill(~mask[..., None], 0.0), mask), abs=1e-6)


@pytest.mark.parametrize("layout", ["transposed", "vocab_slice", "shifted", "vocab_strided"])
def test_views_of_logits_match_their_contiguous_copy(tmp_path: Path, layout) -> None:
    g = torch.Generator().manual_seed(3)
    if layout == "transposed":  # a (T, B, V) model output read as (B, T, V)
        logits = torch.randn(T, B, V, generator=g).transpose(0, 1)
    elif layout == "vocab_slice":  # a vocabulary padded to a multiple of 64, cut back to V
        logits = torch.randn(B, T, V + 32, generator=g)[..., :V]
    elif layout == "shifted":  # logits[:, :-1], the next-token predictions
        logits = torch.randn(B, T + 1, V, generator=g)[:, :-1]
    else:  # the vocabulary dim is not the contiguous one
        logits = torch.randn(B, V, T, generator=g).transpose(1, 2)
    assert not logits.is_contiguous()
    mask = _padding("packed")
    with _watch(tmp_path, "v") as w:
        out = w.log_tokens(0, logits=logits, mask=mask)
        ref = w.log_tokens(1, logits=logits.contiguous(), mask=mask)
    assert out[M.ENTROPY_MEAN] == pytest.approx(_ref_mean(logits, mask), abs=1e-6)
    assert out[M.ENTROPY_MEAN] == pytest.approx(ref[M.ENTROPY_MEAN], abs=1e-6)


# ---- autograd, inference mode, compile ------------------------------------------------------------------------------
@pytest.mark.parametrize("async_stats", [False, True])
def test_the_autograd_graph_is_freed_after_the_step(tmp_path: Path, async_stats: bool) -> None:
    model, ids = TinyLM(), _ids()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mask, adv = _padding("right"), torch.tensor([1.0, -1.0, 0.5, -0.5])
    with _watch(tmp_path, "g", async_stats=async_stats) as w:
        for step in range(2):
            logits = model(ids)
            logp = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
            w.log_tokens(step, logits=logits, mask=mask, logp=logp, old_logp=logp.detach(), advantages=adv)
            loss = -(logp * adv[:, None])[mask].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            refs = [weakref.ref(t) for t in (logits, logp, loss)]
            del logits, logp, loss
            w.flush()  # the worker has run this step's statistics
            gc.collect()
            assert all(r() is None for r in refs), "the hook keeps an activation (and its graph) alive"
        assert w.errors == 0
    assert Store(tmp_path).series("g", M.ENTROPY_MEAN)[0].tolist() == [0, 1]


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad"])
@pytest.mark.parametrize("async_stats", [False, True])
def test_logging_under_inference_mode_and_no_grad(tmp_path: Path, mode: str, async_stats: bool) -> None:
    model, ids = TinyLM(), _ids()
    mask = _padding("left").long()
    ctx = torch.inference_mode() if mode == "inference_mode" else torch.no_grad()
    with _watch(tmp_path, "i", async_stats=async_stats) as w, ctx:
        logits = model(ids)
        old = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
        w.log_tokens(0, logits=logits, mask=mask, old_logp=old, advantages=torch.ones(B), token_ids=ids)
        w.flush()
        assert w.errors == 0
    got = Store(tmp_path).series("i", M.ENTROPY_MEAN)[1]
    assert got.tolist() == [pytest.approx(_ref_mean(logits, mask), abs=1e-6)]
    assert Store(tmp_path).series("i", M.RATIO_LOG_MEAN)[1].tolist() == [pytest.approx(0.0, abs=1e-6)]


# ---- inputs of mismatched shapes: only their own statistics are lost -----------------------------------------------
def _step_inputs():
    model, ids = TinyLM(), _ids()
    logits = model(ids).detach()
    logp = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    return logits, _padding("right"), logp, logp - 0.05, torch.tensor([1.0, -1.0, 0.5, -0.5]), ids


MISMATCHED = {  # name -> (kwarg changes, metrics that must be absent, the shapes the message names)
    "logp_short": (lambda k: {"logp": k["logp"][:, :-1], "token_ids": None},
                   [M.ENTROPY_SAMPLED_NLL, M.RATIO_LOG_MEAN, M.CLIP_LOW_FRAC], "(4, 11)"),
    "old_logp_long": (lambda k: {"old_logp": torch.cat([k["old_logp"], k["old_logp"][:, :1]], 1)},
                      [M.RATIO_LOG_MEAN], "(4, 13)"),
    "advantages_per_group": (lambda k: {"advantages": torch.ones(B * 2)}, [M.ADV_MEAN, M.CLIP_LOW_FRAC], "(8,)"),
    "advantages_transposed": (lambda k: {"advantages": torch.ones(T, B)}, [M.ADV_MEAN, M.COV_LOGP_ADV], "(12, 4)"),
    "group_ids_short": (lambda k: {"group_ids": torch.zeros(B - 1, dtype=torch.long)},
                        [M.ADV_FRAC_ZERO_GROUPS], "(3,)"),
    "token_ids_short": (lambda k: {"token_ids": k["token_ids"][:, 1:], "logp": None, "old_logp": None},
                        [M.ENTROPY_SAMPLED_NLL], "(4, 11)"),
}  # fmt: skip


@pytest.mark.parametrize("async_stats", [False, True])
@pytest.mark.parametrize("case", list(MISMATCHED))
def test_a_mismatched_input_loses_only_its_own_metrics(tmp_path: Path, caplog, case: str, async_stats: bool) -> None:
    logits, mask, logp, old, adv, ids = _step_inputs()
    good = {"logp": logp, "old_logp": old, "advantages": adv, "group_ids": torch.arange(B) // 2, "token_ids": ids}
    change, lost, shape = MISMATCHED[case]
    bad = good | change(good)
    with caplog.at_level(logging.WARNING, "entropy_watch"), _watch(tmp_path, "mm", async_stats=async_stats) as w:
        w.log_tokens(0, logits=logits, mask=mask, **good)
        w.log_tokens(1, logits=logits, mask=mask, **bad)
        w.log_tokens(2, logits=logits, mask=mask, **good)  # training goes on: the next step is whole
        assert w.errors == 1
    store = Store(tmp_path)
    steps, ent = store.series("mm", M.ENTROPY_MEAN)
    assert steps.tolist() == [0, 1, 2], "the step's entropy statistics are kept"
    assert ent[1] == pytest.approx(_ref_mean(logits, mask), abs=1e-6)
    assert store.series("mm", M.ENTROPY_P90)[0].tolist() == [0, 1, 2]
    for name in lost:
        assert store.series("mm", name)[0].tolist() == [0, 2], f"{name} of the step left out"
    if bad["advantages"] is good["advantages"]:
        assert store.series("mm", M.ADV_MEAN)[0].tolist() == [0, 1, 2], "the advantages' statistics are kept"
    if case in ("logp_short", "old_logp_long"):
        assert 1 not in store.series("mm", M.CLIP_ONPOLICY)[0].tolist(), "no on-policy verdict without its ratio"
    lines = [r.getMessage() for r in caplog.records if "log_tokens failed" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert shape in lines[0] and "(4, 12)" in lines[0] and "step 1" in lines[0], lines[0]


def test_strict_raises_the_mismatch_once_after_recording_the_rest(tmp_path: Path) -> None:
    logits, mask, logp, old, adv, _ = _step_inputs()
    with Watch("s", store=tmp_path, strict=True) as w:
        with pytest.raises(Exception, match=r"logp has shape \(4, 11\)"):
            w.log_tokens(0, logits=logits, mask=mask, logp=logp[:, 1:], advantages=adv)
        assert w.errors == 1
    assert Store(tmp_path).series("s", M.ADV_MEAN)[0].tolist() == [0]


def test_a_mask_of_another_shape_above_the_budget_is_one_clear_line(tmp_path: Path, caplog) -> None:
    logits, mask, *_ = _step_inputs()
    with caplog.at_level(logging.WARNING, "entropy_watch"):
        with _watch(tmp_path, "b", max_logits_per_call=4 * V) as w:  # above the budget: a sample of the tokens
            assert w.log_tokens(0, logits=logits, mask=torch.ones(B, T + 3)) == {}
            assert w.errors == 1
            assert w.log_tokens(1, logits=logits, mask=mask)[M.TOKENS_COUNT] == int(mask.sum())  # 4 computed
    line = next(r.getMessage() for r in caplog.records if "log_tokens failed" in r.getMessage())
    assert "mask has shape (4, 15), expected (4, 12)" in line, line


# ---- a batch above the budget: only a chunk of the sampled rows is copied at a time ----------------------------------
def test_sampled_rows_are_gathered_a_chunk_at_a_time_and_match_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    import entropy_watch.hooks.entropy as E

    vocab = 16384
    logits = torch.randn(1, 336, vocab, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16) * 3
    ids = torch.randint(0, vocab, (1, 336), generator=torch.Generator().manual_seed(6))
    mask = _padding("left").reshape(1, -1).repeat(1, 7)  # 217 of 336 valid
    seen: list[int] = []
    real = E.token_entropy

    def spy(x, *a, **k):
        seen.append(int(x.shape[0]))
        return real(x, *a, **k)

    monkeypatch.setattr(E, "token_entropy", spy)
    monkeypatch.setattr(E, "GATHER_BYTES", 48 * vocab * 2)  # 48 rows of bf16 at a time (default: 32 MiB)
    budget = 150 * vocab  # 150 of the 217 valid tokens
    ent, logp, sampled, frac = E.entropy_within_budget(logits, 1.0, budget, mask=mask, token_ids=ids, seed=7)
    chunk = max(E.default_chunk_rows(vocab), 48)
    assert sum(seen) == 150 and max(seen) <= chunk < 150, f"no (k, V) copy of the sampled rows: {seen}, {chunk}"
    assert int(sampled.sum()) == 150 and bool((mask.bool() | ~sampled).all()) and frac == 150 / int(mask.sum())
    ref = _ref_entropy(logits[sampled])
    assert torch.allclose(ent[sampled].double(), ref, atol=1e-5)
    ref_logp = torch.log_softmax(logits[sampled].double(), -1).gather(-1, ids[sampled][:, None]).squeeze(-1)
    assert torch.allclose(logp[sampled].double(), ref_logp, atol=1e-5)


# ---- token ids of HF labels: -100 (ignore_index) on the padding ------------------------------------------------------
@pytest.mark.parametrize("async_stats", [False, True])
def test_labels_with_minus_100_on_the_padding_give_logp_of_the_valid_tokens(tmp_path: Path, async_stats) -> None:
    logits, mask, *_ = _step_inputs()
    labels = _ids().masked_fill(~mask, -100)
    with _watch(tmp_path, "lab", async_stats=async_stats) as w:
        w.log_tokens(0, logits=logits, mask=mask.long(), token_ids=labels, old_logp=torch.zeros(B, T))
        assert w.errors == 0
    ref = torch.log_softmax(logits.double(), -1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)[mask]
    store = Store(tmp_path)
    assert store.series("lab", M.ENTROPY_SAMPLED_NLL)[1].tolist() == [pytest.approx(float(-ref.mean()), abs=1e-6)]
    assert store.series("lab", M.RATIO_LOG_MEAN)[1].tolist() == [pytest.approx(float(ref.mean()), abs=1e-6)]


def test_ids_outside_the_vocabulary_on_valid_tokens_lose_only_the_logp(tmp_path: Path, caplog) -> None:
    logits, mask, *_ = _step_inputs()
    ids = _ids()
    ids[0, 0] = V  # one id past the vocabulary (a tokenizer with added tokens, a model head without them)
    with caplog.at_level(logging.WARNING, "entropy_watch"), _watch(tmp_path, "off") as w:
        out = w.log_tokens(0, logits=logits, mask=mask, token_ids=ids, old_logp=torch.zeros(B, T))
        assert w.errors == 1
    assert out[M.ENTROPY_MEAN] == pytest.approx(_ref_mean(logits, mask), abs=1e-6)
    assert M.ENTROPY_SAMPLED_NLL not in out and M.CLIP_ONPOLICY not in out
    line = next(r.getMessage() for r in caplog.records if "log_tokens failed" in r.getMessage())
    assert f"1 id(s) outside [0, {V})" in line, line
