"""token_entropy against naive references written out here: dtypes, -inf, temperature, chunking, logp, autograd,
NaN/inf rows, errors, and a measured bound on the extra memory (torch's CPU allocator events via the profiler)."""

from __future__ import annotations

import math

import pytest
import torch

import entropy_watch.hooks.entropy as ent
from entropy_watch.errors import InvalidTensor
from entropy_watch.hooks.entropy import default_chunk_rows, token_entropy


def naive_entropy_loop(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Textbook softmax and -sum p log p, one row at a time in Python float64 (0 log 0 = 0)."""
    rows = logits.double().reshape(-1, logits.shape[-1]).tolist()
    out = []
    for row in rows:
        z = [v / temperature for v in row]
        m = max(z)
        w = [math.exp(v - m) for v in z]
        s = sum(w)
        out.append(-sum((x / s) * math.log(x / s) for x in w if x > 0))
    return torch.tensor(out, dtype=torch.float64).reshape(logits.shape[:-1])


def naive_logp_loop(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    rows = logits.double().reshape(-1, logits.shape[-1]).tolist()
    out = []
    for row, i in zip(rows, ids.reshape(-1).tolist(), strict=True):
        z = [v / temperature for v in row]
        m = max(z)
        out.append(z[i] - m - math.log(sum(math.exp(v - m) for v in z)))
    return torch.tensor(out, dtype=torch.float64).reshape(ids.shape)


def make_logits(shape: tuple[int, ...], seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-6), (torch.bfloat16, 2e-6), (torch.float16, 2e-6)])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, None, 1000])
def test_matches_loop_reference_across_dtypes_and_chunks(dtype: torch.dtype, tol: float, chunk_size: int | None):
    logits = make_logits((3, 5, 40)).to(dtype)  # the reference sees exactly the low-precision values
    h = token_entropy(logits, chunk_size=chunk_size)
    assert h.shape == (3, 5) and h.dtype == torch.float32  # fp32 accumulation whatever the input dtype
    torch.testing.assert_close(h.double(), naive_entropy_loop(logits), atol=tol, rtol=0)


@pytest.mark.parametrize("temperature", [0.5, 0.7, 1.0, 1.5])
def test_temperature(temperature: float):
    logits = make_logits((6, 30), seed=1)
    h = token_entropy(logits, temperature, chunk_size=4)
    torch.testing.assert_close(h.double(), naive_entropy_loop(logits, temperature), atol=2e-6, rtol=0)


def test_token_ids_logp_same_pass():
    logits = make_logits((2, 7, 25), seed=2).to(torch.bfloat16)
    ids = torch.randint(0, 25, (2, 7), generator=torch.Generator().manual_seed(0))
    h, logp = token_entropy(logits, 0.8, 3, token_ids=ids)
    torch.testing.assert_close(h.double(), naive_entropy_loop(logits, 0.8), atol=2e-6, rtol=0)
    torch.testing.assert_close(logp.double(), naive_logp_loop(logits, ids, 0.8), atol=2e-6, rtol=0)


def test_neg_inf_masked_vocabulary():
    logits = make_logits((4, 30), seed=3)
    logits[0, 10:] = -math.inf  # a masked vocabulary
    logits[1, ::2] = -math.inf
    logits[2, 1:] = -math.inf  # one-hot: H = 0 exactly
    h = token_entropy(logits, chunk_size=2)
    assert torch.isfinite(h).all()
    assert h[2].item() == 0.0
    torch.testing.assert_close(h.double(), naive_entropy_loop(logits), atol=2e-6, rtol=0)
    ids = torch.tensor([0, 2, 0, 5])  # row 1 samples a masked token: log pi = -inf, honestly
    _, logp = token_entropy(logits, token_ids=ids)
    assert logp[1].item() == -math.inf and logp[2].item() == 0.0


def test_nan_and_inf_rows_are_nan_and_do_not_leak():
    logits = make_logits((6, 20), seed=4)
    logits[1, 3] = math.nan
    logits[2, 7] = math.inf
    logits[3, :] = -math.inf  # no finite logit: no distribution
    h = token_entropy(logits, chunk_size=6)  # all rows in one chunk
    bad = torch.tensor([False, True, True, True, False, False])
    assert torch.isnan(h[bad]).all()
    torch.testing.assert_close(h[~bad].double(), naive_entropy_loop(logits[~bad]), atol=2e-6, rtol=0)


def test_layouts_and_large_vocab_accuracy():
    logits = make_logits((2, 9, 50), seed=5)
    ref = naive_entropy_loop(logits)
    torch.testing.assert_close(token_entropy(logits[:, :-1], chunk_size=4).double(), ref[:, :-1], atol=2e-6, rtol=0)
    torch.testing.assert_close(token_entropy(logits[0, 0]).double(), ref[0, 0], atol=2e-6, rtol=0)  # (V,) -> ()
    torch.testing.assert_close(
        token_entropy(logits.transpose(0, 1), chunk_size=5).double(), ref.transpose(0, 1), atol=2e-6, rtol=0
    )
    big = make_logits((3, 60_000), seed=6)
    ref64 = -(torch.softmax(big.double(), -1) * torch.log_softmax(big.double(), -1)).sum(-1)
    assert (token_entropy(big).double() - ref64).abs().max().item() < 5e-6
    assert token_entropy(torch.zeros(0, 11)).shape == (0,)


def test_chunks_are_bounded_and_cover_all_rows(monkeypatch: pytest.MonkeyPatch):
    seen: list[tuple[int, int]] = []
    real = ent._chunk_into

    def spy(chunk, temperature, z, p, out, ids, logp_out):
        seen.append((chunk.shape[0], z.data_ptr()))
        return real(chunk, temperature, z, p, out, ids, logp_out)

    monkeypatch.setattr(ent, "_chunk_into", spy)
    logits = make_logits((5, 7, 16), seed=7)
    token_entropy(logits[:, :-1], chunk_size=4)  # non-viewable: walked per sequence, 6 rows -> 4 + 2
    assert [n for n, _ in seen] == [4, 2] * 5
    assert len({ptr for _, ptr in seen}) == 1  # one reused work buffer, never a new (N, V) tensor
    assert default_chunk_rows(152_064, "cpu") * 2 * 4 * 152_064 <= ent.CPU_CHUNK_BYTES
    assert default_chunk_rows(10**9, "cpu") == 1


def _peak_cpu_alloc_bytes(fn) -> int:
    """Peak of torch's live CPU allocations during ``fn`` (profiler memory events, in order)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = prof.profiler.kineto_results.events()
    sizes = [e.nbytes() for e in sorted(events, key=lambda e: e.start_ns()) if e.name() == "[memory]"]
    live = peak = 0
    for nbytes in sizes:
        live += nbytes
        peak = max(peak, live)
    return peak


def test_peak_extra_memory_is_one_chunk():
    logits = make_logits((256, 8192), seed=8)  # 8 MiB
    chunk = 8
    try:
        naive_peak = _peak_cpu_alloc_bytes(lambda: -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1))
    except (AttributeError, RuntimeError):  # pragma: no cover - profiler API drift
        pytest.skip("this torch's profiler does not expose allocation events")
    ours_peak = _peak_cpu_alloc_bytes(lambda: token_entropy(logits, chunk_size=chunk))
    two_buffers = 2 * chunk * 8192 * 4
    assert naive_peak >= 2 * logits.numel() * 4  # the measurement sees full-size temporaries
    assert ours_peak <= two_buffers + 64 * 1024, (ours_peak, two_buffers)


def test_autograd_matches_reference_and_stays_chunked():
    logits = make_logits((3, 4, 12), seed=9).double()
    logits[0, 0, :6] = -math.inf
    x = logits.clone().requires_grad_()
    h, logp = token_entropy(x, chunk_size=5, token_ids=torch.full((3, 4), 7))
    (h.sum() + logp.sum()).backward()
    y = logits.clone().requires_grad_()
    lsm = torch.log_softmax(y, -1)
    ref = -(lsm.exp() * lsm.masked_fill(torch.isinf(lsm), 0.0)).sum(-1)
    (ref.sum() + lsm[..., 7].sum()).backward()
    torch.testing.assert_close(h, ref)
    torch.testing.assert_close(x.grad, y.grad.masked_fill(torch.isinf(logits), 0.0))
    assert torch.isfinite(x.grad).all()
    assert torch.autograd.gradcheck(
        lambda t: token_entropy(t, 0.9, 2), make_logits((3, 6), seed=10).double().requires_grad_()
    )
    with torch.no_grad():
        assert not token_entropy(x).requires_grad


@pytest.mark.parametrize(
    "kwargs",
    [
        {"logits": torch.ones(3, 4, dtype=torch.long)},
        {"logits": torch.ones(3, 0)},
        {"logits": torch.ones(3, 4), "temperature": 0.0},
        {"logits": torch.ones(3, 4), "temperature": math.inf},
        {"logits": torch.ones(3, 4), "chunk_size": 0},
        {"logits": torch.ones(3, 4), "token_ids": torch.zeros(4, dtype=torch.long)},
        {"logits": torch.ones(3, 4), "token_ids": torch.zeros(3)},
        {"logits": torch.ones(3, 4), "token_ids": torch.tensor([0, 1, 4])},
    ],
)
def test_bad_input_is_a_one_line_error(kwargs: dict):
    with pytest.raises(InvalidTensor, match="token_entropy: "):
        token_entropy(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_memory_is_one_chunk():  # pragma: no cover - CPU CI
    logits = make_logits((512, 32_768), seed=11).cuda().to(torch.bfloat16)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    h = token_entropy(logits, chunk_size=16)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - base <= 2 * 16 * 32_768 * 4 + 2**20
    ref = -(torch.softmax(logits.double(), -1) * torch.log_softmax(logits.double(), -1)).sum(-1)
    assert (h.double() - ref).abs().max().item() < 1e-5
