"""Token-entropy benchmark: ours vs the naive softmax formula vs TRL's ``entropy_from_logits`` vs a plain read.

Run::

    python benchmarks/bench_entropy.py                      # CPU: N=4096 tokens, V=32k and 152k, fp32 and bf16
    python benchmarks/bench_entropy.py --device cuda        # the same on a GPU
    python benchmarks/bench_entropy.py --tokens 1024 --vocab 32000 --dtype bf16   # a quick look

On CPU memory is measured in a fresh subprocess per (method, V, dtype), so one case's allocations cannot shape
another's numbers and an out-of-memory case (the naive one at V=152k) only loses its own row; on a GPU, where the
allocator's peak counter is exact and a process's start (CUDA context, Triton's compile) costs seconds, one
subprocess per (V, dtype) measures every method, an out-of-memory method losing its own row. Measured per case:

* time: one subprocess per (V, dtype) calls the methods round-robin for ``--repeats`` rounds (default 3 on CPU, 50
  on GPU, where a call takes a fraction of a millisecond) after a warm-up and
  reports the min (and median) per method (``torch.cuda.synchronize`` around each call on GPU); on a shared machine
  the min is the estimate least disturbed by other load, and the interleaving slows all methods alike;
* extra memory, GPU: ``torch.cuda.max_memory_allocated()`` minus the allocation before the call (logits excluded);
* extra memory, CPU, two views: ``alloc`` = peak of torch's live CPU allocations during one call, from the
  profiler's allocation events (exact for torch tensors, blind to allocator caching and page reuse); ``rss`` = growth
  of the process's peak resident set (``ru_maxrss``) across one call, what the OS actually had to provide;
* error: max |H - H_float64| over the first 64 rows (the float64 reference is the textbook formula).

Methods: ``ours`` (``token_entropy``: on CUDA the fused Triton kernel of ``hooks/entropy_triton.py``, elsewhere the
chunked torch path), ``chunked`` (the chunked torch path on any device; listed on GPU only, where it differs),
``naive`` (``-(softmax(x) * log_softmax(x)).sum(-1)``, in the input dtype), ``trl``
(``trl.trainer.utils.entropy_from_logits(x, chunk_size=128)``, in the input dtype: TRL's own fused Triton kernel on
CUDA), ``floor`` (``x.max(-1)``: one full read of the logits, the memory-bandwidth floor). Targets: ours <= 0.5x naive
time, <= 1.0x TRL, <= 3x the read floor, extra memory <= one chunk (two fp32 work buffers; the kernel needs none).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

METHODS = ("ours", "chunked", "naive", "trl", "floor")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _method(name: str) -> Callable:
    import torch

    from entropy_watch.hooks.entropy import token_entropy

    if name == "ours":
        return token_entropy
    if name == "chunked":  # an explicit chunk size keeps the torch path on every device
        from entropy_watch.hooks.entropy import default_chunk_rows

        return lambda x: token_entropy(x, chunk_size=default_chunk_rows(x.shape[-1], x.device))
    if name == "naive":
        return lambda x: -(torch.softmax(x, -1) * torch.log_softmax(x, -1)).sum(-1)
    if name == "trl":
        from trl.trainer.utils import entropy_from_logits

        return lambda x: entropy_from_logits(x, chunk_size=128)
    if name == "floor":
        return lambda x: x.max(-1).values
    raise ValueError(name)


def _torch_alloc_peak(fn: Callable, x) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(x)
    events = sorted(prof.profiler.kineto_results.events(), key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        if e.name() == "[memory]":
            live += e.nbytes()
            peak = max(peak, live)
    return peak


def measure_memory(method: str, tokens: int, vocab: int, dtype: str, device: str) -> dict:
    """One call of one method in this (fresh) process: extra memory and accuracy."""
    import torch

    from entropy_watch.hooks.entropy import default_chunk_rows

    x = _logits(tokens, vocab, dtype, device)
    fn = _method(method)
    out: dict = {"method": method}
    with torch.no_grad():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            y = fn(x)
            torch.cuda.synchronize()
            out["extra_bytes"] = torch.cuda.max_memory_allocated() - base
        else:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after the logits: the peak so far
            y = fn(x)
            out["rss_bytes"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
            out["extra_bytes"] = _torch_alloc_peak(fn, x)
        ref = -(torch.softmax(x[:64].double(), -1) * torch.log_softmax(x[:64].double(), -1)).sum(-1)
        out["err"] = 0.0 if method == "floor" else float((y[:64].double() - ref).abs().max())
    out["chunk_bytes"] = 2 * 4 * vocab * default_chunk_rows(vocab, device)
    out["logits_bytes"] = x.numel() * x.element_size()
    return out


def _memory_or_failure(method: str, tokens: int, vocab: int, dtype: str, device: str) -> dict:
    """:func:`measure_memory` in this process (GPU); an out-of-memory or other failure becomes that row's message."""
    import torch

    from entropy_watch.errors import first_line

    try:
        return measure_memory(method, tokens, vocab, dtype, device)
    except Exception as exc:  # noqa: BLE001 - one method's failure loses its own row only
        return {"failed": f"{type(exc).__name__}: {first_line(exc)}"}
    finally:
        torch.cuda.empty_cache()


def measure_time(methods: list[str], tokens: int, vocab: int, dtype: str, device: str, repeats: int) -> dict:
    """Seconds per call of each method, calls interleaved round-robin (a busy machine slows all alike).

    Returns min and median over ``repeats`` rounds; the min is the better estimate on a shared machine.
    """
    import torch

    x = _logits(tokens, vocab, dtype, device)
    fns, failed = {}, {}
    for m in methods:
        try:
            fns[m] = _method(m)
        except ImportError as exc:  # an optional peer (TRL) missing or broken loses its own row only
            failed[m] = f"{type(exc).__name__}: {exc}"
    methods = list(fns)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: dict[str, list[float]] = {m: [] for m in methods}
    with torch.no_grad():
        for m in methods:  # warm-up
            fns[m](x)
        for _ in range(repeats):
            for m in methods:
                sync()
                t0 = time.perf_counter()
                fns[m](x)
                sync()
                times[m].append(time.perf_counter() - t0)
    out = {m: {"min": min(t), "median": statistics.median(t)} for m, t in times.items()}
    return {"times": out, "threads": torch.get_num_threads(), "failed_methods": failed}


def _logits(tokens: int, vocab: int, dtype: str, device: str):
    import torch

    torch.manual_seed(0)
    return torch.empty(tokens, vocab, dtype=getattr(torch, DTYPES[dtype]), device=device).normal_(0.0, 3.0)  # no temp


def _spawn(args: argparse.Namespace, vocab: int, dtype: str, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--one", mode, "--tokens", str(args.tokens), "--vocab", str(vocab)]
    cmd += ["--dtype", dtype, "--device", args.device, "--repeats", str(args.repeats), "--methods", *args.methods]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return {"failed": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:8.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--vocab", type=int, nargs="+", default=[32_000, 152_064])
    p.add_argument("--dtype", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS, help="default: all (no chunked on CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 3 on CPU, 50 on GPU)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per case")
    p.add_argument("--one", help=argparse.SUPPRESS)  # "time" or a method: run one measurement here
    args = p.parse_args()
    if args.methods is None:
        args.methods = [m for m in METHODS if m != "chunked" or args.device != "cpu"]
    if not args.one and "trl" in args.methods and importlib.util.find_spec("trl") is None:
        args.methods.remove("trl")
        print("trl not installed here (pip install 'entropy-watch[hf]'): its column is skipped")
    if args.repeats is None:
        args.repeats = 3 if args.device == "cpu" else 50
    if args.one == "all":  # GPU: time, then each method's memory and error, in this one process
        case = (args.tokens, args.vocab[0], args.dtype[0], args.device)
        timing = measure_time(args.methods, *case, args.repeats)
        print(json.dumps({**timing, "memory": {m: _memory_or_failure(m, *case) for m in args.methods}}))
        return
    if args.one == "time":
        print(
            json.dumps(measure_time(args.methods, args.tokens, args.vocab[0], args.dtype[0], args.device, args.repeats))
        )
        return
    if args.one:
        print(json.dumps(measure_memory(args.one, args.tokens, args.vocab[0], args.dtype[0], args.device)))
        return

    cpu = args.device == "cpu"
    print(
        f"token entropy, N={args.tokens}, device={args.device}; ms = min (median) of {args.repeats} interleaved rounds"
    )
    cols = ("ms min", "(median)", "extra MiB", "rss MiB", "max err")
    print(f"{'V':>7} {'dtype':>5} {'method':>7} " + " ".join(f"{c:>9}" for c in cols))
    for vocab in args.vocab:
        for dtype in args.dtype:
            if cpu:
                timing = _spawn(args, vocab, dtype, "time")
                mem = {
                    m: _spawn(argparse.Namespace(**{**vars(args), "methods": [m]}), vocab, dtype, m)
                    for m in args.methods
                }
            else:
                timing = _spawn(args, vocab, dtype, "all")
                mem = timing.get("memory") or {m: timing for m in args.methods}  # a failed process fails every row
            times = timing.get("times", {})
            for m in args.methods:
                t, r = times.get(m), mem[m]
                if t is None or "failed" in r:
                    why = r.get("failed") or timing.get("failed_methods", {}).get(m) or timing.get("failed", "?")
                    print(f"{vocab:>7} {dtype:>5} {m:>7}   failed: {why[:90]}")
                    continue
                rss = _mib(r.get("rss_bytes")) if cpu else "-"
                nd = 1 if cpu else 3  # a GPU call takes a fraction of a millisecond
                line = f"{vocab:>7} {dtype:>5} {m:>7} {t['min'] * 1e3:9.{nd}f} {t['median'] * 1e3:9.{nd}f}"
                print(line + f" {_mib(r['extra_bytes']):>9} {rss:>8} {r['err']:9.2e}")
            if "ours" not in times or "failed" in mem.get("ours", {"failed": 1}):
                continue
            ours = times["ours"]["min"]
            ratios = [f"{m} {ours / times[m]['min']:.2f}x" for m in ("chunked", "naive", "trl", "floor") if m in times]
            o = mem["ours"]
            print(
                f"{'':>15} ours / {', '.join(ratios)} (time, min); extra memory = "
                f"{o['extra_bytes'] / o['chunk_bytes']:.2f} chunks of {_mib(o['chunk_bytes']).strip()} MiB; "
                f"logits {_mib(o['logits_bytes']).strip()} MiB; torch threads {timing['threads']}"
            )
    print("targets: ours <= 0.5x naive, <= 1.0x trl, <= 3x floor time; extra memory <= 1 chunk")
    print("extra = torch allocations during one call" + (" (profiler events); rss = peak RSS growth" if cpu else ""))


if __name__ == "__main__":
    main()
