"""Score entropy_watch's detector against rlwatch 0.5.1, rldoctor 0.2.0 and rlprobe 0.1.0 (their defaults), on the same
inputs in the same run: every labelled real run in shared/real_runs, the same runs logged as TRL logs them (the mean
over every 2, 5 and 12 steps: ``logging_steps``, the shape of most users' logs), and synthetic suites at 40, 100, 400
and 4,000 points per run whose noise is fitted to the real logs.

Run:  make bench-env && .venv-bench/bin/python benchmarks/bench_detectors.py [--per-kind 120] [--seeds heldout]
      [--densities 40,100,400,4000] [--tools ours,rlwatch,rldoctor,rldoctor-posthoc,rlprobe] [--no-timing]
      [--kinds healthy,steady_collapse,...] [--set NAME=VALUE ...] [--real DIR]
      e.g. the decelerating collapses beside the exponential ones, ours alone, a forecast option switched on:
      .venv/bin/python benchmarks/bench_detectors.py --tools ours --densities 40,100,400 --no-timing \
          --kinds steady_collapse,fast_collapse,decelerating_collapse [--set NAME=VALUE]

The peers live in the separate benchmark environment ``.venv-bench`` (``make bench-env``), never in the project's
dependencies; without them the script scores ours alone and says which tools are missing. Each is driven through
its documented interface, as a user would, with every detection threshold at its default:

* rlwatch — ``rlwatch.attach(framework="manual")`` then ``monitor.log_step(step, entropy=, reward_mean=)`` per
  logged point (its live API); alerts of ``entropy_collapse`` are collapse alarms (it has no explosion rule);
* rldoctor — ``rl_doctor.live.LiveMonitor()`` fed ``log({"entropy", "reward"}, step=)`` per point (its live mode:
  first check at record 75, then every 25); ``rldoctor-posthoc`` is ``diagnose(run_from_records(all rows))`` once
  the log is complete (its CLI's diagnosis, alarm time = the last point). ``entropy_collapse`` findings of
  severity ≥ WARNING are collapse alarms; its ETA to the floor (a point estimate, no interval) is scored too;
* rlprobe — the run recorded as its ``StepRecord`` rows (``entropy_mean``, ``reward_mean``) and diagnosed by its
  doctor engine (``diagnose_view``, what ``rlprobe doctor`` and ``rlprobe watch`` run) at its live cadence: every
  25 global steps once 30 rows exist; ``ENTROPY_COLLAPSE`` findings (warn or critical) are collapse alarms;
* ours — ``entropy_watch.analysis.analyze`` with the default DetectorConfig (alerts carry the step they were
  raised at; live and post hoc agree, tests/analysis/test_run.py).

Scoring (``entropy_watch.analysis.scoring``, shared with the tests): an alarm is a warning or critical alert; the
floor is the detector's, max(0.1·H_ref, 0.02) and at most H_ref/4; on real logs H_ref is the median of the first 3
points and "entropy passes a level" means its centered rolling median of 5 points does; on synthetic runs the truth
is the noiseless curve. Columns:
false alarms on healthy runs (share with a collapse or explosion alarm), recall per kind, wrong-kind alarms,
median explosion delay in logged points after 3·H_ref (negative = earlier), share of detected collapses alarmed
before the floor, and, over collapses that reach the floor, the 80% ETA interval's coverage of the true crossing
and the median absolute ETA error in points of the first collapse alarm (under each table: how many intervals the
coverage rests on, its 95% interval, and the alarms' median lead beside the error). A forecast's error grows with
its lead, so a tool that alarms later has a smaller first error for that reason alone: ours and a peer's ETA errors
are compared at a matched lead instead — over the collapses both alarmed, at the later of the two first alarms,
ours as our verdict shows it then and the peer's latest ETA by then. Each number ours is behind a peer on is listed
with the one-sided Fisher exact p of a gap at least that large between two equally good tools, where the column is a
share of runs (``share_counts``, ``worse_p``; medians are not tested), and the summary says how many are under 0.05:
one false alarm in 360 healthy runs against a silent tool's none reads p 0.5. Tuning seeds are 0..; held-out seeds
start at 50,000 (the numbers to quote), 120 per kind by default: the healthy kinds then give 360 runs, so one false
alarm moves the rate by 0.003. Seeds 10,000.. were the held-out set until stop 25, but their single failures had
been read one by one for several sessions, and fresh seeds then showed 400-point false alarms of 3% where they
showed 1%; and at 20 or 60 per kind a single run moved a rate by 0.017 or 0.006, and most comparisons rested on
single runs.
``--kinds`` replaces the synthetic suite's kinds (default ``SUITE_KINDS``, the issue's headline suite; e.g. the
``decelerating_collapse`` runs, not in it); ``--set NAME=VALUE`` runs ours with that DetectorConfig field changed
(real logs and synthetic suites alike). Under each synthetic table, per collapse kind, ours: recall, alarms before
the floor, and the first alarms' ETA intervals — how many hold the crossing, end before it (early) or start after it
(late) — with the median error and lead in points.
Timing: one live verdict at 10k points and a whole-run analysis of 100k points.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from entropy_watch.analysis import Analyzer, DetectorConfig, RunSeries, analyze
from entropy_watch.analysis.scoring import (
    EXPLODE_MULT,
    Alarm,
    Outcome,
    crossing,
    eta_records,
    floor_of,
    logged_every,
    share_counts,
    summarize,
    worse_p,
)
from entropy_watch.synthetic import KINDS, SUITE_KINDS, NoiseFit, fit_noise, generate

REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "real_runs"
HELDOUT = 50_000  # fresh at stop 26: see the module docstring
TOOLS = ("ours", "rlwatch", "rldoctor", "rldoctor-posthoc", "rlprobe")
COLUMNS = (
    ("healthy_fa_rate", "FA healthy", "low"),
    ("collapse_recall", "coll recall", "high"),
    ("explosion_recall", "expl recall", "high"),
    ("wrong_kind", "wrong kind", "low"),
    ("explosion_delay_median", "expl delay", "low"),
    ("collapse_before_floor", "before floor", "high"),
    ("eta_coverage", "ETA cover", "band"),
    ("eta_abs_err_median", "ETA err", "low"),
    ("benign_alarm_rate", "benign alarm", "low"),
)


@dataclass
class Run:
    """One input: arrays, label and truth (point indices), shared by every tool."""

    name: str
    label: str
    steps: np.ndarray
    entropy: np.ndarray
    reward: np.ndarray | None
    onset: int | None
    truth: int | None
    meta: dict[str, Any]
    clean: np.ndarray | None = None  # synthetic runs: the noiseless curve (nats)

    def series(self) -> RunSeries:
        """The run as our analysis reads it (every tool gets the same arrays)."""
        return RunSeries.from_arrays(self.name, self.steps, self.entropy, reward=self.reward, meta=dict(self.meta))

    @property
    def spacing(self) -> float:
        return float(np.median(np.diff(self.steps))) if self.steps.size > 1 else 1.0

    def outcome(self, alarms: list[Alarm], infos: int = 0) -> Outcome:
        ts = float(self.steps[self.truth]) if self.truth is not None else None
        return Outcome(self.label, len(self.steps), alarms, self.onset, self.truth, ts, self.spacing, infos)


# --- the tools ---------------------------------------------------------------------------------------------------
OURS = DetectorConfig()
"""The config ours runs with everywhere in this script (the default; ``--set`` changes fields of it)."""


def run_ours(run: Run) -> tuple[list[Alarm], int]:
    res = analyze(run.series(), OURS)
    index = {int(x): i for i, x in enumerate(run.steps)}
    alarms, infos = [], 0
    for a in res.alerts:  # step order
        if a.severity == "info":
            infos += 1
            continue
        ev = a.evidence
        alarms.append(
            Alarm(
                index[a.step],
                a.kind if a.kind in ("collapse", "explosion") else "other",
                ev.get("eta_step_median"),
                ev.get("eta_step_lo"),
                ev.get("eta_step_hi"),
            )  # fmt: skip
        )
    return alarms, infos


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence a tool's console output (its alert channels), not its detection."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def run_rlwatch(run: Run) -> tuple[list[Alarm], int]:
    import rlwatch

    alarms: list[Alarm] = []
    with tempfile.TemporaryDirectory() as d, _quiet():
        os.environ["RLWATCH_LOG_DIR"] = d
        mon = rlwatch.attach(framework="manual", run_id=f"bench-{run.name}"[:60])
        for i, s in enumerate(run.steps):
            h = float(run.entropy[i])
            r = float(run.reward[i]) if run.reward is not None and np.isfinite(run.reward[i]) else None
            for al in mon.log_step(int(s), entropy=h if np.isfinite(h) else None, reward_mean=r) or []:
                alarms.append(Alarm(i, "collapse" if al.detector == "entropy_collapse" else "other"))
        mon.stop()
    return alarms, 0


def _doctor_kind(detector: str) -> str:
    return "collapse" if detector == "entropy_collapse" else "other"


def _records(run: Run) -> list[dict[str, Any]]:
    out = []
    for i, s in enumerate(run.steps):
        rec: dict[str, Any] = {"step": int(s), "entropy": float(run.entropy[i])}
        if run.reward is not None and np.isfinite(run.reward[i]):
            rec["reward"] = float(run.reward[i])
        out.append(rec)
    return out


def run_rldoctor(run: Run) -> tuple[list[Alarm], int]:
    from rl_doctor.live import LiveMonitor

    alarms: list[Alarm] = []
    with _quiet():
        mon = LiveMonitor(on_finding=lambda f: None)  # the default callback only logs
        for i, rec in enumerate(_records(run)):
            for f in mon.log({k: v for k, v in rec.items() if k != "step"}, step=rec["step"]):
                eta = f.metrics.get("eta_steps_to_floor")
                e = float(run.steps[i] + eta) if eta else None
                alarms.append(Alarm(i, _doctor_kind(f.detector), e))
    return alarms, 0


def run_rldoctor_posthoc(run: Run) -> tuple[list[Alarm], int]:
    from rl_doctor import Severity, diagnose, run_from_records

    with _quiet():
        d = diagnose(run_from_records(_records(run)))
    last = len(run.steps) - 1
    alarms = []
    for f in d.problems:
        if f.severity >= Severity.WARNING:
            eta = f.metrics.get("eta_steps_to_floor")
            alarms.append(Alarm(last, _doctor_kind(f.detector), float(run.steps[last] + eta) if eta else None))
    return alarms, 0


def run_rlprobe(run: Run) -> tuple[list[Alarm], int]:
    from rlprobe.doctor.engine import diagnose_view
    from rlprobe.doctor.runview import RunView
    from rlprobe.schemas import RunManifest, StepRecord

    manifest = RunManifest(run_id=run.name[:60], created_at="2026-01-01T00:00:00Z", algorithm="grpo")
    records = []
    for i, s in enumerate(run.steps):
        r = float(run.reward[i]) if run.reward is not None and np.isfinite(run.reward[i]) else None
        h = float(run.entropy[i])
        records.append(StepRecord(step=int(s), entropy_mean=h if np.isfinite(h) else None, reward_mean=r))
    seen: set[tuple[str, str]] = set()
    alarms: list[Alarm] = []
    with _quiet():
        for i, s in enumerate(run.steps):
            if int(s) % 25 != 0 or i + 1 < 30:  # its TRL live cadence; RunWatcher's min_steps
                continue
            for f in diagnose_view(RunView(manifest, records[: i + 1])):
                if f.severity == "info" or (f.signature_id, f.severity) in seen:
                    continue
                seen.add((f.signature_id, f.severity))
                alarms.append(Alarm(i, "collapse" if f.signature_id == "ENTROPY_COLLAPSE" else "other"))
    return alarms, 0


RUNNERS: dict[str, Callable[[Run], tuple[list[Alarm], int]]] = {
    "ours": run_ours,
    "rlwatch": run_rlwatch,
    "rldoctor": run_rldoctor,
    "rldoctor-posthoc": run_rldoctor_posthoc,
    "rlprobe": run_rlprobe,
}
MODULES = {"rlwatch": "rlwatch", "rldoctor": "rl_doctor", "rldoctor-posthoc": "rl_doctor", "rlprobe": "rlprobe"}


def available(tools: list[str]) -> list[str]:
    import importlib.util

    ok = [t for t in tools if t == "ours" or importlib.util.find_spec(MODULES[t]) is not None]
    missing = sorted(set(tools) - set(ok))
    if missing:
        print(f"not installed here (run `make bench-env` and use .venv-bench/bin/python): {', '.join(missing)}")
    return ok


# --- inputs ------------------------------------------------------------------------------------------------------
def load_real(real_dir: Path) -> list[Run]:
    from entropy_watch.importers import load_log

    labels = json.loads((real_dir / "labels.json").read_text())
    runs = []
    for fname, spec in labels.items():
        s = RunSeries.from_imported(load_log(real_dir / fname)[0])
        truth = _truth(s.entropy, spec["label"])
        runs.append(Run(fname, spec["label"], s.steps, s.entropy, s.reward(), None, truth, {}))
    return runs


def _truth(h: np.ndarray, label: str) -> int | None:
    """A real log's truth (point index): the floor crossing of a collapse, 3·H_ref of an explosion, H_ref the median
    of the first 3 points."""
    ref = float(np.median(h[np.isfinite(h)][:3]))
    if label in ("collapse", "collapse-benign"):
        return crossing(h, floor_of(ref), above=False)
    if label == "explosion":
        return crossing(h, EXPLODE_MULT * ref, above=True, start=3)
    return None


THIN_EVERY = (2, 5, 12)  # TRL's logging_steps: the defaults users pick; 12 brings a 500-step run to 41 points


def logged_like_trl(runs: list[Run], every: tuple[int, ...] = THIN_EVERY, min_points: int = 40) -> list[Run]:
    """The labelled (not ambiguous) real runs as TRL would have logged them: the mean of each metric over every k
    steps, stamped at the interval's last step (``logging_steps = k``), for each k that leaves ``min_points``. The
    truth is taken on the thinned log the way :func:`load_real` takes it."""
    out = []
    for r in runs:
        for k in every:
            if r.label == "ambiguous" or len(r.steps) // k < min_points:
                continue
            steps, h, rw = logged_every(k, r.steps, r.entropy, r.reward)
            out.append(Run(f"{r.name}/mean-{k}", r.label, steps, h, rw, None, _truth(h, r.label), {}))
    return out


def noise_for(n: int, fits: list[NoiseFit], k: int = 4) -> list[NoiseFit]:
    """The fits of the k real runs closest to ``n`` points (log distance): a 40-point suite gets the noise of
    40-point logs, a 4,000-point suite that of dense logs."""
    return sorted(fits, key=lambda f: abs(np.log(f.n_points / n)))[:k]


def synthetic(kinds: tuple[str, ...], seeds: list[int], n: int, fits: list[NoiseFit]) -> list[Run]:
    pool = noise_for(n, fits)
    runs = []
    for kind in kinds:
        for seed in seeds:
            sr = generate(kind, seed, n, noise=pool[seed % len(pool)])
            meta = {"vocab_size": sr.vocab_size} if sr.vocab_size else {}
            runs.append(Run(f"{kind}-{n}-s{seed}", sr.label, sr.steps, sr.entropy, sr.reward, sr.onset_step,
                            sr.floor_step, meta, sr.clean))  # fmt: skip
    return runs


# --- reporting ---------------------------------------------------------------------------------------------------
def score(runs: list[Run], tools: list[str]) -> dict[str, list[Outcome]]:
    out: dict[str, list[Outcome]] = {t: [] for t in tools}
    for run in runs:
        for t in tools:
            alarms, infos = RUNNERS[t](run)
            out[t].append(run.outcome(alarms, infos))
    return out


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def ahead(ours: float, peer: float, sense: str) -> bool | None:
    """Is ours at least as good as the peer on this column? None when neither has a number."""
    if not np.isfinite(ours):
        return None if not np.isfinite(peer) else False
    if not np.isfinite(peer):
        return True
    if sense == "high":
        return ours >= peer
    if sense == "low":
        return ours <= peer
    return abs(ours - 0.8) <= abs(peer - 0.8)  # coverage: closest to the nominal 80%


Behind = list[tuple[str, float]]
"""The numbers ours is behind a peer on: (what, one-sided p of a gap that large by chance; NaN where untested)."""


def print_table(
    title: str,
    table: dict[str, dict[str, float]],
    counts: dict[str, dict[str, tuple[int, int]]],
    skip: tuple[str, ...] = (),
    elsewhere: tuple[str, ...] = (),
) -> Behind:
    """Print one table; return the numbers on which ours is behind a peer, each with the one-sided Fisher exact p of
    a gap at least that large between two equally good tools, where the column is a share (``counts``: per tool,
    :func:`share_counts`; medians are not tested). Columns in ``skip`` are neither printed nor compared; those in
    ``elsewhere`` are printed and compared by the caller (the ETA error, at a matched lead)."""
    print(f"\n{title}")
    print(f"{'tool':<18}" + "".join(f"{label:>13}" for _, label, _ in COLUMNS))
    for tool, s in table.items():
        print(f"{tool:<18}" + "".join(f"{'-' if c in skip else _fmt(s[c]):>13}" for c, _, _ in COLUMNS))
    behind: Behind = []
    if "ours" in table:
        for tool, s in table.items():
            for c, label, sense in COLUMNS:
                if c in skip or c in elsewhere:
                    continue
                if tool != "ours" and ahead(table["ours"][c], s[c], sense) is False:
                    tested = c in counts["ours"]
                    p = worse_p(counts["ours"][c], counts[tool][c], sense == "low") if tested else float("nan")
                    behind.append((f"{label} vs {tool}", p))
    if "ours" not in table or len(table) < 2:
        return behind  # no peer beside ours (or ours not run): nothing compared, nothing to claim
    after = f" (and {', '.join(label for c, label, _ in COLUMNS if c in elsewhere)}: below)" if elsewhere else ""
    print(("ours ahead of or level with every peer on every number" if not behind
           else f"ours BEHIND on: {_behind_text(behind)}") + after)  # fmt: skip
    return behind


def _behind_text(behind: Behind) -> str:
    return "; ".join(what + ("" if np.isnan(p) else f" (p {p:.2g})") for what, p in behind)


def eta_lines(results: dict[str, list[Outcome]]) -> None:
    """Per tool with ETAs: how many intervals the coverage rests on, with its 95% (Wilson) interval, and the median
    lead of the first collapse alarm (points before the crossing) beside the median error, and the median of each
    alarm's error over its lead — an alarm raised just before the floor has a small error for that reason alone."""
    for tool, outs in results.items():
        recs = eta_records(outs)
        if not recs:
            continue
        hits = [h for h, _, _ in recs if h is not None]
        errs, leads = np.array([e for _, e, _ in recs]), np.array([ld for _, _, ld in recs])  # leads ≥ 1 point
        lead, err, rel = float(np.median(leads)), float(np.median(errs)), float(np.median(errs / leads))
        cover = ""
        if hits:
            ci = binomtest(sum(hits), len(hits)).proportion_ci(confidence_level=0.95, method="wilson")
            early, late = eta_misses(outs)
            cover = (f"{sum(hits)} of {len(hits)} intervals hold the crossing (95% interval "
                     f"{ci.low:.2f}-{ci.high:.2f}; {early} end before it, {late} start after it); ")  # fmt: skip
        print(
            f"{tool}, ETAs of {len(recs)} first collapse alarms: {cover}median lead {lead:g} points, median error "
            f"{err:.3g} points (median error / lead {rel:.2f})"
        )


def eta_misses(outs: list[Outcome]) -> tuple[int, int]:
    """(early, late): of the intervals :func:`~entropy_watch.analysis.scoring.eta_records` scores, how many end
    before the true crossing (the forecast expected the floor too soon) and how many start after it."""
    early = late = 0
    for o in outs:
        a = o.first("collapse") if o.label == "collapse" else None
        if a is None or o.truth is None or o.truth_step is None or a.eta is None or a.index >= o.truth:
            continue
        if a.eta_hi is not None and a.eta_hi < o.truth_step:
            early += 1
        elif a.eta_lo is not None and a.eta_lo > o.truth_step:
            late += 1
    return early, late


def kind_lines(runs: list[Run], outs: list[Outcome]) -> None:
    """Ours per collapse kind of a synthetic suite (the table pools them): recall, the share of detected collapses
    alarmed before the floor, and the first alarms' ETA intervals — held, early, late — with the median error and
    lead in points (over the collapses that reach the floor, alarmed before it, as the table's ETA columns)."""
    by: dict[str, list[Outcome]] = {}
    for run, o in zip(runs, outs, strict=True):
        if run.label == "collapse":
            by.setdefault(run.name.split("-")[0], []).append(o)
    for kind, os_ in by.items():
        s, recs = summarize(os_), eta_records(os_)
        hits = [h for h, _, _ in recs if h is not None]
        early, late = eta_misses(os_)
        err = float(np.median([e for _, e, _ in recs])) if recs else float("nan")
        lead = float(np.median([ld for _, _, ld in recs])) if recs else float("nan")
        print(f"ours, {kind} ({len(os_)} runs): recall {_fmt(s['collapse_recall'])}, before floor "
              f"{_fmt(s['collapse_before_floor'])}; ETA intervals {sum(hits)} of {len(hits)} hold the crossing "
              f"({_fmt(s['eta_coverage'])}), {early} early, {late} late; median error {_fmt(err)} points, median "
              f"lead {_fmt(lead)}")  # fmt: skip


def rise_eta_line(runs: list[Run], results: dict[str, list[Outcome]]) -> None:
    """Ours only (no peer forecasts a rise): the rise ETA every explosion warning and the verdict quote ("at this
    rate 6× H_ref by step N"), at the first explosion warning of each synthetic explosion whose noiseless curve
    crosses that warning's critical line after it: how many 80% intervals hold the crossing, the median lead and the
    median absolute error in points."""
    if "ours" not in results:
        return
    hits, errs, leads = [], [], []
    for run, o in zip(runs, results["ours"], strict=True):
        first = o.first("explosion")
        if run.label != "explosion" or run.clean is None or first is None:
            continue
        a = next(a for a in analyze(run.series(), OURS).alerts if a.kind == "explosion" and a.severity != "info")
        f, crit = a.evidence.get("forecast"), a.evidence.get("crit_level")
        cross = np.flatnonzero(run.clean >= crit) if f is not None and crit is not None else np.zeros(0, int)
        if cross.size == 0 or cross[0] <= first.index:
            continue
        truth = float(run.steps[cross[0]])
        lo = np.inf if f["eta_lo"] is None else a.step + f["eta_lo"]  # None: never (JSON-able evidence)
        hi = np.inf if f["eta_hi"] is None else a.step + f["eta_hi"]
        hits.append(lo <= truth <= hi)
        leads.append(int(cross[0]) - first.index)
        eta = a.evidence.get("eta_step_median")
        errs.append(np.inf if eta is None else abs(eta - truth) / run.spacing)  # no ETA ("never"): the worst error
    if hits:
        ci = binomtest(sum(hits), len(hits)).proportion_ci(confidence_level=0.95, method="wilson")
        print(
            f"ours, rise ETAs of {len(hits)} first explosion warnings (to the critical line; no peer has rise ETAs): "
            f"{sum(hits)} of {len(hits)} intervals hold the crossing (95% interval {ci.low:.2f}-{ci.high:.2f}); "
            f"median lead {np.median(leads):g} points, median error {np.median(errs):.3g} points"
        )


def _our_eta_at(run: Run, i: int) -> float | None:
    """The ETA to the floor (absolute step) that our verdict shows at point ``i`` of ``run``: what a user reads on
    every surface at that moment; None when the verdict there is not a collapse on course to the floor."""
    o = Analyzer(OURS).verdict(run.series(), at_step=int(run.steps[i])).forecast
    return o.eta_step if o is not None and o.direction == "decay" else None


def matched_eta_lines(runs: list[Run], results: dict[str, list[Outcome]]) -> list[str]:
    """The ETA error at a matched lead, beside the raw one: tools that alarm later have less time left to forecast,
    so their first ETAs are closer for that reason alone. Per peer with ETAs, over the collapses both alarmed before
    the floor: at the later of the two first alarms, each tool's latest ETA by then (ours: our verdict's ETA at that
    point; the peer's: its latest alarm's), its median absolute error in points and the median lead. Returns the
    peers ours is behind on that error (the raw errors when no collapse was alarmed by both; medians: untested)."""
    behind: Behind = []
    if "ours" not in results:
        return behind
    for tool, outs in results.items():
        if tool == "ours" or not eta_records(outs):
            continue
        ours_err, peer_err, leads, missing = [], [], [], 0
        for run, o_ours, o_peer in zip(runs, results["ours"], outs, strict=True):
            a_o, a_p = o_ours.first("collapse"), o_peer.first("collapse")
            if run.label != "collapse" or run.truth is None or a_o is None or a_p is None or a_p.eta is None:
                continue
            at = max(a_o.index, a_p.index)
            if at >= run.truth:
                continue
            peer = [a.eta for a in o_peer.alarms if a.kind == "collapse" and a.index <= at and a.eta is not None][-1]
            ours = a_o.eta if at == a_o.index else _our_eta_at(run, at)
            if ours is None:
                missing += 1
                continue
            truth = float(run.steps[run.truth])
            ours_err.append(abs(ours - truth) / run.spacing)
            peer_err.append(abs(peer - truth) / run.spacing)
            leads.append(run.truth - at)
        if not leads:
            raw = [float(np.median([e for _, e, _ in eta_records(x)] or [np.nan])) for x in (results["ours"], outs)]
            if ahead(raw[0], raw[1], "low") is False:
                behind.append((f"ETA err vs {tool}", float("nan")))
            continue
        if np.median(ours_err) > np.median(peer_err):
            behind.append((f"ETA err at a matched lead vs {tool}", float("nan")))
        print(
            f"ETA at a matched lead, ours vs {tool}: {len(leads)} collapses both alarmed (median lead "
            f"{np.median(leads):g} points): median error ours {np.median(ours_err):.3g}, {tool} "
            f"{np.median(peer_err):.3g} points" + (f"; ours showed no ETA at {missing} more" if missing else "")
        )
    return behind


def real_table(runs: list[Run], results: dict[str, list[Outcome]]) -> None:
    print("\nReal runs: first alarm per tool as point:kind (c collapse, e explosion, o other); truth = point index")
    print(f"{'file':<52}{'label':<16}{'truth':>6}  " + "".join(f"{t:<18}" for t in results))
    for k, run in enumerate(runs):
        cells = []
        for _t, outs in results.items():
            o = outs[k]
            firsts: dict[str, int] = {}
            for a in o.alarms:
                firsts.setdefault(a.kind, a.index)
            cells.append(", ".join(f"{i}:{kind[0]}" for kind, i in firsts.items()) or "-")
        truth = "-" if run.truth is None else str(run.truth)
        print(f"{run.name[:51]:<52}{run.label:<16}{truth:>6}  " + "".join(f"{c[:17]:<18}" for c in cells))


def real_eta_line(runs: list[Run]) -> None:
    """Ours only (no peer gives an ETA interval): how honest the verdict's 80% ETA interval is on the real collapse
    logs, whose decline slows down as it goes (the synthetic collapses are exponential: the log-space fit's own
    shape). At each tenth of every collapse log (raw and as TRL logs it) where the verdict is a collapse with an ETA,
    before the floor crossing (the truth, as :func:`load_real` takes it): the interval holds the crossing, ends before
    it (or before the end of a log that never crossed: early), starts after it (late), or is open (no crossing by
    the log's end and the interval reaches past it: undecidable)."""
    tally = {"hold": 0, "early": 0, "late": 0, "open": 0}
    for run in runs:
        if run.label != "collapse":
            continue
        live, s = Analyzer(OURS), run.series()
        end = float(run.steps[-1])
        cross = float(run.steps[run.truth]) if run.truth is not None else None
        for i in sorted({int(f * (len(run.steps) - 1)) for f in np.linspace(0.1, 1.0, 10)}):
            if run.truth is not None and i >= run.truth:
                break
            f = live.verdict(s, at_step=int(run.steps[i])).forecast
            if f is None or f.direction != "decay" or f.eta_lo_step is None:
                continue
            hi = np.inf if f.eta_hi_step is None else float(f.eta_hi_step)
            if cross is None:
                tally["early" if hi < end else "open"] += 1
            else:
                tally["hold" if f.eta_lo_step <= cross <= hi else "early" if hi < cross else "late"] += 1
    decided = tally["hold"] + tally["early"] + tally["late"]
    print(f"ours, verdict ETA intervals on the real collapse logs at each tenth before the floor: {tally['hold']} of "
          f"{decided} decidable hold the crossing, {tally['early']} end before it (or before the end of a log that "
          f"never crossed), {tally['late']} start after it; {tally['open']} open (no crossing by the end, the "
          f"interval past it)")  # fmt: skip


def timing() -> None:
    """One live verdict at 10k points (an Analyzer that has seen the first 9,999 gets one more; median of 5 tries on
    5 runs) and a 100k-point whole-run analysis. On a shared machine, read the load average printed beside them."""
    times = []
    for seed in range(5):
        s = generate("fast_collapse", seed, 10_000).to_series()
        live = Analyzer(OURS)
        live.analyze(s.prefix(int(s.steps[-2])))
        t0 = time.perf_counter()
        live.verdict(s)
        times.append(1000 * (time.perf_counter() - t0))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nOne live evaluation (Analyzer.verdict, one new point) at 10,000 points: median {np.median(times):.0f} ms "
          f"of 5 (target 50 ms; load average {load:.1f})")  # fmt: skip
    big = generate("steady_collapse", 0, 100_000).to_series()
    t0 = time.perf_counter()
    analyze(big, OURS)
    print(f"Whole-run analysis of 100,000 points: {time.perf_counter() - t0:.2f} s (target 5 s)")


def config_with(changes: list[str]) -> DetectorConfig:
    """The default DetectorConfig with each ``NAME=VALUE`` of ``changes`` set (VALUE read as JSON, else as text;
    a list becomes a tuple)."""
    kw: dict[str, Any] = {}
    for item in changes:
        name, sep, value = item.partition("=")
        if not sep or name not in DetectorConfig.__dataclass_fields__:
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE with NAME a DetectorConfig field")
        try:
            v = json.loads(value)
        except json.JSONDecodeError:
            v = value
        kw[name] = tuple(v) if isinstance(v, list) else v
    return DetectorConfig(**kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=120, help="seeds per synthetic kind and density")
    ap.add_argument("--per-kind-dense", type=int, default=8, help="seeds per kind at 4,000 points")
    ap.add_argument("--seeds", choices=["tuning", "heldout", "both"], default="heldout")
    ap.add_argument("--densities", default="40,100,400,4000")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--real", type=Path, default=REAL_DIR, help=f"the labelled real logs (default {REAL_DIR})")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--kinds", default=",".join(SUITE_KINDS), help="the synthetic suite's kinds (default SUITE_KINDS)")
    change = "ours with this DetectorConfig field changed (repeatable; VALUE: JSON, else text)"
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help=change)
    args = ap.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown synthetic kind {unknown[0]!r}; expected some of {', '.join(KINDS)}")
    global OURS
    OURS = config_with(args.set)
    if args.set:
        print(f"ours with DetectorConfig changes: {', '.join(args.set)}")
    tools = available([t.strip() for t in args.tools.split(",") if t.strip()])
    behind: Behind = []

    fits: list[NoiseFit] = []
    if not (args.real / "labels.json").exists():
        print(f"real runs (labels.json) not found in {args.real} (shared/real_runs beside the repository; --real "
              "DIR): real-run tables skipped, synthetic noise from entropy_watch.synthetic.REAL_NOISE (rounded fits: "
              "ETA numbers differ slightly from those quoted)")  # fmt: skip
    else:
        runs = load_real(args.real)
        print("Noise fitted on the real logs (log H around its trend; fit_noise):")
        for r in runs:
            f = fit_noise(r.entropy, r.name)
            if f is not None:
                fits.append(f)
                print(f"  {r.name[:60]:<61} n={f.n_points:>5}  sigma={f.sigma:.3f}  phi={f.phi:.2f}  "
                      f"outliers={f.outliers:.3f}")  # fmt: skip
        t0 = time.perf_counter()
        res = score(runs, tools)
        real_table(runs, res)
        scored = [k for k, r in enumerate(runs) if r.label != "ambiguous"]
        table = {t: summarize([outs[k] for k in scored]) for t, outs in res.items()}
        secs = time.perf_counter() - t0
        title = f"Real runs ({len(scored)} scored, ambiguous reported only; ETA scored on synthetic runs; {secs:.0f} s)"
        counts = {t: share_counts([outs[k] for k in scored]) for t, outs in res.items()}
        behind += print_table(title, table, counts, skip=("eta_coverage", "eta_abs_err_median"))
        thin = logged_like_trl(runs)
        t0 = time.perf_counter()
        res = score(thin, tools)
        table = {t: summarize(outs) for t, outs in res.items()}
        every = ", ".join(map(str, THIN_EVERY))
        title = (f"Real runs logged every {every} steps (the mean over each interval, as TRL's logging_steps; "
                 f"{len(thin)} logs of >= 40 points; {time.perf_counter() - t0:.0f} s)")  # fmt: skip
        counts = {t: share_counts(outs) for t, outs in res.items()}
        behind += print_table(title, table, counts, skip=("eta_coverage", "eta_abs_err_median"))
        if "ours" in tools:
            real_eta_line(runs + thin)
    if not fits:
        from entropy_watch.synthetic import REAL_NOISE

        fits = list(REAL_NOISE)
    seed_sets = {"tuning": 0, "heldout": HELDOUT}
    for name, base in seed_sets.items():
        if args.seeds not in (name, "both"):
            continue
        for n in (int(x) for x in args.densities.split(",")):
            per = args.per_kind_dense if n >= 4000 else args.per_kind
            pool = noise_for(n, fits)
            t0 = time.perf_counter()
            runs = synthetic(kinds, list(range(base, base + per)), n, fits)
            res = score(runs, tools)
            table = {t: summarize(outs) for t, outs in res.items()}
            noise = ", ".join(f"{f.source[:24]} ({f.sigma:.2f}, {f.phi:.2f})" for f in pool)
            title = (f"Synthetic, {name} seeds, {n} points x {len(runs)} runs ({per} per kind; noise (sigma, phi) "
                     f"from {noise}; {time.perf_counter() - t0:.0f} s)")  # fmt: skip
            counts = {t: share_counts(outs) for t, outs in res.items()}
            behind += print_table(title, table, counts, elsewhere=("eta_abs_err_median",))
            if "ours" in res:
                by_kind: dict[str, list[int]] = {}
                for run, o in zip(runs, res["ours"], strict=True):
                    by_kind.setdefault(run.name.split("-")[0], []).append(int(any(a.kind != "other" for a in o.alarms)))
                print("ours, runs with a collapse/explosion alarm by kind: "
                      + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in by_kind.items()))  # fmt: skip
            eta_lines(res)
            if "ours" in res:
                kind_lines(runs, res["ours"])
            rise_eta_line(runs, res)
            behind += matched_eta_lines(runs, res)
    if not args.no_timing:
        timing()
    sig = [(w, p) for w, p in behind if p < 0.05]
    if "ours" not in tools or len(tools) < 2:
        print(f"\nSUMMARY: {', '.join(tools)} alone in this run: no comparison with a peer" if tools else
              "\nSUMMARY: no tool ran (none of --tools is installed here)")  # fmt: skip
        return
    print("\nSUMMARY: " + ("ours ahead of or level with every peer on every number in this run" if not behind
                           else f"ours behind on {len(behind)} numbers: {_behind_text(behind)}"))  # fmt: skip
    if behind:
        print(
            f"Of these, {len(sig)} are gaps two equally good tools would show with under 5% chance (one-sided Fisher "
            f"exact on the runs behind each share; medians untested)" + (f": {_behind_text(sig)}" if sig else "")
        )


if __name__ == "__main__":
    main()
