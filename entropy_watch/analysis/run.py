"""Run the layered detector over a series, post hoc or incrementally on a growing prefix, with the same results.

Every layer is a causal scan (entry i uses versions ≤ i only) and the forecast is evaluated at fixed version indices
(``(i + 1) % eval_every == 0``) with a bootstrap seeded by the index, so analysing the prefix that ends at step s gives
exactly the alerts a whole-run analysis gives up to s. :class:`Analyzer` caches forecast evaluations between calls,
so following a live run costs one new evaluation per ``eval_every`` versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from entropy_watch.analysis import cliffs, corroborate, guards
from entropy_watch.analysis.alert import Alert, fmt_nats, pct_change
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.forecast import Forecast, evaluate
from entropy_watch.analysis.hygiene import Prepared, prepare
from entropy_watch.analysis.policy import apply_context, cooldown, persistent
from entropy_watch.analysis.series import RunSeries

if TYPE_CHECKING:
    from entropy_watch.store.reads import RunReader

Progress = Callable[[int, int], None]


@dataclass
class AnalysisResult:
    """Alerts in step order, plain-words notes (why there is no analysis, what was skipped), the forecast
    evaluations by version index and the prepared series (for plots)."""

    alerts: list[Alert]
    notes: list[str] = field(default_factory=list)
    forecasts: dict[int, Forecast] = field(default_factory=dict)
    prep: Prepared | None = None

    @property
    def latest_forecast(self) -> Forecast | None:
        return self.forecasts[max(self.forecasts)] if self.forecasts else None

    @property
    def worst(self) -> str | None:
        """The highest severity among the alerts, or None."""
        return max(self.alerts, key=lambda a: a.rank).severity if self.alerts else None


def _eta_text(f: Forecast) -> str:
    def at(x: float) -> str:
        return "never" if not math.isfinite(x) else str(int(round(f.step + x)))

    if f.eta_median == 0:
        return f"it is at the floor {fmt_nats(f.floor)} now"
    return (
        f"at this rate it reaches the floor {fmt_nats(f.floor)} at step {at(f.eta_median)} "
        f"(90% interval {at(f.eta_lo)}–{at(f.eta_hi)})"
    )


def forecast_alert(f: Forecast, severity: str) -> Alert:
    msg = (
        f"entropy fell from {fmt_nats(f.level_start)} to {fmt_nats(f.level_now)} nats since step "
        f"{f.window_start_step} ({pct_change(f.level_start, f.level_now)}); {_eta_text(f)}"
    )
    ev = f.evidence()
    ev["window"] = [f.window_start_step, f.step]
    ev["eta_step_median"] = f.step + f.eta_median
    return Alert(step=f.step, detector="forecast.eta", kind="collapse", severity=severity, message=msg, evidence=ev)


class Analyzer:
    """Incremental analysis of one run. ``analyze(series)`` returns every alert so far; ``update(series)`` only the
    alerts not returned by an earlier ``update``."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._evals: dict[int, Forecast | None] = {}
        self._seen_steps: np.ndarray = np.zeros(0, dtype=np.int64)
        self._seen_h: np.ndarray = np.zeros(0)
        self._emitted: set[tuple[int, str, str, str]] = set()

    def _invalidate_if_rewritten(self, series: RunSeries) -> None:
        n = self._seen_steps.size
        same = len(series) >= n and np.array_equal(series.steps[:n], self._seen_steps)
        same = same and np.array_equal(series.entropy[:n], self._seen_h, equal_nan=True)
        if not same:
            self._evals.clear()
        self._seen_steps, self._seen_h = series.steps.copy(), series.entropy.copy()

    def analyze(self, series: RunSeries, progress: Progress | None = None) -> AnalysisResult:
        cfg = self.config
        self._invalidate_if_rewritten(series)
        prep = prepare(series, cfg)
        n = len(prep)
        notes: list[str] = []
        if n < cfg.min_versions:
            notes.append(
                f"{series.name}: {n} logged steps; the detector needs at least {cfg.min_versions} — no analysis yet"
            )
            return AnalysisResult(alerts=guards.nonfinite(prep), notes=notes, prep=prep)
        if int(prep.finite.sum()) < cfg.min_versions:
            notes.append(f"{series.name}: fewer than {cfg.min_versions} finite entropy values")

        raw: list[Alert] = guards.detect(prep, cfg)
        raw += cliffs.detect(prep, cfg, series.reset_steps())
        raw += corroborate.standalone(series, prep, cfg)
        raw += self._forecast_alerts(prep, progress)

        out = []
        for a in raw:
            if a.kind == "collapse":
                i = int(np.searchsorted(prep.steps, a.step))
                lo = max(int(prep.seg_start[i]), i - cfg.window_max + 1)
                fl = corroborate.flags(series, prep, i, lo, cfg)
                a = apply_context(a, fl, corroborate.escalating(fl))
            out.append(a)
        alerts = cooldown(out, prep.steps, cfg.cooldown_versions)
        forecasts = {i: f for i, f in self._evals.items() if f is not None and i < n}
        return AnalysisResult(alerts=alerts, notes=notes, forecasts=forecasts, prep=prep)

    def _forecast_alerts(self, prep: Prepared, progress: Progress | None) -> list[Alert]:
        cfg = self.config
        k, m = cfg.persist_of
        idx = [i for i in eval_indices(len(prep), cfg) if prep.armed[i]]
        todo = [i for i in idx if i not in self._evals]
        for j, i in enumerate(todo):
            self._evals[i] = evaluate(prep, i, cfg)
            if progress is not None and (j % 20 == 0 or j == len(todo) - 1):
                progress(j + 1, len(todo))
        out: list[Alert] = []
        flags: list[bool] = []
        seg = -1
        fired_rank = -1  # latch: fire again only at a higher severity, or after re-arming (hysteresis)
        quiet = 0
        for i in idx:
            f = self._evals[i]
            if int(prep.seg_start[i]) != seg:
                seg, flags, fired_rank, quiet = int(prep.seg_start[i]), [], -1, 0
            flags.append(bool(f is not None and f.positive))
            if f is None or not f.positive:
                quiet += 1
                if fired_rank >= 0 and quiet >= 2 and prep.smooth[i] > cfg.rearm_floor_mult * prep.floor[i]:
                    fired_rank = -1
                continue
            quiet = 0
            if not persistent(flags, k, m):
                continue
            spacing = float(np.median(np.diff(prep.steps[max(seg, i - 50) : i + 1]))) if i > seg else 1.0
            crit = f.eta_q80 <= cfg.critical_eta_versions * spacing
            rank = 2 if crit else 1
            if rank > fired_rank:
                out.append(forecast_alert(f, "critical" if crit else "warning"))
                fired_rank = rank
        return out

    def update(self, series: RunSeries, progress: Progress | None = None) -> list[Alert]:
        """Alerts that are new since the previous ``update`` call."""
        res = self.analyze(series, progress)
        new = []
        for a in res.alerts:
            key = (a.step, a.detector, a.kind, a.severity)
            if key not in self._emitted:
                self._emitted.add(key)
                new.append(a)
        return new


def eval_indices(n: int, cfg: DetectorConfig) -> list[int]:
    """Version indices at which the forecast is evaluated: every ``eval_every`` up to ``dense_versions``, then a
    stride ten times longer per decade (so a 100k-step run costs ~1k evaluations, not 10k). Depends on i only, so a
    live prefix and the whole run evaluate at the same indices."""
    out: list[int] = []
    i = cfg.eval_every - 1
    while i < n:
        out.append(i)
        decade = math.floor(math.log10((i + 1) / cfg.dense_versions)) + 1 if i + 1 >= cfg.dense_versions else 0
        stride = cfg.eval_every * 10**decade
        i = (i + 1 + stride) // stride * stride - 1  # next multiple of the stride (minus one, as (i+1) % stride == 0)
    return out


def analyze(
    series: RunSeries, config: DetectorConfig | None = None, progress: Progress | None = None
) -> AnalysisResult:
    """Whole-run analysis with notes and forecasts (what the CLI and the report use)."""
    return Analyzer(config).analyze(series, progress)


def analyze_series(series: RunSeries, config: DetectorConfig | None = None) -> list[Alert]:
    """Alerts for ``series`` in step order; the same alerts at step s whether run live or post hoc."""
    return analyze(series, config).alerts


def analyze_run(store: RunReader, run: str, config: DetectorConfig | None = None) -> list[Alert]:
    """Alerts for the store run ``run`` (``store``: a ``Store`` or ``TailReader``)."""
    return analyze_series(RunSeries.from_reader(store, run), config)
