"""Scoring a detector on labelled runs (DETECTION §B.6): the truth a label implies, and what counts as a hit.

Used by ``benchmarks/bench_detectors.py`` (ours and rlwatch, rldoctor, rlprobe on the same inputs) and by the tests
on the labelled real runs, so both judge by one rule:

* an *alarm* is a warning or critical alert; info notes (saturation, spikes, cliffs) are not alarms;
* the floor of a collapse is the detector's (``DetectorConfig.floor``: ``max(0.1·H_ref, 0.02)`` nats, at most a
  quarter of H_ref); an explosion begins where entropy passes 3·H_ref;
* on a real log, where the curve is noisy, "entropy passes a level" means its **centered rolling median of 5
  points** does (:func:`crossing`); a synthetic run's truth is its noiseless curve;
* a collapse alarm is timely when it comes before the floor crossing; an explosion alarm's delay is counted in
  logged points after the 3·H_ref crossing (negative: it came earlier);
* a wrong-kind alarm is a collapse alarm on an explosion run or the reverse; on a healthy run any collapse or
  explosion alarm is a false alarm; a collapse-benign run should get info notes only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from entropy_watch.analysis.config import DetectorConfig

SMOOTH_POINTS = 5
EXPLODE_MULT = 3.0
PRIMARY = ("collapse", "explosion")


def centered_median(x: np.ndarray, width: int = SMOOTH_POINTS) -> np.ndarray:
    """Centered rolling median (NaN-aware; shorter windows at the ends), shape (n,)."""
    x = np.asarray(x, dtype=np.float64)
    h = width // 2
    padded = np.concatenate([np.full(h, np.nan), x, np.full(h, np.nan)])
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(sliding_window_view(padded, width), axis=1)


def crossing(values: np.ndarray, level: float, *, above: bool, smooth: bool = True, start: int = 0) -> int | None:
    """Index of the first point at or after ``start`` where ``values`` (smoothed by :func:`centered_median` over the
    whole series unless ``smooth`` is False) is at or past ``level`` (above it, or at/below it); None if never."""
    v = centered_median(values) if smooth else np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        hit = v >= level if above else v <= level
    hit[: max(start, 0)] = False
    return int(np.argmax(hit)) if hit.any() else None


def logged_every(
    k: int, steps: np.ndarray, entropy: np.ndarray, reward: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(steps, entropy, reward) as TRL would have logged them with ``logging_steps = k``: the mean of each metric
    over every k points (NaN-aware: an interval without a value logged is NaN), stamped at the interval's last step;
    a trailing partial interval is dropped."""
    m = len(steps) // k

    def mean(x: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.asarray(x, dtype=np.float64)[: m * k].reshape(m, k), axis=1)

    return np.asarray(steps)[k - 1 : m * k : k], mean(entropy), None if reward is None else mean(reward)


def floor_of(h_ref: float) -> float:
    return float(DetectorConfig().floor(h_ref))


@dataclass
class Alarm:
    """One alarm as scoring sees it: the point index, the kind (collapse / explosion / other), and the ETA (an
    absolute step, with its interval) when the tool gave one."""

    index: int
    kind: str
    eta: float | None = None
    eta_lo: float | None = None
    eta_hi: float | None = None


@dataclass
class Outcome:
    """One run's alarms against its truth: ``onset`` and ``truth`` are point indices (``truth``: the floor crossing
    for a collapse, the 3·H_ref crossing for an explosion), ``truth_step`` the crossing's logged step, ``spacing``
    the steps between logged points (ETA errors are reported in points)."""

    label: str
    n: int
    alarms: list[Alarm]
    onset: int | None
    truth: int | None
    truth_step: float | None = None
    spacing: float = 1.0
    infos: int = 0

    def first(self, kind: str) -> Alarm | None:
        return next((a for a in self.alarms if a.kind == kind), None)

    @property
    def detected(self) -> bool:
        return self.label in PRIMARY and self.first(self.label) is not None

    @property
    def wrong_kind(self) -> int:
        return sum(1 for a in self.alarms if a.kind in PRIMARY and self.label in PRIMARY and a.kind != self.label)

    @property
    def false_alarm(self) -> bool:
        """A collapse or explosion alarm on a healthy run, or any alarm on a collapse-benign run."""
        if self.label == "healthy":
            return any(a.kind in PRIMARY for a in self.alarms)
        if self.label == "collapse-benign":
            return bool(self.alarms)
        return False

    @property
    def delay(self) -> int | None:
        """Points from the truth crossing (explosion) or the onset (collapse) to the first right alarm."""
        a = self.first(self.label) if self.label in PRIMARY else None
        ref = self.truth if self.label == "explosion" else self.onset
        return None if a is None or ref is None else a.index - ref

    @property
    def before_floor(self) -> bool | None:
        """For a detected collapse: did the first collapse alarm come before the floor crossing?"""
        a = self.first("collapse") if self.label == "collapse" else None
        if a is None:
            return None
        return self.truth is None or a.index < self.truth


def summarize(outcomes: list[Outcome]) -> dict[str, float]:
    """The issue-10 numbers over a set of outcomes (NaN where undefined)."""
    nan = float("nan")
    healthy = [o for o in outcomes if o.label == "healthy"]
    out: dict[str, float] = {"healthy_fa_rate": _mean([o.false_alarm for o in healthy])}
    for lab in PRIMARY:
        runs = [o for o in outcomes if o.label == lab]
        out[f"{lab}_recall"] = _mean([o.detected for o in runs])
    out["wrong_kind"] = float(sum(o.wrong_kind for o in outcomes))
    ex = [o.delay for o in outcomes if o.label == "explosion" and o.delay is not None]
    out["explosion_delay_median"] = float(np.median(ex)) if ex else nan
    bf = [o.before_floor for o in outcomes if o.label == "collapse" and o.before_floor is not None]
    out["collapse_before_floor"] = _mean(bf)
    cd = [o.delay for o in outcomes if o.label == "collapse" and o.delay is not None]
    out["collapse_delay_median"] = float(np.median(cd)) if cd else nan
    benign = [o for o in outcomes if o.label == "collapse-benign"]
    out["benign_alarm_rate"] = _mean([o.false_alarm for o in benign])
    cov, err = eta_quality(outcomes)
    out["eta_coverage"], out["eta_abs_err_median"] = cov, err
    return out


def share_counts(outcomes: list[Outcome]) -> dict[str, tuple[int, int]]:
    """(runs counted, runs it is a share of) behind each share column of :func:`summarize` — false alarms, recall per
    kind, alarms before the floor, benign alarms — and, for the wrong-kind count, the labelled collapse and explosion
    runs with any wrong-kind alarm among all of them: what a test of two tools' difference on a column reads."""
    healthy = [o.false_alarm for o in outcomes if o.label == "healthy"]
    benign = [o.false_alarm for o in outcomes if o.label == "collapse-benign"]
    bf = [o.before_floor for o in outcomes if o.label == "collapse" and o.before_floor is not None]
    primary = [o.wrong_kind > 0 for o in outcomes if o.label in PRIMARY]
    out = {"healthy_fa_rate": (sum(healthy), len(healthy)), "collapse_before_floor": (sum(bf), len(bf)),
           "benign_alarm_rate": (sum(benign), len(benign)), "wrong_kind": (sum(primary), len(primary))}  # fmt: skip
    for lab in PRIMARY:
        runs = [o.detected for o in outcomes if o.label == lab]
        out[f"{lab}_recall"] = (sum(runs), len(runs))
    return out


def worse_p(ours: tuple[int, int], peer: tuple[int, int], higher_is_worse: bool) -> float:
    """One-sided Fisher exact p of ours being worse than a peer on a share, each (count, runs): the chance of a gap at
    least this large in that direction were both tools' true rates the same (1 when either has no runs). One false
    alarm in 360 healthy runs against none reads p = 0.5: a gap of that size is what two equal tools show by chance."""
    from scipy.stats import fisher_exact

    (k1, n1), (k2, n2) = ours, peer
    if n1 == 0 or n2 == 0:
        return 1.0
    alt = "greater" if higher_is_worse else "less"
    return float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative=alt).pvalue)


def eta_records(outcomes: list[Outcome]) -> list[tuple[bool | None, float, int]]:
    """One record per collapse that reaches the floor and whose first collapse alarm (before the floor) carries an
    ETA: (does its interval contain the true crossing step — None for a point ETA without an interval, |ETA −
    crossing| in logged points, the alarm's lead: points from the alarm to the crossing)."""
    out: list[tuple[bool | None, float, int]] = []
    for o in outcomes:
        a = o.first("collapse") if o.label == "collapse" else None
        if a is None or o.truth is None or o.truth_step is None or a.eta is None or a.index >= o.truth:
            continue
        err = abs(a.eta - o.truth_step) / max(o.spacing, 1e-9)
        hit = None
        if a.eta_lo is not None or a.eta_hi is not None:
            lo = a.eta_lo if a.eta_lo is not None else -np.inf
            hi = a.eta_hi if a.eta_hi is not None else np.inf  # an open end ("maybe never") is part of the interval
            hit = bool(lo <= o.truth_step <= hi)
        out.append((hit, err, o.truth - a.index))
    return out


def eta_quality(outcomes: list[Outcome]) -> tuple[float, float]:
    """Over :func:`eta_records`: the share of intervals that contain the true crossing (point ETAs are scored for
    their error only), and the median |ETA − crossing| in logged points."""
    recs = eta_records(outcomes)
    hits = [h for h, _, _ in recs if h is not None]
    nan = float("nan")
    return (_mean(hits), float(np.median([e for _, e, _ in recs])) if recs else nan)


def _mean(xs: list[bool]) -> float:
    return float(np.mean(xs)) if xs else float("nan")
