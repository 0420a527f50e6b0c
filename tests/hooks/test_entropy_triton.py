"""The Triton entropy kernel against a float64 reference written out here, on this CPU through Triton's interpreter
(``TRITON_INTERPRET=1``, in a child process: the switch is read when the kernel is defined), and on CUDA when present.

Cases: fp32/bf16/fp16 input, temperature, a vocabulary past one block with the maximum in a later block (the
rescaling), a strided row layout, masked (-inf) logits, NaN/+inf/all -inf rows, near one-hot rows, log pi of ids.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types
import warnings

import pytest
import torch

try:
    import triton
except ImportError:  # the tests that need it are skipped
    triton = None

from entropy_watch.hooks.entropy import token_entropy

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")


WIDE = 17_500


def cases() -> dict[str, tuple[torch.Tensor, float]]:
    """name -> (logits (n, V) in their dtype, temperature); the same tensors in this process and the child."""
    g = torch.Generator().manual_seed(5)
    wide = torch.randn(6, WIDE, generator=g) * 3  # past two of the kernel's blocks (8,192 logits), the last partial
    wide[1, 17_000] = 40.0  # the row's maximum sits in the last block: its sums are rescaled there
    wide[2, :8192] -= 30.0  # the first block is all small against the second
    masked = torch.randn(5, 300, generator=g) * 2
    masked[0, ::3] = float("-inf")  # a masked vocabulary contributes 0
    masked[1, 1:] = float("-inf")  # one finite logit: H = 0
    masked[2] = float("-inf")  # no finite logit: NaN
    masked[3, 7] = float("nan")
    masked[4, 9] = float("inf")
    peaked = torch.randn(4, 257, generator=g)
    peaked[:, 3] = 60.0  # near one-hot: H ~ 1e-24, must come out >= 0
    strided = (torch.randn(4, 700, generator=g) * 3)[:, 50:650]  # row stride 700, unit stride along V
    return {
        "wide": (wide, 1.0),
        "wide_t": (wide, 0.7),
        "bf16": (wide.to(torch.bfloat16), 1.0),
        "fp16": ((torch.randn(3, 1000, generator=g) * 3).to(torch.float16), 1.3),
        "masked": (masked, 1.0),
        "peaked": (peaked, 1.0),
        "strided": (strided, 1.0),
        "tiny_vocab": (torch.randn(3, 3, generator=g), 1.0),
    }


def ids_for(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(x.shape[0]) * 7 % x.shape[1]


def reference(x: torch.Tensor, temperature: float, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 ``-sum p log p`` (0 log 0 = 0) and ``log_softmax`` at ``ids``; NaN for rows with NaN, +inf, or no
    finite logit."""
    z = x.double() / temperature
    logp_all = torch.log_softmax(z, -1)
    p = logp_all.exp()
    h = -torch.where(p > 0, p * logp_all, torch.zeros_like(p)).sum(-1)
    bad = z.isnan().any(-1) | (z == float("inf")).any(-1) | ~(z > float("-inf")).any(-1)
    h[bad] = float("nan")
    logp = logp_all.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    logp[bad] = float("nan")
    return h, logp


def assert_matches(name: str, h: torch.Tensor, logp: torch.Tensor, x: torch.Tensor, temperature: float) -> None:
    h_ref, logp_ref = reference(x, temperature, ids_for(x))
    assert h.dtype == torch.float32 and h.shape == (x.shape[0],), name
    assert torch.equal(h.isnan(), h_ref.isnan()), (name, h, h_ref)
    assert bool((h[~h.isnan()] >= 0).all()), name
    torch.testing.assert_close(h.double(), h_ref, atol=2e-5, rtol=1e-6, equal_nan=True, msg=name)
    torch.testing.assert_close(logp.double(), logp_ref, atol=2e-5, rtol=1e-6, equal_nan=True, msg=name)


CHILD = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, sys.argv[2])
    from test_entropy_triton import cases, ids_for
    from entropy_watch.hooks.entropy_triton import entropy_rows
    out = {}
    for name, (x, t) in cases().items():
        h = torch.empty(x.shape[0]); logp = torch.empty(x.shape[0])
        entropy_rows(x, t, h, ids_for(x), logp)
        out[name] = (h, logp)
    torch.save(out, sys.argv[1])
    """
)


@needs_triton
def test_kernel_matches_float64_reference_in_the_interpreter(tmp_path):
    path = tmp_path / "out.pt"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), os.path.dirname(__file__)],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(path)
    for name, (x, t) in cases().items():
        assert_matches(name, *got[name], x, t)


@needs_triton
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_kernel_compiles_to_gpu_code_without_a_gpu(dtype):
    """Triton's compiler (ptxas included) builds the kernel for Hopper and Ampere here, no GPU needed: what the
    interpreter forgives (a plain global read inside the kernel, an op the backend lacks) fails here, not on a
    user's GPU, where the kernel would turn itself off and the hook fall back to the 6-10x slower torch path."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from entropy_watch.hooks.entropy_triton import BLOCK, _entropy_rows

    assert 2 * BLOCK < WIDE, "the 'wide' case must span blocks: the rescaling between them is what it tests"

    sig = {"x_ptr": f"*{dtype}", "row_stride": "i64", "n_cols": "i32", "scale": "fp32", "ids_ptr": "*i64",
           "h_ptr": "*fp32", "logp_ptr": "*fp32", "HAS_IDS": "constexpr", "BLOCK": "constexpr"}  # fmt: skip
    for arch, has_ids in ((90, True), (80, False)):
        src = ASTSource(fn=_entropy_rows, signature=sig, constexprs={"HAS_IDS": has_ids, "BLOCK": BLOCK})
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": 4})
        assert compiled.asm["cubin"], (dtype, arch)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_token_entropy_on_cuda_takes_the_kernel_and_matches():  # pragma: no cover - CPU CI
    import entropy_watch.hooks.entropy as ent

    for name, (x, t) in cases().items():
        out = token_entropy(x.cuda(), t, token_ids=ids_for(x).cuda())
        assert not ent._FUSED_OFF, f"the kernel turned itself off on case {name}"
        assert_matches(name, out[0].cpu(), out[1].cpu(), x, t)
    logits = torch.randn(512, 32_768, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    token_entropy(logits)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - base <= 2**20  # the output only: no (rows, V) buffer


def test_torch_path_matches_the_same_reference():
    """The reference above agrees with the torch path on every case (so the kernel test checks the same numbers)."""
    for name, (x, t) in cases().items():
        h, logp = token_entropy(x, t, token_ids=ids_for(x))
        assert_matches(name, h, logp, x, t)


def test_kernel_failure_falls_back_to_torch_once(monkeypatch):
    """A kernel that cannot run (old Triton, odd GPU) warns once and the torch path answers: never an exception."""
    import entropy_watch.hooks.entropy as ent

    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("no kernel here\n  a compiler's second line\n  and third")

    monkeypatch.setattr(ent, "_FUSED_OFF", False)
    monkeypatch.setattr(ent, "_fused_applies", lambda logits: True)
    monkeypatch.setitem(sys.modules, "entropy_watch.hooks.entropy_triton", types.SimpleNamespace(entropy_rows=boom))
    x = torch.randn(4, 50)
    with pytest.warns(RuntimeWarning, match="Triton entropy kernel is off .*no kernel here") as caught:
        h = token_entropy(x)
    assert "\n" not in str(caught[0].message), "one line, whatever the compiler printed"
    torch.testing.assert_close(h.double(), reference(x, 1.0, ids_for(x))[0], atol=2e-6, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token_entropy(x)  # off for the process: no second try, no second warning
    assert calls == [1]
