"""Score the layered detector against two baselines on synthetic runs and on the labelled real runs.

Run: ``.venv/bin/python benchmarks/bench_detectors.py [--per-kind 20] [--seeds dev|heldout|both] [--real DIR]``

Scoring (DETECTION.md §B.6): an *alarm* is an alert of severity warning or critical (info notes such as cliffs and
saturation are not alarms). On a healthy run any alarm is a false alarm; on a collapse/explosion run an alarm of
the right kind at or after ``onset − 20`` detects it, an earlier one is a false alarm, an alarm of another kind is a
wrong-kind alarm. Delay = first right alarm − onset; lead = floor step − first right alarm. Baselines: a fixed
threshold (entropy < 1.0 nat for 50 steps, rlwatch's rule) and a relative floor (entropy < 10% of its early level
for 5 steps); both only know "collapse". Dev seeds (0..) are the ones thresholds were tuned on; held-out seeds
(10_000..) were not looked at while tuning. It also times one forecast evaluation at 10k steps.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from entropy_watch.analysis import DetectorConfig, RunSeries, analyze
from entropy_watch.analysis.forecast import evaluate
from entropy_watch.analysis.hygiene import prepare
from entropy_watch.synthetic import COLLAPSE_KINDS, HEALTHY_KINDS, generate

TAU_EARLY = 20
REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "real_runs"


@dataclass
class Outcome:
    kind: str
    label: str
    n: int
    alarms: list[tuple[int, str]]  # (step, kind) with severity >= warning
    onset: int | None
    floor: int | None


def fixed_threshold(steps: np.ndarray, h: np.ndarray, thr: float = 1.0, k: int = 50) -> list[tuple[int, str]]:
    run = 0
    for s, v in zip(steps, h, strict=True):
        run = run + 1 if np.isfinite(v) and v < thr else 0
        if run == k:
            return [(int(s), "collapse")]
    return []


def relative_floor(steps: np.ndarray, h: np.ndarray, frac: float = 0.1, k: int = 5) -> list[tuple[int, str]]:
    fin = h[np.isfinite(h)]
    if fin.size < 10:
        return []
    early = float(np.median(fin[:10]))
    return fixed_threshold(steps, h, frac * early, k)


def detector_alarms(series: RunSeries, config: DetectorConfig | None = None) -> list[tuple[int, str]]:
    res = analyze(series, config)
    return [(a.step, a.kind) for a in res.alerts if a.severity in ("warning", "critical")]


def score(outcomes: list[Outcome]) -> dict[str, float]:
    healthy = [o for o in outcomes if o.label == "healthy"]
    pos = {lab: [o for o in outcomes if o.label == lab] for lab in ("collapse", "explosion")}
    benign = [o for o in outcomes if o.label == "collapse-benign"]
    fa_runs = sum(1 for o in healthy if o.alarms)
    fa_count = sum(len(o.alarms) for o in healthy)
    fa_versions = sum(o.n for o in healthy)
    out: dict[str, float] = {
        "healthy_fa_rate": fa_runs / max(len(healthy), 1),
        "benign_alarm_rate": sum(1 for o in benign if o.alarms) / max(len(benign), 1),
    }
    wrong = 0
    delays: list[float] = []
    leads: list[float] = []
    before_floor = 0
    detected_collapse = 0
    for lab, runs in pos.items():
        hits = 0
        for o in runs:
            early = [a for a in o.alarms if o.onset is not None and a[0] < o.onset - TAU_EARLY]
            fa_count += len(early)
            fa_versions += min(o.onset or 0, o.n)
            right = [a for a in o.alarms if a[1] == lab and a not in early]
            wrong += sum(1 for a in o.alarms if a[1] != lab and a not in early)
            if right:
                hits += 1
                first = right[0][0]
                if lab == "collapse":
                    detected_collapse += 1
                    delays.append(first - (o.onset or 0))
                    if o.floor is None or first < o.floor:
                        before_floor += 1
                    if o.floor is not None:
                        leads.append(o.floor - first)
        out[f"{lab}_recall"] = hits / max(len(runs), 1) if runs else float("nan")
    out["wrong_kind_alarms"] = float(wrong)
    out["median_delay"] = float(np.median(delays)) if delays else float("nan")
    out["median_lead"] = float(np.median(leads)) if leads else float("nan")
    out["share_before_floor"] = before_floor / max(detected_collapse, 1)
    out["fa_per_1k"] = 1000.0 * fa_count / max(fa_versions, 1)
    return out


def synthetic_outcomes(seeds: list[int], per_kind_kinds: tuple[str, ...], n_steps: int) -> dict[str, list[Outcome]]:
    res: dict[str, list[Outcome]] = {"detector": [], "fixed<1.0x50": [], "floor10%x5": []}
    for kind in per_kind_kinds:
        for seed in seeds:
            sr = generate(kind, seed, n_steps)
            series = sr.to_series()
            for name, alarms in (
                ("detector", detector_alarms(series)),
                ("fixed<1.0x50", fixed_threshold(sr.steps, sr.entropy)),
                ("floor10%x5", relative_floor(sr.steps, sr.entropy)),
            ):
                res[name].append(Outcome(kind, sr.label, n_steps, alarms, sr.onset_step, sr.floor_step))
    return res


def print_table(title: str, scores: dict[str, dict[str, float]]) -> None:
    cols = list(next(iter(scores.values())).keys())
    print(f"\n{title}")
    print(f"{'detector':<14}" + "".join(f"{c:>20}" for c in cols))
    for name, s in scores.items():
        print(f"{name:<14}" + "".join(f"{s[c]:>20.3g}" for c in cols))


# --- real runs --------------------------------------------------------------------------------------------------
def load_real(path: Path, spec: dict[str, str]) -> RunSeries:
    """Entropy and reward of one labelled file, through load_log when the importers provide it."""
    try:
        from entropy_watch.importers import load_log  # type: ignore[attr-defined]
    except ImportError:
        load_log = None
    if load_log is not None:
        from entropy_watch import metrics as M

        runs = load_log(path, mapping={M.ENTROPY_MEAN: spec["entropy"], M.REWARD_MEAN: spec["reward"]})
        return RunSeries.from_imported(runs[0])
    rows: list[dict[str, object]]
    if spec["format"] == "jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        with path.open() as fh:
            rows = list(csv.DictReader(fh))

    def col(name: str) -> tuple[np.ndarray, np.ndarray]:
        s, v = [], []
        for r in rows:
            x = r.get(name)
            if x in (None, ""):
                continue
            s.append(int(float(r[spec["step"]])))  # type: ignore[arg-type]
            v.append(float(x))  # type: ignore[arg-type]
        return np.asarray(s, dtype=np.int64), np.asarray(v)

    es, ev = col(spec["entropy"])
    return RunSeries.from_arrays(path.stem[:60], es, ev, reward=col(spec["reward"]))


def real_floor_step(series: RunSeries) -> int | None:
    h = series.entropy
    early = float(np.median(h[np.isfinite(h)][:5]))
    sm = np.array([np.nanmedian(h[max(0, i - 5) : i + 6]) for i in range(h.size)])
    below = sm < 0.1 * early
    return int(series.steps[np.argmax(below)]) if below.any() else None


def real_runs(real_dir: Path) -> None:
    labels = json.loads((real_dir / "labels.json").read_text())
    print(f"\nReal runs ({real_dir}): first alarm (step:kind) per detector; floor = smoothed H < 10% of early level")
    hdr = f"{'file':<58}{'label':<16}{'floor':>7}  {'detector':<34}{'fixed<1.0x50':<16}{'floor10%x5':<14}ok"
    print(hdr)
    all_ok = True
    for fname, spec in labels.items():
        series = load_real(real_dir / fname, spec)
        res = analyze(series)
        alarms = [(a.step, a.kind) for a in res.alerts if a.severity in ("warning", "critical")]
        infos = sorted({a.kind for a in res.alerts if a.severity == "info"})
        floor = real_floor_step(series)
        lab = spec["label"]
        if lab in ("collapse", "explosion"):
            right = [a for a in alarms if a[1] == lab]
            ok = bool(right) and (lab != "collapse" or floor is None or right[0][0] < floor)
        elif lab == "collapse-benign":
            ok = not alarms
        elif lab == "healthy":
            ok = not alarms
        else:
            ok = True  # ambiguous: reported, not scored
        all_ok &= ok
        first = {}
        for s, k in alarms:
            first.setdefault(k, s)
        det = ", ".join(f"{s}:{k}" for k, s in first.items()) or "-"
        if infos:
            det += f" (+info {'/'.join(infos)})"
        fx = fixed_threshold(series.steps, series.entropy)
        rf = relative_floor(series.steps, series.entropy)
        f1 = f"{fx[0][0]}" if fx else "-"
        f2 = f"{rf[0][0]}" if rf else "-"
        mark = "n/a" if lab == "ambiguous" else ("yes" if ok else "NO")
        print(
            f"{fname[:57]:<58}{lab:<16}{floor if floor is not None else '-':>7}  {det[:33]:<34}{f1:<16}{f2:<14}{mark}"
        )
    print(f"real-run targets {'MET' if all_ok else 'NOT met'}")


def time_one_evaluation(n: int = 10_000) -> None:
    """Cost of one forecast evaluation at the end of a 10k-step run (gated, and with the fits and bootstrap forced),
    and of a whole post-hoc analysis (one evaluation per 10 versions)."""
    cfg = DetectorConfig()
    sr = generate("collapse_exp", 0, n)
    prep = prepare(sr.to_series(), cfg)
    i = n - 1
    for always in (False, True):
        evaluate(prep, i, cfg, always_fit=always)
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            evaluate(prep, i, cfg, always_fit=always)
        ms = 1000 * (time.perf_counter() - t0) / reps
        what = "with fits + bootstrap (B=200)" if always else "as scheduled (fits only past the gates)"
        print(f"One forecast evaluation at {n} steps, {what}: {ms:.1f} ms (budget 50 ms)")
    t0 = time.perf_counter()
    analyze(sr.to_series())
    print(f"Whole-run post-hoc analysis of {n} steps: {time.perf_counter() - t0:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=20, help="seeds per synthetic kind")
    ap.add_argument("--n-steps", type=int, default=600)
    ap.add_argument("--seeds", choices=["dev", "heldout", "both"], default="both")
    ap.add_argument("--real", type=Path, default=REAL_DIR)
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    kinds = (*HEALTHY_KINDS, *COLLAPSE_KINDS, "explosion", "benign")
    sets = {"dev": list(range(args.per_kind)), "heldout": list(range(10_000, 10_000 + args.per_kind))}
    for name, seeds in sets.items():
        if args.seeds not in (name, "both"):
            continue
        t0 = time.perf_counter()
        res = synthetic_outcomes(seeds, kinds, args.n_steps)
        n_runs = len(res["detector"])
        scores = {k: score(v) for k, v in res.items()}
        by_kind: dict[str, list[int]] = {}
        for o in res["detector"]:
            by_kind.setdefault(o.kind, []).append(int(bool(o.alarms)))
        slices = ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in by_kind.items())
        secs = time.perf_counter() - t0
        print_table(f"Synthetic, {name} seeds: {n_runs} runs x {args.n_steps} steps ({secs:.0f} s)", scores)
        print(f"detector, runs with >= 1 alarm by kind: {slices}")
    if args.real.exists():
        real_runs(args.real)
    if not args.no_timing:
        time_one_evaluation()


if __name__ == "__main__":
    main()
