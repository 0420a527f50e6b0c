"""Same runs on another scale: do the verdicts hold? Ours and rlwatch, rldoctor and rlprobe, in one run.

Run:  make bench-env && .venv-bench/bin/python benchmarks/bench_invariance.py [--points 40,100] [--per-kind 120]
      [--tools ours,rlwatch,rldoctor,rldoctor-posthoc,rlprobe] [--real DIR]

What differs between real logs and the synthetic suites of ``bench_detectors.py`` is often only a scale: a model whose
entropy sits ten times lower (a low temperature, a distilled policy), an entropy normalised by ln V or logged in
bits, a reward that is the sum of two reward functions (TRL adds them: 0-2) or shifted. Each part replays the same
inputs with one scale changed and prints what a user would read:

* **A. entropy ×c** (0.1, 1, 10; V not given) on the held-out healthy, spike and near-uniform runs: the share with a
  collapse or explosion alarm (false alarms);
* **B. reward ×2 and +0.5** on the held-out steady and fast collapses and solved tasks: collapse recall per kind and
  the share of solved tasks alarmed (ours also with the reward's maximum stated, ``reward_max``, as ``--reward-max``
  or TRL's per-function reward columns give it);
* **C. the labelled real runs** (``shared/real_runs``) with the entropy ×0.001, ×0.1, ×10, ×1000 and the reward ×2,
  ×3, 2r−1, +5: how many of the runs each tool alarms keep the alarm kinds and first points of the unchanged run.

Seeds: the held-out ones of ``bench_detectors`` (50,000..). Scoring: ``entropy_watch.analysis.scoring``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_detectors as B  # noqa: E402

from entropy_watch.analysis.scoring import summarize  # noqa: E402
from entropy_watch.synthetic import REAL_NOISE  # noqa: E402

HELD_OUT = 50_000
HEALTHY_KINDS = ("healthy", "spike", "near_uniform")
COLLAPSE_KINDS = ("steady_collapse", "fast_collapse", "solved")
ENTROPY_SCALES = (1.0, 0.1, 10.0)
REWARDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "r": lambda r: r,
    "2r": lambda r: 2 * r,
    "r+0.5": lambda r: r + 0.5,
}
REAL_ENTROPY = (1e-3, 0.1, 10.0, 1e3)
REAL_REWARDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "2r": lambda r: 2 * r,
    "3r": lambda r: 3 * r,
    "2r-1": lambda r: 2 * r - 1,
    "r+5": lambda r: r + 5,
}


def scaled(run: B.Run, c: float) -> B.Run:
    """``run`` with its entropy (and noiseless curve) ×c and no vocabulary size (ln V would not scale with it)."""
    meta = {k: v for k, v in run.meta.items() if k != "vocab_size"}
    clean = run.clean * c if run.clean is not None else None
    return dataclasses.replace(run, entropy=run.entropy * c, clean=clean, meta=meta)


def rewarded(run: B.Run, fn: Callable[[np.ndarray], np.ndarray], reward_max: float | None = None) -> B.Run:
    """``run`` with its reward transformed (and, when given, its maximum stated in its meta)."""
    meta = dict(run.meta) if reward_max is None else {**run.meta, "reward_max": reward_max}
    return dataclasses.replace(run, reward=None if run.reward is None else fn(run.reward), meta=meta)


def firsts(outcome: B.Outcome) -> dict[str, int]:
    """The first point of each primary alarm kind."""
    return {k: a.index for k in ("collapse", "explosion") if (a := outcome.first(k)) is not None}


def part_a(n: int, per: int, fits: list, tools: list[str]) -> None:
    runs = B.synthetic(HEALTHY_KINDS, list(range(HELD_OUT, HELD_OUT + per)), n, fits)
    print(f"\nA. entropy x c, {n} points, {len(runs)} healthy/spike/near-uniform runs: share with an alarm")
    print(f"{'tool':<18}" + "".join(f"{'x' + format(c, 'g'):>10}" for c in ENTROPY_SCALES))
    rates = {t: [] for t in tools}
    for c in ENTROPY_SCALES:
        res = B.score([scaled(r, c) for r in runs], tools)
        for t in tools:
            rates[t].append(summarize(res[t])["healthy_fa_rate"])
    for t in tools:
        print(f"{t:<18}" + "".join(f"{x:>10.3g}" for x in rates[t]))


def part_b(n: int, per: int, fits: list, tools: list[str]) -> None:
    runs = B.synthetic(COLLAPSE_KINDS, list(range(HELD_OUT, HELD_OUT + per)), n, fits)
    print(f"\nB. reward transformed, {n} points, {per} steady + {per} fast collapses + {per} solved tasks")
    print(f"{'tool':<26}{'reward':>8}{'steady':>9}{'fast':>9}{'solved alarmed':>16}")
    for name, fn in REWARDS.items():
        variants = [(t, t, None) for t in tools]
        if name != "r":
            top = float(fn(np.ones(1))[0])  # the transformed reward's maximum
            variants.append(("ours", f"ours (max {top:g} stated)", top))
        for tool, label, top in variants:
            res = B.score([rewarded(r, fn, top) for r in runs], [tool])[tool]
            by = {k: [o for o, r in zip(res, runs, strict=True) if r.name.startswith(k + "-")] for k in COLLAPSE_KINDS}
            recall = [np.mean(["collapse" in firsts(o) for o in by[k]]) for k in COLLAPSE_KINDS[:2]]
            solved = np.mean([o.false_alarm for o in by["solved"]])
            print(f"{label:<26}{name:>8}{recall[0]:>9.3g}{recall[1]:>9.3g}{solved:>16.3g}")


def part_c(real_dir: Path, tools: list[str]) -> None:
    real = [r for r in B.load_real(real_dir) if r.label != "ambiguous"]
    variants: dict[str, Callable[[B.Run], B.Run]] = {f"H x{c:g}": (lambda r, c=c: scaled(r, c)) for c in REAL_ENTROPY}
    variants.update({f"reward {k}": (lambda r, f=f: rewarded(r, f)) for k, f in REAL_REWARDS.items()})
    print(
        f"\nC. {len(real)} labelled real runs: runs whose alarms (kinds, first points) are those of the unchanged run"
    )
    print(f"{'tool':<18}" + "".join(f"{k:>12}" for k in variants))
    for t in tools:
        base = [firsts(o) for o in B.score(real, [t])[t]]
        row = []
        for make in variants.values():
            got = [firsts(o) for o in B.score([make(r) for r in real], [t])[t]]
            row.append(sum(g == b for g, b in zip(got, base, strict=True)))
        print(f"{t:<18}" + "".join(f"{f'{x}/{len(real)}':>12}" for x in row))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default="40,100", help="points per synthetic run, comma-separated")
    ap.add_argument("--per-kind", type=int, default=120, help="held-out seeds per synthetic kind")
    ap.add_argument("--tools", default=",".join(B.TOOLS))
    ap.add_argument("--real", type=Path, default=B.REAL_DIR, help=f"the labelled real logs (default {B.REAL_DIR})")
    args = ap.parse_args()
    tools = B.available(args.tools.split(","))
    have_real = (args.real / "labels.json").exists()
    if have_real:
        real = B.load_real(args.real)
        fits = [f for f in (B.fit_noise(r.entropy, r.name) for r in real) if f is not None]
    else:
        fits = list(REAL_NOISE)
        print(f"real runs (labels.json) not found in {args.real} (shared/real_runs beside the repository; --real "
              "DIR): part C skipped, synthetic noise from entropy_watch.synthetic.REAL_NOISE")  # fmt: skip
    t0 = time.perf_counter()
    for n in (int(x) for x in args.points.split(",")):
        part_a(n, args.per_kind, fits, tools)
        part_b(n, args.per_kind, fits, tools)
    if have_real:
        part_c(args.real, tools)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
