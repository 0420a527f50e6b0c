"""Outlook: a forecast as every surface shows it — the curve a chart draws with its band, the ETA and its interval as
absolute steps, and one sentence ("at this rate 10% of H_ref (0.047 nats) by step 1,240 (80% interval 900–2,100)").

Built from one :class:`~entropy_watch.analysis.forecast.Forecast` by :func:`from_forecast`; alerts and the verdict
both call it, so an alert raised at step s and the verdict at step s quote the same numbers. "Now" (``reached``) means
the level quoted beside it is past the target, never only the fitted line (``forecast._from_level``); an explosion
alert quotes its last two points, where the line was crossed, so its ETA runs from those. A level past the target
while the fitted trend is not (``ahead``) keeps the trend's ETA — it placed the crossing better than a noisy level —
and the sentence says both: "above 6× H_ref (0.78 nats) now, ahead of its trend (at this rate there by step 250
...)", never "by step 250" alone beside an entropy already above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from entropy_watch.analysis.alert import _clean, fmt_nats
from entropy_watch.analysis.forecast import Forecast

CURVE_POINTS = 60  # points of the drawn forecast curve
NOT_HELD = "not held there yet: critical if it stays"
"""Said after "above 6× H_ref now" or "below 10% of H_ref now" on a *warning*: the critical line and the floor fire on
a held level, and a warning that reads past them without this (a climb logged every 12 steps: "16.0× H_ref ...;
above 6× H_ref (0.84 nats) now") looks like a severity gone wrong."""
MAX_AHEAD = 3.0  # the curve extends at most this many window spans past the last point ...
MAX_REACH = 10.0
"""... or to the median ETA when it lies within this many: the curve meets the target there, as the sentence says
(a tiny GRPO run's curve stopped at step 371, 0.15 nats, above its 0.11 floor "by step 416", and the app's ETA line
stood on an empty chart). Further out the chart would shrink the run into its first pixels."""
FAR_AHEAD = 100.0
"""An interval's late end past this many times the steps so far reads "beyond step N" (N that many times the step):
a slow power-law decline can honestly put it at step 289,555,561 (a real 0.5B GRPO log at step 1,380), which as a
number tells a user nothing a run will ever reach; the figure stays in the evidence (``eta_step_hi``)."""


@dataclass(frozen=True)
class Outlook:
    """Where entropy is heading: ``direction`` "decay" (toward the collapse floor) or "rise" (toward the explosion
    level), ``target`` that level in nats and ``target_label`` in words. ETAs are absolute steps (None: not on
    course to reach it); ``reached`` when the level is already there; ``beyond_end`` when the ETA lies after the
    run's planned last step. ``steps``/``curve``/``lo``/``hi`` draw the forecast — the median of the fit's draws,
    which meets the target at ``eta_step`` — and its ``interval`` band (nats); empty when ``reached``. ``slowing``: the
    interval's late end (and the band's upper edge) is where a decline that slows down as real collapses do would
    reach the floor, later than at this rate (:attr:`Forecast.slow_weight`); the text says so."""

    direction: str
    target: float
    target_label: str
    model: str
    fitted_at: int
    window_start: int
    eta_step: float | None
    eta_lo_step: float | None
    eta_hi_step: float | None
    interval: float
    p_cross: float
    reached: bool
    beyond_end: bool
    steps: tuple[float, ...]
    curve: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    text: str
    ahead: bool = False
    slowing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return _clean({k: getattr(self, k) for k in self.__dataclass_fields__})

    @property
    def now(self) -> bool:
        """The quoted level is past the target — reached, or ahead of its trend: the sentence says "now"."""
        return self.reached or self.ahead

    def eta_evidence(self) -> dict[str, Any]:
        """The ETA as an alert's evidence carries it (absolute steps; what notifications read: ``notify.eta_of``)."""
        return {"eta_step_median": self.eta_step, "eta_step_lo": self.eta_lo_step, "eta_step_hi": self.eta_hi_step,
                "eta_interval": self.interval, "eta_target": self.target_label, "eta_now": self.now}  # fmt: skip

    def back_text(self) -> str:
        """The sentence for a level that has come back from the target it passed (a critical collapse fires at the
        floor, a critical explosion past its line): "back under 7.45× H_ref (2.99 nats), not on course to reach it",
        or "...; at this rate there again by step N (80% interval a–b)" — never a bare "not on course to reach
        7.45× H_ref" under "critical explosion"."""
        back = f"back {'above' if self.direction == 'decay' else 'under'} {self.target_label}"
        if self.eta_step is None:
            return f"{back}, not on course to reach it"
        when = _by_step(self.eta_step, self.eta_lo_step, self.eta_hi_step, self.interval, self.fitted_at)
        return f"{back}; at this rate there again {when}" + (", after the planned end" if self.beyond_end else "")


def step_text(x: float) -> str:
    """A step as every sentence writes it: rounded, thousands separated ('1,843')."""
    return f"{int(round(x)):,}"


def by_step_text(eta: float, step: float | None, by: str = "by ") -> str:
    """'by step 1,240'; 'beyond step 12,000' for a median ETA past :data:`FAR_AHEAD` times ``step``, the step the
    forecast was made at (a fit whose draws mostly never reach the target falls back to its central fit, which can
    put the median at step 500,000,005,884: a real 7B GRPO log at step 120 read "by step 500,000,005,884 (80%
    interval 119–never)"). The figure stays in the evidence (``eta_step_median``). ``by``: the word before a near
    step ("" where a label says it: the app's "ETA" box, a notification's "ETA to the floor: step 1,240").
    The one rendering of a median ETA: the outlook's sentence, the notifications and the app use it."""
    far = math.inf if step is None else FAR_AHEAD * max(step, 1.0)
    return f"beyond step {step_text(far)}" if eta > far else f"{by}step {step_text(eta)}"


def interval_range(eta: float, lo: float | None, hi: float | None, step: float | None) -> str:
    """'380–460'; '49' for an interval within one step; '380–never' for an interval open at its end; '3,477 to beyond
    step 138,000' for a late end past :data:`FAR_AHEAD` times ``step``, the step the forecast was made at (None: not
    known, the late end as it is). The one rendering of an ETA interval: the outlook's sentence and the
    notifications' ETA line use it."""
    start = step_text(lo if lo is not None else eta)
    far = math.inf if step is None else FAR_AHEAD * max(step, 1.0)
    if hi is None:
        return f"{start}–never"
    if hi > far:
        return f"{start} to beyond step {step_text(far)}"
    end = step_text(hi)
    return start if end == start else f"{start}–{end}"  # a noise-free fit's interval is one step: '49', not '49–49'


def _by_step(
    eta: float, lo: float | None, hi: float | None, interval: float, step: float, slowing: bool = False
) -> str:
    """'by step 412 (80% interval 380–460)' (:func:`by_step_text`); with ``slowing``, '... 380–900, the late end if
    it slows down as collapses do)'. ``step``: where the forecast was made (:func:`interval_range`)."""
    late = ", the late end if it slows down as collapses do" if slowing else ""
    return f"{by_step_text(eta, step)} ({100 * interval:.0f}% interval {interval_range(eta, lo, hi, step)}{late})"


def from_forecast(
    f: Forecast, target_label: str, interval: float, planned_end: int | None = None, level: float | None = None
) -> Outlook:
    """The outlook of forecast ``f`` (see the module docstring); ``level`` (nats) is the entropy the caller quotes
    beside it, for ``ahead``."""

    def at(eta: float) -> float | None:
        return float(f.step + eta) if math.isfinite(eta) else None

    eta, lo, hi = at(f.eta_median), at(f.eta_lo), at(f.eta_hi)
    slowing = f.eta_hi > f.late_at_rate  # a slowdown set the late end
    reached = f.eta_median == 0
    past = level is not None and (level <= f.floor if f.direction == "decay" else level >= f.floor)
    past_first = bool(past and not reached)  # the level past the target before the fitted trend
    beyond = bool(eta is not None and planned_end is not None and eta > planned_end)
    span = max(float(f.step - f.window_start_step), 1.0)
    extent = span
    if eta is not None:
        extent = max(extent, 1.1 * ((hi if hi is not None else eta) - f.step))
    extent = min(extent, MAX_AHEAD * span)
    if eta is not None and eta - f.step <= MAX_REACH * span:
        extent = max(extent, 1.02 * (eta - f.step))
    xs = np.linspace(float(f.window_start_step), f.step + extent, CURVE_POINTS)
    curve, b_lo, b_hi = f.drawn(xs, interval)
    if reached:  # past the target now: nothing to forecast, and a fit over the window may even head back from it
        xs = curve = b_lo = b_hi = np.zeros(0)  # (an explosion at 26× H_ref drew a line falling 7.4 -> 1.8 nats)
    # "below", not "at": the level quoted beside it is past the target, often far past it (tinker arithmetic read
    # "entropy is down to 0.027 nats, 4% of H_ref 0.77 ...; at 10% of H_ref (0.077 nats) now")
    now = f"{'below' if f.direction == 'decay' else 'above'} {target_label} now"
    if reached:
        text = now
    elif past_first:
        pct = f"{100 * interval:.0f}%"
        trend = "which is not on course to reach it"
        if eta is not None:
            span = interval_range(eta, lo, hi, f.step)
            trend = f"at this rate there {by_step_text(eta, f.step)}, {pct} interval {span}"
        text = f"{now}, ahead of its trend ({trend})"
    elif eta is None:
        text = f"not on course to reach {target_label}"
    else:
        text = f"at this rate {target_label} {_by_step(eta, lo, hi, interval, f.step, slowing)}"
        if beyond:
            text += f", after the planned end (step {planned_end:,})"
    return Outlook(
        direction=f.direction,
        target=f.floor,
        target_label=target_label,
        model=f.model,
        fitted_at=f.step,
        window_start=f.window_start_step,
        eta_step=eta,
        eta_lo_step=lo,
        eta_hi_step=hi,
        interval=interval,
        p_cross=f.p_cross,
        reached=reached,
        beyond_end=beyond,
        steps=tuple(float(x) for x in xs),
        curve=tuple(float(x) for x in curve),
        lo=tuple(float(x) for x in b_lo),
        hi=tuple(float(x) for x in b_hi),
        text=text,
        ahead=past_first,
        slowing=slowing,
    )


def floor_label(floor: float, h_ref: float, floor_rel: float, floor_abs: float = 0.02) -> str:
    """'10% of H_ref (0.047 nats)' when the relative floor applies, 'the absolute floor (0.02 nats)' when
    ``floor_abs`` does, '25% of H_ref (0.0043 nats)' when H_ref sits so low that the floor is a share of it."""
    if math.isfinite(h_ref) and abs(floor - floor_rel * h_ref) <= 1e-12 * max(floor, 1.0):
        return f"{100 * floor_rel:.0f}% of H_ref ({fmt_nats(floor)} nats)"
    if math.isfinite(h_ref) and h_ref > 0 and floor < floor_abs * (1 - 1e-12):
        return f"{100 * floor / h_ref:.0f}% of H_ref ({fmt_nats(floor)} nats)"
    return f"the absolute floor ({fmt_nats(floor)} nats)"
