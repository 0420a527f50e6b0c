"""Overhead of the trainer hooks, measured in one process with interleaved runs (drift cancels).

    python benchmarks/bench_hooks.py            # ~2 min on a laptop CPU
    python benchmarks/bench_hooks.py --quick

1. TRL GRPO tiny run: optimizer-step time with and without ``attach`` (targets: <= 3 % on CPU).
2. Watch on a DDP step (one-process gloo group): ``log_tokens`` with all-reduce vs none.
3. A plain tiny-model step: ``log_tokens(logits=...)`` (entropy computed here, target <= 3 %) and
   ``log_tokens(entropy=...)`` (passed in, target <= 1 %).
4. Live in-process analysis (``Watch(on_alert=..., notify=...)``): the same step with the detector following the run
   on its background thread, on a run that already holds ``--live-points`` logged points, against the same Watch
   without it (target: no measurable cost, <= 1.01). ``--live-only`` runs just this part.
5. ``--device cuda``: only an LLM-shaped step on a GPU (GPT-2 small's body, V = 151,936, 8 x 512 tokens, bf16):
   Watch from logits, token_entropy + Watch(entropy=), and TRL's own entropy read every step, each against the bare
   step.
Prints ratios (median over interleaved rounds); never asserts timings.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _example():
    path = Path(__file__).resolve().parents[1] / "examples" / "trl_grpo.py"
    spec = importlib.util.spec_from_file_location("ew_example_trl_grpo", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _has_trl() -> bool:
    """Whether TRL imports here (part 1 and part 5's TRL row need it; a missing or broken install skips them)."""
    try:
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def bench_trl(rounds: int, steps: int, root: str) -> float:
    """Median ratio (attached / bare) of seconds per optimizer step over interleaved TRL runs."""
    from entropy_watch.hooks.trl import attach

    ex = _example()
    ratios = []
    for r in range(rounds):
        times = {}
        for attached in (False, True) if r % 2 == 0 else (True, False):
            tr = ex.build_trainer(f"{root}/out", max_steps=steps, num_iterations=2, logging_steps=1)
            handle = attach(tr, run=f"bench-{r}", store=root, flush_secs=5.0) if attached else None
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # HF's PrinterCallback prints every log dict
                tr.train()
            times[attached] = (time.perf_counter() - t0) / steps
            if handle is not None:
                handle.close()
        ratios.append(times[True] / times[False])
    return statistics.median(ratios)


def _tiny_step(model, opt, x, adv):
    logits = model(x)
    lp = torch.log_softmax(logits, -1).gather(-1, x[..., None]).squeeze(-1)
    loss = -(lp * adv[:, None]).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return logits, lp


class _TinyTransformer(torch.nn.Module):
    """A 2-layer GPT-2 (width 128, V=1024) built from a transformers config: (B, T) ids -> (B, T, V) logits."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=vocab, n_positions=128, bos_token_id=0,
                         eos_token_id=0)  # fmt: skip
        self.lm = GPT2LMHeadModel(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=x).logits


def bench_plain(rounds: int, iters: int, root: str, ddp: bool, model_kind: str = "transformer") -> dict[str, float]:
    """Ratios of a tiny-model step with Watch (logits / entropy passed) to the bare step.

    ``transformer``: a 2-layer GPT-2 (width 128, V=1024) — a tiny model with a body, like any real one.
    ``head``: embedding + MLP + a V=4096 head (width 64), where the vocabulary projection and its softmax are nearly
    the whole step: the worst case for an extra full-vocabulary pass.
    """
    from entropy_watch.hooks import Watch, token_entropy

    if ddp:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29581")
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    torch.manual_seed(0)
    if model_kind == "head":
        V, B, T, D = 4096, 16, 64, 64
        net = torch.nn.Sequential(
            torch.nn.Embedding(V, D), torch.nn.Linear(D, D), torch.nn.Tanh(), torch.nn.Linear(D, V)
        )
    else:
        V, B, T = 1024, 16, 64
        net = _TinyTransformer(V)
    model = torch.nn.parallel.DistributedDataParallel(net) if ddp else net
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, adv, mask = torch.randint(0, V, (B, T)), torch.randn(B), torch.ones(B, T)
    w = Watch("bench-plain", store=root, vocab_size=V, flush_secs=5.0, sample_tokens=8)
    ent_given = None

    def run(mode: str) -> float:
        nonlocal ent_given
        t0 = time.perf_counter()
        for i in range(iters):
            logits, lp = _tiny_step(model, opt, x, adv)
            if mode == "logits":
                w.log_tokens(i, logits=logits, mask=mask, logp=lp, advantages=adv)
            elif mode == "entropy":
                if ent_given is None:
                    ent_given = token_entropy(logits.detach())  # what the trainer already has
                w.log_tokens(i, entropy=ent_given, mask=mask, logp=lp, advantages=adv)
        return time.perf_counter() - t0

    run("bare")
    out: dict[str, list[float]] = {"logits": [], "entropy": []}
    for r in range(rounds):
        order = ["bare", "logits", "entropy"] if r % 2 == 0 else ["entropy", "logits", "bare"]
        t = {m: run(m) for m in order}
        out["logits"].append(t["logits"] / t["bare"])
        out["entropy"].append(t["entropy"] / t["bare"])
    w.close()
    if ddp:
        torch.distributed.destroy_process_group()
    return {k: statistics.median(v) for k, v in out.items()}


def bench_live(rounds: int, iters: int, root: str, points: int) -> dict[str, float]:
    """Step-time ratio of a tiny GPT-2 step logged to a Watch with live analysis (on_alert + a notify target on a
    local webhook) over the same step logged to a Watch without it; both runs hold ``points`` earlier points."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import numpy as np

    from entropy_watch.hooks import Watch, token_entropy
    from entropy_watch.hooks.live import LiveOptions

    class Ok(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    torch.manual_seed(0)
    V, B, T = 1024, 16, 64
    model = _TinyTransformer(V)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, adv, mask = torch.randint(0, V, (B, T)), torch.randn(B), torch.ones(B, T)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    live_kw = {"on_alert": {"critical": "stop"}, "notify": url, "live": LiveOptions(every=1)}
    watches = {
        "off": Watch("bench-live-off", store=root, vocab_size=V, flush_secs=5.0),
        "on": Watch("bench-live-on", store=root, vocab_size=V, flush_secs=5.0, **live_kw),
    }
    rng = np.random.default_rng(0)
    h0 = np.exp(rng.normal(0, 0.05, points))  # a steady ~1 nat history: no alert, the detector's usual state
    for w in watches.values():
        for s in range(points):
            w.log(s, **{"entropy/mean": float(h0[s]), "reward/mean": 0.5})
    watches["on"].live.flush()
    step = {"off": points, "on": points}
    ent = None

    def run(mode: str) -> float:
        nonlocal ent
        w = watches[mode]
        t0 = time.perf_counter()
        for _ in range(iters):
            logits, lp = _tiny_step(model, opt, x, adv)
            if ent is None:
                ent = token_entropy(logits.detach())
            w.log_tokens(step[mode], entropy=ent, mask=mask, logp=lp, advantages=adv)
            w.log(step[mode], **{"reward/mean": 0.5})
            step[mode] += 1
        return time.perf_counter() - t0

    run("off")
    run("on")
    ratios = []
    wall0, busy0 = time.perf_counter(), watches["on"].live.analyzer.busy_s
    n0 = watches["on"].live.analyzer.analyses
    for r in range(rounds):
        order = ("off", "on") if r % 2 == 0 else ("on", "off")
        t = {m: run(m) for m in order}
        ratios.append(t["on"] / t["off"])
    live = watches["on"].live.analyzer
    out = {
        "ratio": statistics.median(ratios),
        "analyses": float(live.analyses - n0),
        "busy_frac": (live.busy_s - busy0) / (time.perf_counter() - wall0),
        "per_analysis_ms": 1000 * (live.busy_s - busy0) / max(1, live.analyses - n0),
    }
    for w in watches.values():
        w.close()
    server.shutdown()
    return out


def bench_device_step(device: str, rounds: int, iters: int, root: str, size: str = "gpt2") -> dict[str, float]:
    """Ratios of an LLM-shaped training step with Watch to the bare step, on ``device`` (a GPU: part 5).

    ``gpt2``: GPT-2 small's body (12 layers, width 768) with a Qwen-sized vocabulary (V = 151,936), 8 x 512 tokens,
    bf16 autocast, AdamW: the logits (4,096 x 152k) are as large as a real run's. ``tiny`` checks the code on CPU.
    Modes: ``logits`` (Watch computes entropy from the logits), ``entropy`` (the user computes it with
    ``token_entropy`` and passes it: the same work in two calls), and ``trl`` (what a TRL user pays for its entropy:
    ``entropy_from_logits`` and its mean read back every step, which waits for the device).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    from entropy_watch.hooks import Watch, token_entropy

    torch.manual_seed(0)
    if size == "gpt2":
        V, B, T, cfg = 151_936, 8, 512, GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=151_936)
    else:
        cfg = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=512, n_positions=16, bos_token_id=0, eos_token_id=0)
        V, B, T = 512, 2, 16
    model = GPT2LMHeadModel(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    x = torch.randint(0, V, (B, T), device=device)
    adv, mask = torch.randn(B, device=device), torch.ones(B, T, device=device)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    w = Watch("bench-device", store=root, vocab_size=V, flush_secs=5.0)
    try:
        from trl.trainer.utils import entropy_from_logits
    except ImportError:
        entropy_from_logits = None

    def step(i: int, mode: str) -> None:
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16):
            logits = model(input_ids=x).logits
        lp = torch.log_softmax(logits.float(), -1).gather(-1, x[..., None]).squeeze(-1)
        loss = -(lp * adv[:, None]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if mode == "logits":
            w.log_tokens(i, logits=logits.detach(), mask=mask, logp=lp.detach(), advantages=adv)
        elif mode == "entropy":
            ent = token_entropy(logits.detach())  # stands for the entropy the trainer already computed
            w.log_tokens(i, entropy=ent, mask=mask, logp=lp.detach(), advantages=adv)
        elif mode == "trl":
            float(entropy_from_logits(logits.detach()).mean().item())

    modes = ["bare", "logits", "entropy"] + (["trl"] if entropy_from_logits is not None else [])
    counter = 0

    def run(mode: str) -> float:
        nonlocal counter
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            step(counter, mode)
            counter += 1
        sync()
        return (time.perf_counter() - t0) / iters

    for m in modes:  # warm-up: kernels compiled, allocator grown
        run(m)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for m in modes if r % 2 == 0 else modes[::-1]:
            times[m].append(run(m))
    w.close()
    bare = statistics.median(times["bare"])
    out = {"bare_ms": 1000 * bare}
    out.update({m: statistics.median(times[m]) / bare for m in modes if m != "bare"})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--live-only", action="store_true", help="only part 4 (live analysis)")
    p.add_argument("--live-points", type=int, default=2000, help="points the run holds before part 4 is timed")
    p.add_argument("--device", default=None, help="only part 5, an LLM-shaped step on this device (e.g. cuda)")
    p.add_argument("--size", default="gpt2", choices=["gpt2", "tiny"], help="part 5's model (tiny: a CPU check)")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if importlib.util.find_spec("transformers") is None:  # every part's model is a transformers GPT-2
        raise SystemExit("bench_hooks needs transformers (pip install 'entropy-watch[hf]'); not installed here")
    if a.device is not None:
        with tempfile.TemporaryDirectory() as root:
            d = bench_device_step(a.device, rounds=3 if a.quick else 7, iters=5 if a.quick else 20, root=root,
                                  size=a.size)  # fmt: skip
        name = "GPT-2 small body, V=151,936, 8x512 tokens, bf16" if a.size == "gpt2" else "tiny GPT-2"
        print(f"{name} step on {a.device}: bare {d['bare_ms']:.1f} ms")
        print(f"  Watch from logits / bare:     {d['logits']:.3f}  (target <= 1.03)")
        print(f"  token_entropy + Watch(entropy=) / bare: {d['entropy']:.3f}  (same work, two calls)")
        if "trl" in d:
            print(f"  TRL entropy_from_logits + .item() / bare: {d['trl']:.3f}  (what a TRL user pays for its entropy)")
        else:
            print("  TRL entropy_from_logits: trl not installed here (pip install 'entropy-watch[hf]'), row skipped")
        return
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        live = bench_live(rounds=3 if a.quick else 9, iters=20 if a.quick else 60, root=root, points=a.live_points)
        print(
            f"tiny GPT-2 step, Watch with live analysis / without ({a.live_points} points logged): "
            f"{live['ratio']:.3f}  (target <= 1.01); {live['analyses']:.0f} analyses, "
            f"{live['per_analysis_ms']:.0f} ms each, analysis thread busy {100 * live['busy_frac']:.1f}% of wall time"
        )
        if a.live_only:
            return
        if _has_trl():
            trl = bench_trl(rounds=2 if a.quick else 6, steps=8 if a.quick else 16, root=root)
            print(f"TRL GRPO tiny step, attach / bare:            {trl:.3f}  (target <= 1.03)")
        else:
            print("TRL GRPO tiny step: trl not installed here (pip install 'entropy-watch[hf]'), part 1 skipped")
        plain = bench_plain(rounds=3 if a.quick else 9, iters=10 if a.quick else 30, root=root, ddp=False)
        print(f"tiny GPT-2 step, Watch from logits / bare:         {plain['logits']:.3f}  (target <= 1.03)")
        print(f"tiny GPT-2 step, Watch with entropy passed / bare: {plain['entropy']:.3f}  (target <= 1.01)")
        head = bench_plain(
            rounds=3 if a.quick else 9, iters=10 if a.quick else 30, root=root, ddp=False, model_kind="head"
        )
        print(f"head-only step (worst case), from logits / bare:   {head['logits']:.3f}")
        print(f"head-only step (worst case), entropy passed / bare: {head['entropy']:.3f}")
        ddp = bench_plain(
            rounds=3 if a.quick else 9, iters=10 if a.quick else 30, root=root, ddp=True, model_kind="head"
        )
        print(f"DDP head-only step (gloo), from logits / bare:     {ddp['logits']:.3f}")
        print(f"DDP head-only step (gloo), entropy passed / bare:  {ddp['entropy']:.3f}")


if __name__ == "__main__":
    main()
