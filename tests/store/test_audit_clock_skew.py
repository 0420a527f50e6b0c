"""Clock skew between the hosts that write one run: liveness and the resume rules must not depend on writer clocks.

Found by the store audit (a writer process with ``time.time`` shifted by minutes, resumed under the same run/rank):
a session resumed on a host 120 s behind the previous session's lost every re-logged step to the replaced
trajectory on every reader, with and without a ``resume`` event; a rank on a host 120 s behind was listed
``stalled`` while it wrote, and one 120 s ahead stayed ``running`` two minutes after its writer died.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, TailReader
from entropy_watch.store.layout import status_path

SKEW_S = 120.0


def _scalars(w: RunWriter, steps: range, tag: float) -> None:
    n = len(steps)
    w.write(
        "scalars",
        {
            "step": list(steps),
            "name": ["m"] * n,
            "value": [s * 10 + tag for s in steps],
            "wall_time": [time.time()] * n,
        },
    )


def _skew(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This process's clock (the "host") runs ``seconds`` off."""
    real, real_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real() + seconds)
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + int(seconds * 1e9))


@pytest.mark.parametrize("resume_event", [True, False])
def test_resumed_session_on_a_host_behind_replaces_the_earlier_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resume_event: bool
) -> None:
    first = RunWriter(tmp_path, "r", rank=0)
    _scalars(first, range(0, 5), tag=1)  # covered by a heartbeat below
    first.heartbeat()
    _scalars(first, range(5, 10), tag=1)  # published after the last heartbeat, then a kill -9: no close
    _skew(monkeypatch, -SKEW_S)  # the restart lands on a host whose clock is 2 minutes behind
    second = RunWriter(tmp_path, "r", rank=0)
    assert second.session > first.session
    if resume_event:
        second.write("events", {"step": [5], "kind": ["resume"], "payload": ["{}"], "wall_time": [time.time()]})
    _scalars(second, range(5, 8), tag=2)
    monkeypatch.undo()
    want = {**{s: s * 10 + 1 for s in range(5)}, **{s: s * 10 + 2 for s in range(5, 8)}}
    if not resume_event:  # without a resume the earlier steps past the restart stay (README "Resume")
        want.update({s: s * 10 + 1 for s in range(8, 10)})
    tail = TailReader(tmp_path)
    tail.poll()
    for reader in (Store(tmp_path), tail):
        steps, values = reader.series("r", "m")
        assert dict(zip(steps.tolist(), values.tolist(), strict=True)) == want


def test_a_host_without_skew_keeps_its_own_times(tmp_path: Path) -> None:
    first = RunWriter(tmp_path, "r", rank=0)
    _scalars(first, range(3), tag=1)
    second = RunWriter(tmp_path, "r", rank=0)
    assert second.clock_offset_s == 0.0
    before = time.time()
    _scalars(second, range(3, 4), tag=2)
    stored = Store(tmp_path).scalars("r").column("wall_time").to_pylist()[-1]
    assert before - 1 < stored <= time.time()


def _rewrite_status(root: Path, updated_at: float, mtime: float | None = None) -> None:
    path = status_path(root, "r", 0)
    status = json.loads(path.read_text())
    status["updated_at"] = updated_at
    path.write_text(json.dumps(status))
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_liveness_is_judged_by_the_storage_clock(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "r", rank=0, heartbeat_interval_s=1.0)
    w.write("scalars", {"step": [0], "name": ["m"], "value": [np.float64(0.0)]})
    w.heartbeat()
    # a live writer on a host 2 minutes behind: its heartbeat file was just written
    _rewrite_status(tmp_path, updated_at=time.time() - SKEW_S)
    assert Store(tmp_path).run_info("r").state == "running"
    # a dead writer on a host 2 minutes ahead: its file was last written 10 s ago (> 3 intervals)
    _rewrite_status(tmp_path, updated_at=time.time() + SKEW_S, mtime=time.time() - 10.0)
    assert Store(tmp_path).run_info("r").state == "stalled"


def test_side_written_alerts_after_a_resume_stamped_ahead_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rank's previous session ran on a host an hour ahead, so its resumed session is stamped an hour ahead; alerts
    that ``alerts --write`` (a side writer, ``heartbeat=False``) then adds at this host's time predated the ``resume``
    event and every reader left them out as raised on the replaced trajectory."""
    from entropy_watch.analysis.alert import Alert
    from entropy_watch.cli.alerts_cmds import _write_alerts

    _skew(monkeypatch, 3600.0)
    first = RunWriter(tmp_path, "r", rank=0)
    _scalars(first, range(10), tag=1)
    first.close()
    monkeypatch.undo()
    second = RunWriter(tmp_path, "r", rank=0)
    assert second.clock_offset_s > 3590.0
    second.write("events", {"step": [5], "kind": ["resume"], "payload": ["{}"], "wall_time": [time.time()]})
    _scalars(second, range(5, 10), tag=2)
    second.close()
    alert = Alert(step=8, detector="cliff", kind="entropy_cliff", severity="warning", message="m")
    assert _write_alerts(tmp_path, "r", [alert]) == 1
    assert [a["step"] for a in Store(tmp_path).alerts("r")] == [8]
