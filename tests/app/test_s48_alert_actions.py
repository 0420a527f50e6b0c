"""The alerts listed in a table (warnings and criticals past the first boxes, info notes, alerts an earlier analysis
stored) show their suggested actions as their boxes do: ``alert.actions`` as the analysis wrote them (never
recomputed), each made literal (``display.md``). Before, the table dropped them: a run with many alerts never said
what to do about most of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert
from entropy_watch.store import RunWriter

from .test_literal_text import LINK, MESSAGE, assert_literal, rendered
from .test_pages import app

COLUMN = "suggested actions"
RUN = "many-alerts"
TRICKY_ACTION = f"verl: {LINK} actor_rollout_ref.actor.clip_ratio_high=0.28 (now 0.2) {MESSAGE}"


def alert(step: int, severity: str = "critical", actions: list[str] | None = None) -> Alert:
    return Alert(step=step, detector="collapse", kind="collapse", severity=severity, message=f"entropy low at {step}",
                 actions=actions or [f"action A of step {step}", f"action B of step {step}"])  # fmt: skip


def tables(at: AppTest) -> list:
    return [t.value for t in at.table]


def _panel(alerts: list) -> None:  # AppTest runs its source alone (no imports): the verdict's alerts panel
    from entropy_watch.app import run_panels

    run_panels.verdict_alerts(None, alerts, (0, 10**9), True, (0, 100))


def test_the_verdicts_alerts_past_the_boxes_and_its_notes_list_their_actions() -> None:
    """Twelve criticals (ten boxes, two in the table) and an info note: each table row's actions cell is its alert's
    own ``actions``, literal."""
    major = [alert(s) for s in range(1, 13)]
    major[11] = alert(12, actions=[TRICKY_ACTION, "compute log-probs in fp32"])
    note = alert(50, "info", ["raise actor_rollout_ref.rollout.n"])
    at = AppTest.from_function(_panel, args=(major + [note],), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    shown = tables(at)
    assert len(shown) == 2 and all(COLUMN in t.columns for t in shown), [list(t.columns) for t in shown]
    rows = {int(s.replace(",", "")): a for t in shown for s, a in zip(t["step"], t[COLUMN], strict=True)}
    listed = {a.step: a for a in major[10:] + [note]}
    assert set(rows) == set(listed)
    for step, cell in rows.items():
        items = [li for li in rendered(cell)[0].split("<li>")[1:]]
        assert len(items) == len(listed[step].actions), cell  # one list item per action, none merged
        for action in listed[step].actions:
            assert_literal(cell, action)
    assert "<a " not in rendered(rows[12])[0]  # the markdown in an action is shown, not followed


def test_a_table_of_alerts_without_actions_has_no_empty_column() -> None:
    bare = Alert(step=3, detector="change", kind="change_point", severity="info", message="lr changed")
    at = AppTest.from_function(_panel, args=([bare],), default_timeout=60)
    at.run()
    assert not at.exception and [list(t.value.columns) for t in at.table] == [
        ["step", "severity", "kind", "detector", "message"]
    ]


@pytest.fixture
def recorded_store(tmp_path: Path) -> Path:
    return write_recorded(tmp_path / "store")


def write_recorded(root: Path) -> Path:
    """A healthy run whose store holds 3 alerts an earlier analysis wrote (not in the current verdict)."""
    w = RunWriter(root, RUN)
    h = 0.5 + 0.01 * np.sin(np.arange(80) / 3.0)
    w.write("scalars", {"step": list(range(80)), "name": [M.ENTROPY_MEAN] * 80, "value": [float(x) for x in h]})
    stored = [alert(5, "warning", [TRICKY_ACTION]), alert(9, "warning"), alert(12, "critical")]
    rows = [a.to_row() for a in stored]
    w.write("alerts", {k: [r[k] for r in rows] for k in rows[0]})
    w.heartbeat(step=79)
    w.close()
    return root


def test_the_run_page_lists_stored_alerts_with_their_actions(
    monkeypatch: pytest.MonkeyPatch, recorded_store: Path
) -> None:
    at = app(monkeypatch, recorded_store, "views/run.py", {"run": RUN})
    shown = [t for t in tables(at) if "detector" in t.columns]
    assert len(shown) == 1 and COLUMN in shown[0].columns, [list(t.columns) for t in tables(at)]
    cells = dict(zip(shown[0]["step"], shown[0][COLUMN], strict=True))
    assert set(cells) == {"5", "9", "12"}
    assert_literal(cells["5"], TRICKY_ACTION)
    for step in (9, 12):
        for action in alert(step).actions:
            assert_literal(cells[str(step)], action)
