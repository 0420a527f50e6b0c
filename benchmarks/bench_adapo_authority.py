"""ADAPO's authority: what fixed upper-clip widths do to entropy, next to ADAPO steering that same knob.

    python benchmarks/bench_adapo_authority.py                                  # tiny preset, 3 seeds: ~10 min, 2 cores
    python benchmarks/bench_adapo_authority.py --epochs 4 --minibatches 4       # a more off-policy update: ~20 min

ADAPO has one lever, ε_high (ALGORITHMS.md: the upper clip width, steered toward the entropy target; ε_low fixed).
If no *fixed* ε_high in its range — nor none at all (``inf``: GRPO without the upper clip, the ``no-upper-clip``
algorithm) — keeps entropy near its target, no schedule of ε_high is likely to, and ADAPO's miss is the lever's, not
the controller's. Entropy need not be monotone in ε_high (a rare token freed to rise can become the mode), so the
benchmark sweeps the range instead of trusting its end. Per setting, over seeds from the same SFT checkpoint: H_end/H0
per seed and their mean, pass@1, how often the upper clip binds and the mean centred log-prob L = log π + H of the
tokens it binds (L < 0: rare tokens, whose rise raises entropy). No task-B probe. Runs go to a temporary store unless
``--store`` is given. Prints numbers measured in this run; never asserts.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np


def setting(eps: float) -> tuple[str, str, dict[str, float] | None]:
    """(row label, named algorithm, its overrides) of one fixed eps_high; inf is the named ``no-upper-clip``."""
    return (
        ("no-upper-clip", "no-upper-clip", None)
        if math.isinf(eps)
        else (f"grpo-eps_high-{eps:g}", "grpo", {"eps_high": eps})
    )


def main() -> None:
    from entropy_watch.trainer.compare import ProbeConfig, run_algo, sft_stage

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--eps", default="0.2,0.28,1,3,10,inf", help="fixed eps_high values (GRPO, eps_low 0.2)")
    ap.add_argument("--epochs", type=int, default=None, help="passes over each rollout batch (default: preset's)")
    ap.add_argument("--minibatches", type=int, default=None, help="optimizer steps per epoch (default: preset's)")
    ap.add_argument("--steps", type=int, default=None, help="RL iterations (default: preset's 300)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--store", default=None)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    eps = [float(e) for e in args.eps.split(",")]
    rl = {k: v for k, v in (("epochs", args.epochs), ("minibatches", args.minibatches)) if v is not None}
    root = args.store or tempfile.mkdtemp(prefix="ew-adapo-authority-")
    none = ProbeConfig(iterations=0)
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        sft = dict(zip(seeds, pool.map(sft_stage, ["tiny"] * len(seeds), seeds, [root] * len(seeds)), strict=True))
        settings = [("adapo", "adapo", None)] + [setting(e) for e in eps]
        jobs = {
            (name, s): pool.submit(
                run_algo, "tiny", algo, s, root, str(sft[s]), args.steps, none, rl=rl, algo_overrides=ov, label=name
            )
            for name, algo, ov in settings
            for s in seeds
        }
        rows = {key: f.result() for key, f in jobs.items()}
    print(f"tiny preset, {rl or 'preset update (2 epochs x 2 mini-batches)'}, seeds {seeds}, store {root}")
    print(f"{'setting':<22}{'H_end/H0 per seed':<24}{'mean':>6}{'pass@1':>8}{'clip-high':>11}{'L binding':>11}")
    for name, _, _ in settings:
        r = [rows[(name, s)] for s in seeds]
        h = [x["h_ratio"] for x in r]
        lever = [x["clip_high_lever"] for x in r if x["clip_high_lever"] == x["clip_high_lever"]]
        print(
            f"{name:<22}{', '.join(f'{v:.2f}' for v in h):<24}{np.mean(h):>6.2f}"
            f"{np.mean([x['pass1'] for x in r]):>8.2f}{100 * np.mean([x['clip_high'] for x in r]):>10.2f}%"
            f"{(f'{np.mean(lever):+.2f}' if lever else '–'):>11}"
        )
    print("target band for ADAPO (issue 13): H_end/H0 in [0.8, 1.25]")


if __name__ == "__main__":
    main()
