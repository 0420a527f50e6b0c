"""Known change points (DESIGN §3 ``events``): which event kinds the analysis reads, what it does at each, and the
words every surface (the Run page's marks, ``entropy-watch show``) uses for them. Core tier: standard library only."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

KNOWN_CHANGE_KINDS: frozenset[str] = frozenset({"resume", "lr_schedule", "lr_change", "config", "config_edit", "reset"})
"""Each of these kinds explains a cliff logged with it (``cliffs.detect``) ..."""
# ... and all but ``resume`` restart the baselines (a new segment: H_ref, noise, windows, collapse, explosion states):
# an LR change alters how the run moves and a config edit may alter what is measured (sampling temperature, estimator,
# task), so the level after one is compared with itself, as the user who logged it asked. A resume restores policy,
# optimizer and schedule from a checkpoint and the run goes on where it was: a baseline retaken there is the level the
# run had already fallen to (a run at 4% of its early entropy, resumed, read "warning: 34% of H_ref 0.22" instead of
# critical), so it only explains the jump a restart may leave.
RESET_EVENT_KINDS: frozenset[str] = KNOWN_CHANGE_KINDS - {"resume"}

CHANGE_LABELS: dict[str, str] = {
    "resume": "resume",
    "lr_schedule": "LR schedule change",
    "lr_change": "LR change",
    "config": "config change",
    "config_edit": "config edit",
    "reset": "reset",
}
"""What a kind is called on every surface, in this order."""


def change_label(kind: str) -> str:
    """The kind's name ("LR schedule change"), else the kind itself."""
    return CHANGE_LABELS.get(kind, kind)


def change_meaning(kind: str) -> str:
    """What the analysis does at a change point of ``kind``."""
    if kind in RESET_EVENT_KINDS:
        return (
            "baselines restart here (a new H_ref: the level after it is compared with itself); a jump here is explained"
        )
    return "the run goes on with its baselines; a jump here is explained"


def change_what(kind: str, payload: Mapping[str, Any]) -> str:
    """What a change point is, plain text: its kind's name, and for a resume where it resumed from (the checkpoint's
    step, the trainer's iteration, or the step an imported log's steps went back from)."""
    what = change_label(kind)
    if kind == "resume":
        if "checkpoint_step" in payload:
            what += f" from checkpoint step {payload['checkpoint_step']}"
        elif "from_iteration" in payload:
            what += f" from iteration {payload['from_iteration']}"
        elif "from_step" in payload:
            what += f" (the logged steps go back from step {payload['from_step']})"
    return what


def event_payload(text: object) -> dict[str, Any] | None:
    """An event's JSON payload as a dict; None when it is not a JSON object (an empty payload is ``{}``). An
    importer's event holds its payload as a dict already (``ImportedRun.events``): taken as it is."""
    if isinstance(text, Mapping):
        return dict(text)
    try:
        payload = json.loads(text or "{}")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def change_points(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Of a run's event rows (``step``, ``kind``, ``payload`` JSON text: ``RunReader.events``, or a dict: an
    importer's ``ImportedRun.events``), the known change points, in their order: ``step``, ``kind`` and ``payload``,
    its JSON object's fields (a payload that is not a JSON object is kept as ``{"payload": text}``: shown as data,
    never dropped). Other kinds (``action``, ``sft``, a user's own) are left out, and so is a repeat of one already
    kept (same step, kind and payload: each rank of a multi-GPU run logs the LR change it applied)."""
    out, seen = [], set()
    for row in events:
        if row["kind"] in KNOWN_CHANGE_KINDS:
            payload = event_payload(row["payload"])
            if payload is None:
                payload = {"payload": str(row["payload"])}
            change = {"step": int(row["step"]), "kind": str(row["kind"]), "payload": payload}
            key = json.dumps(change, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.append(change)
    return out


def describe(changes: list[dict[str, Any]], limit: int = 5) -> list[str]:
    """One plain-text line per change point of :func:`change_points` ("step 60: resume from checkpoint step 59 — the
    run goes on with its baselines; ..."), the first ``limit`` of them, then one line counting the rest."""
    lines = [
        f"step {c['step']:,}: {change_what(c['kind'], c['payload'])} — {change_meaning(c['kind'])}"
        for c in changes[:limit]
    ]
    if len(changes) > limit:
        lines.append(f"and {len(changes) - limit:,} more change points, to step {changes[-1]['step']:,}")
    return lines
