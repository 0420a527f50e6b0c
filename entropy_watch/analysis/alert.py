"""Alert: what a detector found, in plain words, with its evidence and the knobs that usually help.

Alerts become rows of the store's ``alerts`` table (docs/CONTRACTS.md): ``step, detector, kind, severity, message,
evidence`` (JSON; the suggested actions live inside it under ``"actions"``) and ``wall_time``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
KINDS: tuple[str, ...] = (
    "collapse",
    "explosion",
    "cliff",
    "saturation",
    "precision",
    "zero_variance_groups",
    "nonfinite",
    "spike",
    "near_uniform",
)

# Suggested actions per kind, in generic words. Sources: clip-higher (DAPO, Yu et al. 2025), Clip-Cov/KL-Cov (Cui et
# al. 2025), REPO/ADAPO (ALGORITHMS.md), fp32 log-probs for the bf16 ratio bias (DESIGN §1). The analysis puts them in
# the run's trainer's words and drops what the run already does (analysis/advice.py: SLOTS follows this order).
ACTIONS: dict[str, list[str]] = {
    "collapse": [
        "raise the upper clip bound (clip-higher, e.g. eps_high 0.28)",
        "use an entropy-preserving update (REPO / ADAPO, or Clip-Cov / KL-Cov)",
        "add or raise an entropy bonus, or set a target entropy controller",
        "lower the learning rate",
        "compute log-probs in fp32 (bf16 ratio bias pushes toward collapse)",
    ],
    "explosion": [
        "lower the learning rate or add gradient clipping",
        "lower or remove the entropy bonus; check the target-entropy controller",
        "tighten the lower clip bound / add dual-clip for negative advantages",
        "add or raise the KL penalty to the reference model",
        "check rewards for degenerate outputs (length cap, format reward hacking)",
    ],
    "cliff": [
        "check for a resume, LR-schedule change or config edit at this step and log it as an event",
    ],
    "saturation": [
        "the task looks solved: add harder prompts or stop training",
    ],
    "spike": [
        "check the step for an outlier batch (a very long or malformed completion); no action if it stays isolated",
    ],
    "near_uniform": [
        "expected for a freshly initialised policy or a tiny vocabulary; watch the fall for a collapse",
    ],
    "precision": [
        "compute trainer log-probs in fp32 (or match the sampler's precision)",
        "check that the sampler and the trainer use the same weights and temperature",
    ],
    "zero_variance_groups": [
        "filter prompts whose groups are all right or all wrong (dynamic sampling, DAPO)",
        "raise the group size or the sampling temperature",
    ],
    "nonfinite": [
        "inspect the step's logits and loss for NaN/inf; lower the learning rate",
        "compute softmax/log-softmax in fp32",
    ],
}


def severity_rank(severity: str) -> int:
    """0 info, 1 warning, 2 critical."""
    return SEVERITIES.index(severity)


def alert_key(step: int, detector: str, kind: str, severity: str) -> str:
    """The one identity of an alert, ``"step:detector:kind:severity"``: the CLI, the app, the stored ``alerts``
    table and the notifications de-duplicate on it (an alert that rises in severity is a new alert)."""
    return f"{int(step)}:{detector}:{kind}:{severity}"


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):
        return _clean(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


class Frozen(dict):
    """An alert's evidence: a dict that refuses changes (every result, and a live ``Analyzer``'s later verdicts,
    share the alert). ``dict(alert.evidence)`` or ``alert.to_dict()`` give a copy to change."""

    __slots__ = ()

    def _refused(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("an alert's evidence is read-only (alerts are shared): change a copy, dict(alert.evidence)")

    __setitem__ = __delitem__ = __ior__ = _refused
    clear = pop = popitem = setdefault = update = _refused

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy rebuild it whole (not item by item)
        return (type(self), (dict(self),))


class FrozenList(list):
    """A list in an alert (its actions, a list in its evidence) that refuses changes, as :class:`Frozen`."""

    __slots__ = ()

    def _refused(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("an alert's lists are read-only (alerts are shared): change a copy, list(...)")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refused
    append = extend = insert = pop = remove = clear = sort = reverse = _refused

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self),))


def _frozen(obj: Any) -> Any:
    """``obj`` (JSON values, :func:`_clean`'s output) with every dict and list made read-only."""
    if isinstance(obj, dict):
        return Frozen({k: _frozen(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return FrozenList(_frozen(v) for v in obj)
    return obj


@dataclass(frozen=True)
class Alert:
    """One alert. ``step`` is the logged step it was raised at (only data up to it was used).

    Immutable (as :class:`~entropy_watch.analysis.verdict.Verdict`): a result's alerts, its verdict's and a live
    ``Analyzer``'s later verdicts share them, so none can change another's; ``evidence`` (JSON values: NaN/inf as
    None) and ``actions`` are read-only too (``dataclasses.replace`` or ``to_dict()`` give a changed copy). Alerts
    compare by value and hash by their fields but the evidence and actions (a set of alerts works); they pickle and
    copy as values."""

    step: int
    detector: str
    kind: str
    severity: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict, hash=False)
    actions: list[str] = field(default_factory=list, hash=False)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        set_ = object.__setattr__  # frozen: the constructor's normalisation only
        set_(self, "step", int(self.step))
        set_(self, "evidence", _frozen(_clean(dict(self.evidence or {}))))
        actions = [self.actions] if isinstance(self.actions, str) else self.actions
        set_(self, "actions", FrozenList(actions or ACTIONS.get(self.kind, [])))

    @property
    def rank(self) -> int:
        return severity_rank(self.severity)

    @property
    def key(self) -> str:
        """See :func:`alert_key`."""
        return alert_key(self.step, self.detector, self.kind, self.severity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "step": self.step,
            "detector": self.detector,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "evidence": _clean(self.evidence),  # plain copies: changing them leaves the alert as it is
            "actions": list(self.actions),
        }

    def to_row(self, wall_time: float | None = None) -> dict[str, Any]:
        """A row of the ``alerts`` table; the actions go inside the evidence JSON."""
        import time

        ev = dict(self.evidence)
        ev["actions"] = list(self.actions)
        return {
            "step": self.step,
            "detector": self.detector,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "evidence": json.dumps(_clean(ev), sort_keys=True),
            "wall_time": float(time.time() if wall_time is None else wall_time),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Alert:
        ev = json.loads(row.get("evidence") or "{}")
        actions = ev.pop("actions", [])
        return cls(
            step=int(row["step"]),
            detector=str(row["detector"]),
            kind=str(row.get("kind") or ""),
            severity=str(row["severity"]),
            message=str(row["message"]),
            evidence=ev,
            actions=list(actions),
        )


def rows(alerts: list[Alert], wall_time: float | None = None) -> dict[str, list[Any]]:
    """Column dict for ``RunWriter.write("alerts", ...)``."""
    cols: dict[str, list[Any]] = {
        k: [] for k in ("step", "detector", "kind", "severity", "message", "evidence", "wall_time")
    }
    for a in alerts:
        for k, v in a.to_row(wall_time).items():
            cols[k].append(v)
    return cols


def _num(x: float, fmt: str) -> str:
    """``x`` in ``fmt`` up to a million, in 3 significant digits beyond (a corrupt cell of 1e300 nats reads
    '1e+300', not a 300-digit number)."""
    return f"{x:{fmt}}" if math.isfinite(x) and abs(x) < 1e6 else f"{x:.3g}"


def fmt_nats(x: float) -> str:
    """Entropy for messages: 2 significant digits below 1, else 2 decimals (:func:`_num` beyond a million); a value
    that 2 significant digits round up to 1 reads '1.00' ('median 1 -> 2.86 nats' beside two decimals)."""
    if not math.isfinite(x):
        return str(x)
    return f"{x:.2g}" if abs(x) < 0.995 else _num(x, ".2f")


def fmt_mult(x: float) -> str:
    """A multiple of H_ref for messages ('3.2', or '2e+299' for a corrupt cell), followed by '×' by the caller."""
    return _num(x, ".1f")


def fmt_ratio(r: float) -> str:
    """H/H_ref as every surface words it: a share below two-fold ('37%', '0.04%'), a multiple from there ('2.4×')."""
    return f"{fmt_mult(r)}×" if r >= 2 else fmt_share(r)


def fmt_share(x: float) -> str:
    """A share as a percentage for messages: '13%'; one decimal under 11%, cut down, never rounded onto the floor's
    10% ('9.8%': 9.8% of H_ref read '10% of H_ref' beside 'below 10% of H_ref now'; '10.4%' beside 'back above
    10%'); one significant digit under 1% ('0.04%': 0.04% printed '0% of H_ref', as if none were left), '<0.01%'
    under that; :func:`_num` beyond a million."""
    p = 100.0 * x
    if math.isfinite(p) and 0 < abs(p) < 1:
        return "<0.01%" if abs(p) < 0.01 else f"{p:.1g}%"
    if math.isfinite(p) and 1 <= p < 11:  # the floor's 10% is read beside it: "10.4%" is "back above 10%"
        text = f"{math.floor(10 * p + 1e-9) / 10:.1f}"  # 1e-9: 0.07 is 6.999..% in floats
        return (text.removesuffix(".0") if p < 10 else text) + "%"
    return f"{_num(p, '.0f')}%"


def fmt_change(a: float, b: float) -> str:
    """'0.61 -> 0.00' for a reward that moved: 2 decimals, or up to 4 when 2 would print two different values the
    same (a validation reward that fell 0.614 -> 0.598 read '0.61 -> 0.60'); :func:`_num` beyond a million."""
    for d in (2, 3, 4):
        x, y = _num(a, f".{d}f"), _num(b, f".{d}f")
        if x != y or a == b:
            break
    return f"{x} -> {y}"


def pct_change(a: float, b: float) -> str:
    """'−74%' style change from ``a`` to ``b``."""
    if a == 0 or not (math.isfinite(a) and math.isfinite(b)):
        return "n/a"
    p = 100.0 * (b - a) / abs(a)
    return f"{'+' if p >= 0 else '−'}{_num(abs(p), '.0f')}%"
