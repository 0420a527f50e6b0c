"""Run the layered detector over a series, post hoc or incrementally on a growing prefix, with the same results.

Every layer is a causal scan (entry i uses points ≤ i only) and the forecast is evaluated at fixed point indices
(:func:`eval_indices`, a function of the index only) with a bootstrap seeded by the index, so analysing the prefix
that ends at step s gives exactly the alerts — and the verdict — a whole-run analysis gives up to s. An
:class:`Analyzer` caches forecast evaluations between calls, so following a live run costs the new scheduled
evaluations plus one fitted forecast at the newest point (the verdict's outlook).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.analysis import blas, cliffs, collapse, corroborate, guards
from entropy_watch.analysis.advice import advise, pinned_note
from entropy_watch.analysis.alert import Alert
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.forecast import Forecast, evaluate, evaluate_rise
from entropy_watch.analysis.hygiene import Prepared, lnv_note, low_start_note, prepare, unmeasured_note
from entropy_watch.analysis.outlook import Outlook, from_forecast
from entropy_watch.analysis.policy import cooldown
from entropy_watch.analysis.series import RunSeries
from entropy_watch.analysis.verdict import Problem, Reference, Verdict, build, order_alerts, standing

if TYPE_CHECKING:
    from entropy_watch.store import Store

Progress = Callable[[int, int], None]


@dataclass
class AnalysisResult:
    """Alerts in step order, plain-words notes, the scheduled forecast evaluations by point index, the prepared
    series (for plots), the reference, the outlook in the verdict's direction, and the verdict built from them.

    Two results are equal when what they say is (alerts, notes, reference, outlook, problems, verdict): the
    forecasts and the prepared arrays they were computed from are not compared (arrays have no one truth value)."""

    alerts: list[Alert]
    notes: list[str] = field(default_factory=list)
    forecasts: dict[int, Forecast] = field(default_factory=dict, compare=False)
    prep: Prepared | None = field(default=None, compare=False)
    reference: Reference | None = None
    outlook: Outlook | None = None
    problems: list[Problem] = field(default_factory=list)
    verdict: Verdict | None = None

    @property
    def latest_forecast(self) -> Forecast | None:
        return self.forecasts[max(self.forecasts)] if self.forecasts else None

    @property
    def worst(self) -> str | None:
        """The highest severity among the alerts, or None."""
        return max(self.alerts, key=lambda a: a.rank).severity if self.alerts else None


def reference(prep: Prepared, config: DetectorConfig) -> Reference:
    """The verdict's description of H_ref at the newest point."""
    n = len(prep)
    r = prep.ref_at(n - 1) if n else None
    if r is None:
        how = (
            f"not known yet: taken from the first {config.ref_points} points of the run (or of the segment after a "
            f"logged LR or config change) and used from the {config.min_points}th"
        )
        seg0 = int(prep.seg_start[n - 1]) if n else 0
        if n and int(prep.finite[seg0:].sum()) >= config.min_points:  # past the 6th and still unknown: say why
            how = (
                f"not known yet: by the {config.min_points}th point its first points had fallen by more than half "
                "or were too noisy to read a level from, so H_ref waits for the points that decide it (whether the "
                "fall held, or as many first points as that noise needs); no collapse or explosion is judged until then"
            )
        return Reference(None, None, None, 0, how)
    used = int(prep.ref_n[n - 1])
    return Reference(r.value, int(prep.steps[r.first]), int(prep.steps[r.last]), used, r.method, r.note)


def problems(prep: Prepared, config: DetectorConfig, alerts: list[Alert]) -> list[Problem]:
    """The newest collapse and explosion episodes: each opens at an alarm (warning or critical) and clears where
    its detector re-arms after its latest alarm (a collapse: :func:`collapse.rearm_at`, the level back above
    ``rearm_frac``·H_ref and clearly above its level at that alarm; an explosion: :func:`guards.explosion_rearm`, the
    level back under ``rearm_explode_mult``·H_ref with at most one of its points still past the warning line) — a
    collapse also where a later reading of it finds the task solved (a ``saturation`` note: benign convergence). An
    active explosion whose level is back but whose points still spike says so (``Problem.unsettled``)."""
    re_explosion = np.flatnonzero(guards.explosion_rearm(prep, config))
    solved = np.array(sorted({a.step for a in alerts if a.kind == "saturation"}), dtype=np.int64)

    def clears(kind: str, step: int) -> tuple[int | None, bool]:
        """(the step where the episode whose latest alarm is at ``step`` clears — None: still active —, whether it
        clears because the task was found solved)."""
        i = int(np.searchsorted(prep.steps, step))
        if kind == "explosion":
            k = int(np.searchsorted(re_explosion, i, side="right"))
            return (int(prep.steps[re_explosion[k]]) if k < re_explosion.size else None), False
        at = collapse.rearm_at(prep, i, config)
        back = int(prep.steps[at]) if at is not None else None
        k = int(np.searchsorted(solved, step, side="right"))
        if k < solved.size and (back is None or int(solved[k]) < back):
            return int(solved[k]), True
        return back, False

    out: list[Problem] = []
    for kind in ("collapse", "explosion"):
        episode: list[Alert] = []
        cleared: int | None = None
        by_solving = False
        for a in sorted((a for a in alerts if a.kind == kind and a.severity != "info"), key=lambda a: a.step):
            if cleared is not None and a.step > cleared:
                episode, cleared = [], None
            episode.append(a)
            cleared, by_solving = clears(kind, a.step)
        if episode:
            worst = max(episode, key=lambda a: a.rank)
            why = guards.unsettled(prep, len(prep) - 1, config) if kind == "explosion" and cleared is None else None
            text, line = why if why is not None else (None, None)
            out.append(Problem(kind, worst.severity, episode[0].step, episode[0].key, cleared, by_solving, text, line))
    return out


HIST_KEY = "\0hist"  # the histogram's entry among the scalars an Analyzer compares between calls
CONTEXT_META = ("vocab_size", "planned_steps", "reward_max", "lr_warmup_steps")
"""The ``meta`` keys the analysis reads: a change to one of them re-analyses a run an Analyzer follows."""


def _first_changed_step(
    seen: dict[str, tuple[np.ndarray, np.ndarray] | None], series: RunSeries, upto: int
) -> int | None:
    """The first step ≤ ``upto`` at which a scalar (or the histogram) of ``series`` differs from ``seen``, the
    previous call's: a value added, dropped or changed there (None: the same up to ``upto``). Arrays are (steps (m,),
    values (m,) or counts (m, bins)), steps sorted. The common case, nothing changed, costs one comparison of views
    per series (a live poll of a hooked run at 100k points: no copies)."""
    now: dict[str, tuple[np.ndarray, np.ndarray] | None] = {**series.scalars, HIST_KEY: series.hist}
    first: int | None = None
    for name in set(seen) | set(now):
        a, b = seen.get(name), now.get(name)
        if a is b:
            continue
        sa, va = _upto(a, upto)
        sb, vb = _upto(b, upto)
        if np.array_equal(sa, sb) and (va is None) == (vb is None) and (va is None or _same(va, vb)):
            continue
        k = min(sa.size, sb.size)
        diff = np.flatnonzero(sa[:k] != sb[:k])
        if diff.size == 0 and va is not None and vb is not None and k:
            rows = ~np.isclose(va[:k], vb[:k], rtol=0.0, atol=0.0, equal_nan=True)
            diff = np.flatnonzero(rows if rows.ndim == 1 else rows.any(axis=tuple(range(1, rows.ndim))))
        if diff.size:
            step = int(min(sa[diff[0]], sb[diff[0]]))
        elif sa.size != sb.size:
            step = int((sa if sa.size > sb.size else sb)[k])
        else:
            continue
        first = step if first is None else min(first, step)
    return first


def _upto(pair: tuple[np.ndarray, np.ndarray] | None, upto: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Views of a (steps, values) pair's points at steps ≤ ``upto`` (steps sorted); no steps for None."""
    if pair is None:
        return np.zeros(0, np.int64), None
    k = int(np.searchsorted(pair[0], upto, side="right"))
    return pair[0][:k], pair[1][:k]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal arrays, NaN equal to NaN (any dtype)."""
    try:
        return bool(np.array_equal(a, b, equal_nan=True))
    except TypeError:  # a dtype without NaN (objects)
        return bool(np.array_equal(a, b))


def _check_series(series: object) -> RunSeries:
    """``series`` when it is a :class:`RunSeries`, else a ``TypeError`` saying how to build one."""
    if not isinstance(series, RunSeries):
        got = type(series).__name__
        raise TypeError(f"series must be a RunSeries (RunSeries.from_arrays(name, steps, entropy)), got {got}")
    return series


def eval_indices(n: int, config: DetectorConfig, origin: int = 0) -> list[int]:
    """Point indices at which the forecast is evaluated: from ``forecast_min_points − 1``, then every
    max(1, i // eval_stride_div) points — every point up to 100, ~every 20th at 1,000, ~every 200th at 10,000 —
    so a 100k-point run costs ~500 evaluations; i counted from ``origin``, the run's first measured point
    (``Prepared.origin``). Depends on i only: a live prefix and the whole run agree."""
    out: list[int] = []
    i = config.forecast_min_points - 1
    while origin + i < n:
        out.append(origin + i)
        i += max(1, i // config.eval_stride_div)
    return out


class Analyzer:
    """Incremental analysis of one run. ``analyze(series)`` returns everything so far (alerts, verdict);
    ``verdict(series)`` the verdict; ``update(series)`` only the alerts not returned by an earlier ``update``."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        if config is not None and not isinstance(config, DetectorConfig):
            raise TypeError(
                f"config must be a DetectorConfig (such as DetectorConfig(hold_z=3.0)), got {type(config).__name__}"
            )
        self.config = config or DetectorConfig()
        self._evals: dict[int, Forecast | None] = {}
        self._fits: dict[int, Forecast | None] = {}
        self._scan: cliffs.Scan | None = None
        self._prep: Prepared | None = None
        self._memo: dict = {}
        self._seen_steps: np.ndarray = np.zeros(0, dtype=np.int64)
        self._seen_h: np.ndarray = np.zeros(0)
        self._emitted: set[str] = set()
        self._reward_max: float | None = None  # the reward_max the memo was computed with
        self._seen_context: tuple | None = None  # events, meta, whether a histogram: a change re-analyses the run
        self._seen_scalars: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def _stated(self, series: RunSeries) -> tuple[DetectorConfig, str | None]:
        """The config with the reward's ceiling the run states or shows (:func:`corroborate.stated_ceiling`, and its
        note); the memo of reward judgements is dropped when it changes."""
        cfg, note = corroborate.stated_ceiling(series, self.config)
        if self._reward_max is not None and cfg.reward_max != self._reward_max:
            self._memo = {}
        self._reward_max = cfg.reward_max
        return cfg, note

    def _invalidate_if_rewritten(self, series: RunSeries) -> None:
        """Drop what was computed for points that ``series`` no longer shows as they were: everything when its
        entropy, events or meta differ from the previous call's over the points seen (a restart, another run, an
        event logged late); the memo of decisions from the first seen step whose other scalars differ (a reward
        or clip fraction for a step that arrived after its entropy was analysed)."""
        n = self._seen_steps.size
        same = len(series) >= n and np.array_equal(series.steps[:n], self._seen_steps)
        same = same and np.array_equal(series.entropy[:n], self._seen_h, equal_nan=True)
        # what the analysis reads of the events and meta; not the import notes (a count that grows every poll of a
        # log being written would re-analyse the whole run each time)
        context = (list(series.events), repr([series.meta.get(k) for k in CONTEXT_META]), series.hist_edges is None)
        same = same and context == self._seen_context
        if not same:
            self._evals.clear()
            self._fits.clear()
            self._scan = None
            self._prep = None
            self._memo = {}
        elif n and self._memo:
            changed = _first_changed_step(self._seen_scalars, series, int(self._seen_steps[-1]))
            if changed is not None:
                first = int(np.searchsorted(self._seen_steps, changed))
                self._memo = {k: v for k, v in self._memo.items() if k[1] < first}  # keys: (what, point index, ...)
        self._seen_steps, self._seen_h, self._seen_context = series.steps, series.entropy, context
        self._seen_scalars = {**series.scalars, HIST_KEY: series.hist}

    def analyze(self, series: RunSeries, progress: Progress | None = None) -> AnalysisResult:
        """Every alert so far, the notes, the forecasts, the reference and the verdict of ``series``. Floating-point
        warnings are silenced: every rule reads NaN and ±inf as they come (a 1e300 cell overflows a product), and a
        hook's analysis must not write numpy warnings into the training's output. numpy's BLAS runs on one thread
        meanwhile (:mod:`~entropy_watch.analysis.blas`: its small products waited on busy cores, same answers)."""
        _check_series(series)
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be a function (done, total) -> None, got {type(progress).__name__}")
        with blas.single_threaded(), np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
            return self._analyze(series, progress)

    def _analyze(self, series: RunSeries, progress: Progress | None) -> AnalysisResult:
        cfg, ceiling = self._stated(series)
        self._invalidate_if_rewritten(series)
        prep = prepare(series, cfg, self._prep)
        self._prep = prep
        n = len(prep)
        notes = list(series.meta.get("import_notes", ()))  # how the log was read (texts: caller_meta)
        found = (
            unmeasured_note(prep, series.entropy),
            lnv_note(prep),
            low_start_note(prep, cfg),
            ceiling,
            corroborate.reward_note(prep, cfg),
            pinned_note(series),
        )
        notes += [note for note in found if note]
        if n < cfg.min_points:
            counted = f"{n} logged point" + ("" if n == 1 else "s")  # "1 logged point", never "1 logged points"
            notes.append(f"{counted}; the detector decides from the {cfg.min_points}th")
            found_early = guards.nonfinite(prep) + self._nonfinite_tokens(series, prep)
            res = AnalysisResult(alerts=advise(found_early, series), notes=notes, prep=prep)
            res.reference = reference(prep, cfg)
            res.verdict = build(res, series.name, cfg.min_points)
            return res
        if int(prep.finite.sum()) < cfg.min_points and not np.isfinite(prep.h).all():  # zeros have their note
            notes.append(f"fewer than {cfg.min_points} finite entropy values")

        evals = self._scheduled(prep, progress)
        raw: list[Alert] = guards.detect(prep, cfg)
        found, self._scan = cliffs.detect(prep, cfg, series.change_steps(), self._scan)
        raw += found
        raw += corroborate.standalone(series, prep, cfg)
        raw += self._nonfinite_tokens(series, prep)
        raw += collapse.detect(series, prep, cfg, evals, lambda i: self._fit(prep, i), self._memo)
        alerts = advise(cooldown(raw, prep.steps, cfg.cooldown_points), series)  # actions in the run's trainer's words
        res = AnalysisResult(alerts=alerts, notes=notes, prep=prep)
        res.forecasts = {i: f for i, f in evals.items() if f is not None}
        res.reference = reference(prep, cfg)
        res.problems = problems(prep, cfg, alerts)
        res.outlook = self._outlook(prep, list(standing(order_alerts(alerts), tuple(res.problems))))
        res.verdict = build(res, series.name, cfg.min_points)
        return res

    @staticmethod
    def _nonfinite_tokens(series: RunSeries, prep: Prepared) -> list[Alert]:
        return guards.nonfinite_tokens(series.aligned(M.ENTROPY_NONFINITE_FRAC), prep)

    def verdict(self, series: RunSeries, at_step: int | None = None) -> Verdict:
        """The verdict at ``at_step`` (default: the newest step), reusing this analyzer's cached evaluations."""
        s = series if at_step is None else _check_series(series).prefix(at_step)
        v = self.analyze(s).verdict
        assert v is not None
        return v

    def update(self, series: RunSeries, progress: Progress | None = None) -> list[Alert]:
        """Alerts that are new since the previous ``update`` call (by :attr:`Alert.key`), in step order."""
        res = self.analyze(series, progress)
        new = [a for a in res.alerts if a.key not in self._emitted]
        self._emitted.update(a.key for a in new)
        return new

    def _scheduled(self, prep: Prepared, progress: Progress | None) -> dict[int, Forecast | None]:
        idx = [i for i in eval_indices(len(prep), self.config, prep.origin) if prep.armed[i]]
        todo = [i for i in idx if i not in self._evals]
        for j, i in enumerate(todo):
            self._evals[i] = evaluate(prep, i, self.config)
            if progress is not None and (j % 20 == 0 or j == len(todo) - 1):
                progress(j + 1, len(todo))
        return {i: self._evals[i] for i in idx}

    def _fit(self, prep: Prepared, i: int) -> Forecast | None:
        """The always-fitted decay forecast at i (cached: the verdict's and the alerts' outlook)."""
        if i not in self._fits:
            self._fits[i] = evaluate(prep, i, self.config, always_fit=True) if prep.armed[i] else None
        return self._fits[i]

    def _outlook(self, prep: Prepared, alerts: list[Alert]) -> Outlook | None:
        """The forecast in the direction of the verdict's kind, at the newest point."""
        cfg = self.config
        ordered = order_alerts(alerts)
        kind = ordered[0].kind if ordered else None
        i = len(prep) - 1
        if kind == "collapse":
            return collapse.decay_outlook(prep, i, cfg, self._fit(prep, i))
        if kind == "explosion":
            _, crit, _ = guards.explosion_levels(prep, cfg)
            if not math.isfinite(crit[i]):
                return None
            level = guards.quoted_level(prep, i)
            f = evaluate_rise(prep, i, cfg, float(crit[i]), level)
            if f is None:
                return None
            return from_forecast(f, guards.crit_label(prep, i, cfg, float(crit[i])), cfg.eta_interval,
                                 prep.planned_steps, level)  # fmt: skip
        return None


def analyze(
    series: RunSeries, config: DetectorConfig | None = None, progress: Progress | None = None
) -> AnalysisResult:
    """Whole-run analysis with notes, forecasts and the verdict (what the CLI and the report use)."""
    return Analyzer(config).analyze(series, progress)


def verdict(
    series: RunSeries,
    config: DetectorConfig | None = None,
    at_step: int | None = None,
    analyzer: Analyzer | None = None,
) -> Verdict:
    """The run's verdict at ``at_step`` (default: its newest step). Pass the run's live ``analyzer`` to reuse its
    cached evaluations (then ``config`` is the analyzer's)."""
    return (analyzer or Analyzer(config)).verdict(series, at_step)


def analyze_series(series: RunSeries, config: DetectorConfig | None = None) -> list[Alert]:
    """Alerts for ``series`` in step order; the same alerts at step s whether run live or post hoc."""
    return analyze(series, config).alerts


def analyze_run(store: Store, run: str, config: DetectorConfig | None = None) -> list[Alert]:
    """Alerts for the store run ``run``."""
    return analyze_series(RunSeries.from_reader(store, run), config)
