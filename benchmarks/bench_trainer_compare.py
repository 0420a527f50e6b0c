"""Reference-trainer acceptance benchmark: every algorithm from the same SFT checkpoint, seed and budget.

    python benchmarks/bench_trainer_compare.py                      # 1 seed, 150 iterations: ~5 min on 2 free cores
    python benchmarks/bench_trainer_compare.py --seeds 0,1,2 --steps 300 --probe-steps 100   # the full table

Prints the table of ``entropy-watch compare`` (H_end/H0, area under H/H0, pass@1, pass@k, distinct correct answers,
task-B iterations to reach reward 0.5 after task A, tokens/s) and checks the qualitative targets of ALGORITHMS.md
("GRPO H_end/H0 < 0.6 and REPO-R > 0.75 after 150 iterations"), printing yes/no rather than asserting: these are
dynamics of a tiny model, reported as measured. Runs go to a temporary store unless ``--store`` is given.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algos", default="grpo,dapo,repo-r,adapo")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--probe-steps", type=int, default=50)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--store", default=None)
    args = ap.parse_args()

    from rich.console import Console

    from entropy_watch.trainer.compare import ProbeConfig, compare, format_table

    root = args.store or tempfile.mkdtemp(prefix="ew_bench_trainer_")
    algos = [a for a in args.algos.split(",") if a]
    t0 = time.perf_counter()
    result = compare(
        args.preset, algos, [int(s) for s in args.seeds.split(",")], root, iterations=args.steps,
        probe=ProbeConfig(iterations=args.probe_steps), jobs=args.jobs,
    )  # fmt: skip
    console = Console(width=160)
    console.print(format_table(result))
    console.print(
        "first mini-batch mean log-ratio: " + ", ".join(f"{k} {v:+.2e}" for k, v in result["precision"].items())
    )
    summary = result["summary"]
    checks = []
    if "grpo" in summary:
        checks.append(("GRPO H_end/H0 < 0.6", summary["grpo"]["h_ratio"][0] < 0.6))
    if "repo-r" in summary:
        checks.append(("REPO-R H_end/H0 > 0.75", summary["repo-r"]["h_ratio"][0] > 0.75))
    if "grpo" in summary and "repo-r" in summary:
        g, r = summary["grpo"], summary["repo-r"]
        checks.append(("REPO-R pass@1 within 0.05 of GRPO", abs(r["pass1"][0] - g["pass1"][0]) <= 0.05))
        checks.append(("REPO-R more distinct correct answers", r["distinct"][0] > g["distinct"][0]))
    for name, ok in checks:
        console.print(f"{name}: {'yes' if ok else 'NO'}")
    console.print(f"store {root}; wall {time.perf_counter() - t0:.0f} s with {args.jobs} process(es)")


if __name__ == "__main__":
    main()
