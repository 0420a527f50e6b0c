"""The verdict: what the detector concludes about one run at one step, computed once, rendered everywhere.

``verdict(series)`` (or ``Analyzer.verdict(series)`` on the live path, which reuses the cached evaluations) returns
a frozen :class:`Verdict`: the run's health and its kind, the reference level H_ref and how it was taken, the current
forecast *in the direction of the alert* (decay toward the floor for a collapse, rise for an explosion, none
otherwise) with the curve a chart draws, its ETA and 80% interval, the floor, ln V when the vocabulary is known, the
alerts ordered by severity then step, and a one-line headline. The CLI (``show``, ``alerts``, ``watch``), the HTML
report, the app and the notifications render this object and never recompute any of it; ``to_dict()`` is its JSON
form (schema in docs/CONTRACTS.md, ``"schema": 1``).

Health: ``too-short`` (fewer points than the detector needs: nothing can be said yet, which is not "ok"), ``ok``
(no alert), else the worst severity among the alerts that still stand: a collapse or an explosion is a *problem*
(:class:`Problem`) that opens with its first alarm and clears where its detector re-arms (the level back past the
re-arm level, and for a collapse clearly above where it stood at the alarm, for a while) — a collapse also where a
later reading finds the task solved; once cleared, its alerts stay listed but no longer set the health, and the
headline says it cleared. Every other alert (non-finite, saturation, precision, ...) counts as long as the run does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from entropy_watch.analysis.alert import Alert, _clean, fmt_nats, fmt_ratio, severity_rank
from entropy_watch.analysis.guards import quoted_level
from entropy_watch.analysis.outlook import NOT_HELD, Outlook

if TYPE_CHECKING:
    from entropy_watch.analysis.run import AnalysisResult

SCHEMA_VERSION = 1
HEALTH: tuple[str, ...] = ("too-short", "ok", "info", "warning", "critical")
PRIMARY_KINDS: tuple[str, ...] = ("nonfinite", "collapse", "explosion", "saturation")
"""Kinds that name the verdict when they tie on severity with another kind (what the product is for; saturation is
a collapse on a solved task)."""


@dataclass(frozen=True)
class Reference:
    """H_ref, the run's early entropy level (nats), and how it was taken: from which logged steps, how many points,
    the method in plain words, and a note when entropy had already moved before the detector armed."""

    value: float | None
    first_step: int | None
    last_step: int | None
    n_points: int
    method: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "value": self.value,
                "first_step": self.first_step,
                "last_step": self.last_step,
                "n_points": self.n_points,
                "method": self.method,
                "note": self.note,
            }
        )


@dataclass(frozen=True)
class Problem:
    """The newest episode of a collapse or an explosion: opened by the alert ``key`` at step ``since``, at its worst
    ``severity``; ``cleared`` is the step where the detector re-armed (None: still active) or, with ``solved``, where
    a later reading of the collapse found the task solved (benign convergence). ``unsettled`` says why an active
    explosion whose level is back down has not cleared (its points still spike past the warning line:
    :func:`guards.unsettled`), else None; ``unsettled_line`` is that warning line (nats) with it."""

    kind: str
    severity: str
    since: int
    key: str
    cleared: int | None = None
    solved: bool = False
    unsettled: str | None = None
    unsettled_line: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "since": self.since, "key": self.key,
                "cleared": self.cleared, "solved": self.solved, "unsettled": self.unsettled,
                "unsettled_line": self.unsettled_line}  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """The run's verdict at ``step`` (see the module docstring). ``level`` is the detector's current entropy level
    (a causal rolling median, nats); ``floor`` the collapse floor; ``ln_v`` only when the vocabulary is known."""

    run: str
    step: int | None
    n_points: int
    health: str
    kind: str | None
    headline: str
    reference: Reference
    level: float | None
    floor: float | None
    ln_v: float | None
    forecast: Outlook | None
    alerts: tuple[Alert, ...]
    notes: tuple[str, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def unsettled(self) -> str | None:
        """Why the verdict's explosion stands though its median is back down (:func:`unsettled_of`), else None."""
        p = unsettled_of(self.problems, self.kind)
        return None if p is None else p.unsettled

    @property
    def unsettled_line(self) -> float | None:
        """The warning line (nats) the unsettled explosion's points are still past (the chart draws it), else None."""
        p = unsettled_of(self.problems, self.kind)
        return None if p is None else p.unsettled_line

    @property
    def standing_alerts(self) -> tuple[Alert, ...]:
        """The alerts that set the health (:func:`standing`): all but those of an episode the verdict says cleared
        (they stay in :attr:`alerts`, the run's history). ``alerts``' exit status counts only these."""
        return standing(self.alerts, self.problems)

    @property
    def rank(self) -> int:
        """-1 too short or ok, else 0 info, 1 warning, 2 critical (for exit statuses)."""
        return severity_rank(self.health) if self.health in ("info", "warning", "critical") else -1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN/inf become null); the schema is documented in docs/CONTRACTS.md."""
        return _clean(
            {
                "schema": SCHEMA_VERSION,
                "run": self.run,
                "step": self.step,
                "n_points": self.n_points,
                "health": self.health,
                "kind": self.kind,
                "headline": self.headline,
                "reference": self.reference.to_dict(),
                "level": self.level,
                "floor": self.floor,
                "ln_v": self.ln_v,
                "forecast": self.forecast.to_dict() if self.forecast is not None else None,
                "alerts": [a.to_dict() for a in self.alerts],
                "problems": [p.to_dict() for p in self.problems],
                "notes": list(self.notes),
            }
        )


def order_alerts(alerts: list[Alert]) -> tuple[Alert, ...]:
    """Most severe first; within a severity the primary kinds (:data:`PRIMARY_KINDS`) first, then by step."""

    def key(a: Alert) -> tuple[int, int, int, str]:
        return (-a.rank, 0 if a.kind in PRIMARY_KINDS else 1, a.step, a.detector)

    return tuple(sorted(alerts, key=key))


def _pct_of(x: float, ref: float) -> str:
    """'37% of H_ref 0.47', or from two-fold up '2.4× H_ref 0.4' (as the explosion alerts write it: '243% of H_ref')."""
    r = x / ref
    return f"{fmt_ratio(r)} {'' if r >= 2 else 'of '}H_ref {fmt_nats(ref)}"


def headline(
    health: str,
    kind: str | None,
    top: Alert | None,
    reference: Reference,
    level: float | None,
    forecast: Outlook | None,
    n_points: int,
    min_points: int,
    unmeasured: int = 0,
    unsettled: str | None = None,
) -> str:
    """The one line every surface shows first. ``n_points`` counts the measured points: not the ``unmeasured``
    leading exact zeros (``hygiene.leading_zeros``); ``unsettled`` (:class:`Problem`) replaces the outlook."""
    if health == "too-short":
        pts = f"{n_points} {'measured' if unmeasured else 'logged'} point{'s' if n_points != 1 else ''}"
        if unmeasured:
            pts += f" ({unmeasured} more logged as 0: not measured yet)"
        return f"too short to analyse: {pts}; the detector decides from the {min_points}th"
    where = ""
    if level is not None and math.isfinite(level):
        # unsettled, the points thrash both sides of the lines: the level is the rolling median, said so (rasbt
        # ch07 7_3 read "critical explosion: entropy 0.12 nats" beside a last point of 2.6 nats)
        what = "entropy's median" if unsettled else "entropy"
        where = f"{what} {fmt_nats(level)} nats"
        if reference.value is not None and reference.value > 0:
            where += f" ({_pct_of(level, reference.value)})"
    if health == "ok":
        if reference.value is None:  # not armed yet: nothing was judged (tinker at its 6th point, 96% down, read
            # "ok: entropy 0.15 nats; no collapse or explosion trend")
            unknown = "H_ref not known yet (see how it is taken), so no collapse or explosion is judged yet"
            return f"ok: {where}; {unknown}" if where else f"ok: {unknown}"
        return f"ok: {where}; no collapse or explosion trend" if where else "ok: no collapse or explosion trend"
    label = f"{health} {kind}" if kind else health
    if kind in ("collapse", "explosion") and where:
        text = f"{label}: {where}"
        if unsettled:
            return f"{text}; {unsettled}"
        if forecast is not None:  # a critical verdict past its line whose level came back: "back under ..."
            text += f"; {forecast.back_text() if health == 'critical' and not forecast.now else forecast.text}"
            if forecast.now and health == "warning":
                text += f", {NOT_HELD}"
        return text
    if kind == "saturation" and where:
        return f"{label}: {where}; the reward is saturated, so the task looks solved: benign convergence"
    msg = top.message if top is not None else ""
    return f"{label}: {msg}" if msg else label


def unsettled_of(problems: tuple[Problem, ...], kind: str | None) -> Problem | None:
    """The active problem of ``kind`` that stands though its median is back down (:attr:`Problem.unsettled`: an
    explosion whose points still spike), else None."""
    return next((p for p in problems if p.kind == kind and p.unsettled), None)


def standing(alerts: tuple[Alert, ...], problems: tuple[Problem, ...]) -> tuple[Alert, ...]:
    """The alerts that set the health: all but those of a cleared collapse/explosion episode (or earlier ones)."""
    by_kind = {p.kind: p for p in problems}

    def stands(a: Alert) -> bool:
        p = by_kind.get(a.kind)
        return p is None or (p.cleared is None and a.step >= p.since)

    return tuple(a for a in alerts if stands(a))


def build(result: AnalysisResult, run: str, min_points: int) -> Verdict:
    """The verdict of an analysis result (called by :mod:`entropy_watch.analysis.run`, once per analysis)."""
    prep = result.prep
    n = len(prep) if prep is not None else 0
    unmeasured = int(prep.unmeasured.sum()) if prep is not None else 0
    alerts = order_alerts(result.alerts)
    problems = tuple(result.problems)
    counted = standing(alerts, problems)
    top = counted[0] if counted else None
    if top is not None and top.severity == "info":  # notes only: the newest says where the run is now (not step 154
        # of 500 on rasbt ch07 7_6 — "entropy jumped at step 154" — while four later notes followed)
        first = top.kind in PRIMARY_KINDS
        top = max((a for a in counted if a.severity == "info" and (a.kind in PRIMARY_KINDS) == first),
                  key=lambda a: a.step)  # fmt: skip
    if n - unmeasured < min_points:
        health = "too-short"
        # a non-finite value is reported even on a short series
        if top is not None and top.kind == "nonfinite":
            health = top.severity
    else:
        health = top.severity if top is not None else "ok"
    kind = top.kind if top is not None and health not in ("too-short", "ok") else None
    ref = result.reference if result.reference is not None else Reference(None, None, None, 0, "not known yet")
    # an explosion whose median is back down while its points still spike (Problem.unsettled): no rise to forecast,
    # and the headline says why it stands
    settling = unsettled_of(problems, kind)
    level = floor = None
    ln_v = None
    step = None
    if prep is not None and n:
        i = n - 1
        step = int(prep.steps[i])
        # an explosion quotes what its alerts quote (the last two points, where a line is crossed) — but not while
        # it settles: there the last two points are whichever side of the thrash they fell on
        level = _finite(quoted_level(prep, i) if kind == "explosion" and settling is None else prep.smooth[i])
        floor = _finite(prep.floor[i])
        ln_v = _finite(float(prep.ln_v[-1]))
    fc = result.outlook if kind in ("collapse", "explosion") else None
    if fc is not None and fc.direction != ("decay" if kind == "collapse" else "rise"):
        fc = None
    if settling is not None:
        fc = None
    why = settling.unsettled if settling is not None else None
    line = headline(health, kind, top, ref, level, fc, n - unmeasured, min_points, unmeasured, why)
    for p in problems:
        if p.cleared is not None:
            line += f"; the {p.severity} {p.kind} from step {p.since} cleared at step {p.cleared}"
    return Verdict(
        run=run,
        step=step,
        n_points=n,
        health=health,
        kind=kind,
        headline=line,
        reference=ref,
        level=level,
        floor=floor,
        ln_v=ln_v,
        forecast=fc,
        alerts=alerts,
        notes=tuple(result.notes),
        problems=problems,
    )


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
