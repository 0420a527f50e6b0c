"""What a resume replaced is left out of every read: a training that crashed at step 99, resumed from its checkpoint
at step 60 and stopped at 79 (crashed again, or still running) reads 0–59 from before and 60–79 resumed — not 60–79
resumed then 80–99 from before — in its scalars, histograms and tokens, on both readers. Checked against the rule
written out here in Python over every row written."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import RunSeries
from entropy_watch.store import RunWriter, Store, TailReader
from entropy_watch.store.reads import ALL_STEPS, RunReader

RUN = "resumed"
N_BINS = 4
Row = tuple[int, str, int, float, float, str]  # step, name, rank, wall time, value, writer session
EVENT = (60, 2000.0)  # the resume: step, wall time
NOTE = (10, 3000.0)  # a resume event written afterwards by a process that logs nothing
Events = list[tuple[int, float, str]]  # resume events: step, wall time, writer session
Fixture = tuple[Path, list[Row], Events]


def _scalars(w: RunWriter, rows: list[Row], name: str, steps: range, wall0: float, value: float) -> None:
    vals = [value + 0.001 * s for s in steps]
    walls = [wall0 + s for s in steps]
    w.write("scalars", {"step": list(steps), "name": [name] * len(steps), "value": vals, "wall_time": walls})
    rows += [(s, name, w.rank, t, v, w.session) for s, t, v in zip(steps, walls, vals, strict=True)]


def _hist(w: RunWriter, steps: range) -> None:
    w.write("hist", {"step": list(steps), "bin": [s % N_BINS for s in steps], "count": [1] * len(steps)})


def _tokens(w: RunWriter, steps: list[int], text: str) -> None:
    n = len(steps)
    w.write("tokens", {"step": steps, "seq": [0] * n, "pos": [0] * n, "token_id": [1] * n, "token_text": [text] * n,
                       "entropy": [1.0] * n})  # fmt: skip


def _alert(w: RunWriter, step: int, wall: float) -> None:
    w.write("alerts", {"step": [step], "detector": ["d"], "kind": ["collapse"], "severity": ["critical"],
                       "message": [f"at {step}"], "evidence": ["{}"], "wall_time": [wall]})  # fmt: skip


def _writer(root: Path, rank: int) -> RunWriter:
    time.sleep(0.002)  # sessions are named by their start (ns): keep the order of creation
    return RunWriter(root, RUN, rank=rank)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    """Two ranks to step 99 (rows at wall 1000 + step), an evaluation process that goes on writing across the restart
    (its last row after the resume), then both ranks resumed at step 60 (wall 2000; rank 1's session opened first) to
    step 79; then a process that logs nothing adds a resume event at step 10. Another run, never resumed, beside it.
    Returns the root, every scalar row written and the resume events as ``(step, wall time, session)``."""
    root = tmp_path_factory.mktemp("resume") / "store"
    rows: list[Row] = []
    first = [_writer(root, 0), _writer(root, 1)]
    evals = _writer(root, 0)
    for w in first:
        _scalars(w, rows, M.ENTROPY_MEAN, range(100), 1000.0, 1.0 + 0.1 * w.rank)
        _scalars(w, rows, M.REWARD_MEAN, range(100), 1000.0, 0.0)
        _hist(w, range(100))
    _tokens(first[0], [10, 70, 90], "before")
    _scalars(evals, rows, "eval/reward", range(80, 81), 1000.0, 0.5)  # written before the resume ...
    _alert(first[0], 30, 1030.0)  # raised live before the crash: kept (its step is still the run's) ...
    _alert(first[0], 95, 1095.0)  # ... and left out (raised on the trajectory the resume replaced)
    side = RunWriter(root, RUN, rank=0, heartbeat=False)  # `alerts --write`: logs no scalars
    _alert(side, 90, 1500.0)  # read the run before the resume: left out
    for w in first:
        w.close("failed")
    resumed = [_writer(root, 1), _writer(root, 0)]
    for w in resumed:  # each rank says so, as a loop that calls ``w.event`` on every rank does (``reduce=False``)
        w.write("events", {"step": [EVENT[0]], "kind": ["resume"], "payload": ["{}"], "wall_time": [EVENT[1]]})
    _scalars(evals, rows, "eval/reward", range(90, 91), 2010.0, 0.6)  # ... and after it: a process still running
    for w in resumed:
        _scalars(w, rows, M.ENTROPY_MEAN, range(60, 80), EVENT[1] + 1, 0.2 + 0.1 * w.rank)
        _scalars(w, rows, M.REWARD_MEAN, range(60, 80), EVENT[1] + 1, 0.5)
        _hist(w, range(60, 80))
    _tokens(resumed[1], [70], "after")
    _alert(resumed[1], 70, 2070.0)
    _alert(side, 75, 2500.0)  # read it after the resume: kept
    side.close()
    for w in resumed:
        w.close()
    evals.close()
    note = _writer(root, 0)
    note.write("events", {"step": [NOTE[0]], "kind": ["resume"], "payload": ["{}"], "wall_time": [NOTE[1]]})
    note.close()
    events = [(*EVENT, w.session) for w in resumed] + [(*NOTE, note.session)]
    other = RunWriter(root, "other", rank=0)
    other.write("scalars", {"step": [0, 1], "name": [M.ENTROPY_MEAN] * 2, "value": [0.9, 0.8], "wall_time": [1.0, 2.0]})
    other.close()
    return root, rows, events


def _reference(rows: list[Row], events: Events, name: str, rank: int | None = None) -> dict:
    """The rules in plain Python: a session whose last row was written before a resume by another session that
    logged rows itself loses its rows at the resume's step or later; then per step the lowest rank, the latest wall
    time, the latest session."""
    last: dict[str, float] = {}
    for _, _, _, wall, _, writer in rows:
        last[writer] = max(last.get(writer, -np.inf), wall)
    best: dict[int, tuple] = {}
    for step, n, r, wall, value, writer in rows:
        gone = any(by in last and by != writer and last[writer] < t and step >= s for s, t, by in events)
        if n != name or gone or (rank is not None and r != rank):
            continue
        key = (-r, wall, writer)
        if step not in best or key > best[step][0]:
            best[step] = (key, value)
    return {s: v for s, (_, v) in sorted(best.items())}


def _readers(root: Path) -> list[RunReader]:
    tail = TailReader(root)
    tail.poll()
    return [Store(root), tail]


def test_series_leave_out_what_the_resume_replaced(store: Fixture) -> None:
    root, rows, events = store
    ent = _reference(rows, events, M.ENTROPY_MEAN)
    assert list(ent) == list(range(80)) and ent[59] == pytest.approx(1.059) and ent[60] == pytest.approx(0.26)
    for reader in _readers(root):
        for name in (M.ENTROPY_MEAN, M.REWARD_MEAN, "eval/reward"):
            ref = _reference(rows, events, name)
            steps, values = reader.series(RUN, name)
            assert steps.tolist() == list(ref), name
            np.testing.assert_allclose(values, list(ref.values()))
            many = reader.series_many(RUN, [name])[name]
            assert many[0].tolist() == list(ref) and np.allclose(many[1], list(ref.values()))
        assert reader.series(RUN, "eval/reward")[0].tolist() == [80, 90]  # its session wrote after the resume
        ref1 = _reference(rows, events, M.ENTROPY_MEAN, rank=1)
        assert reader.series(RUN, M.ENTROPY_MEAN, rank=1)[0].tolist() == list(ref1) == list(range(80))
        tr = reader.downsampled(RUN, [M.ENTROPY_MEAN], ALL_STEPS, max_points=40)[M.ENTROPY_MEAN]
        assert tr.width == 2 and np.allclose(tr.mean, np.asarray(list(ent.values())).reshape(40, 2).mean(1))
        steps, x, y = reader.paired(RUN, M.ENTROPY_MEAN, M.REWARD_MEAN)
        assert steps.tolist() == list(range(80)) and np.allclose(x, list(ent.values()))
        d = reader.delta(RUN, M.ENTROPY_MEAN)
        assert d is not None and d.steps[-1] == 78 and np.allclose(d.mean, np.diff(list(ent.values())))
        spark = reader.sparklines(M.ENTROPY_MEAN, points=80)
        assert np.allclose(spark[RUN], list(ent.values())) and np.allclose(spark["other"], [0.9, 0.8])
        assert reader.series("other", M.ENTROPY_MEAN)[0].tolist() == [0, 1]


def test_histograms_and_tokens_leave_out_what_the_resume_replaced(store: Fixture) -> None:
    root, _, _ = store
    for reader in _readers(root):
        hm = reader.hist_matrix(RUN, N_BINS)
        assert hm is not None
        steps, counts = hm
        assert steps.tolist() == list(range(80))
        np.testing.assert_array_equal(counts.sum(1), [2] * 80)  # two ranks a step, the resumed steps not twice
    tokens = Store(root).top_tokens(RUN, spread=False)
    assert sorted(zip(tokens.column("step").to_pylist(), tokens.column("token").to_pylist(), strict=True)) == [
        (10, "before"),
        (70, "after"),
    ]


def test_alerts_raised_on_the_replaced_trajectory_are_left_out(store: Fixture) -> None:
    root, _, _ = store
    for reader in _readers(root):
        assert [a["step"] for a in reader.alerts(RUN)] == [30, 70, 75]
        assert reader.alerts("other") == []


def test_the_analysis_reads_the_resumed_run_to_where_it_stopped(store: Fixture) -> None:
    root, _, _ = store
    series = RunSeries.from_reader(Store(root), RUN)
    assert series.steps[-1] == 79 and series.entropy[-1] == pytest.approx(0.279)
    assert series.events == [(10, "resume"), (60, "resume"), (60, "resume")]


def test_show_quotes_the_resumed_run_where_it_stopped(store: Fixture) -> None:
    """``show`` (and every reader's ``ends``) reads the first and last point by the same rules: its latest entropy is
    the resumed session's at step 79, not the dead one's at 99; and the run's last step (the writers' summaries, what
    ``ls`` lists) is the newest step read (the evaluation's at 90), each resumed rank having dropped what it carried
    from its dead session past the resume.
    (A rank that writes no resume event itself keeps its dead session's last step there until it passes it.)"""
    import json

    import typer.testing

    from entropy_watch.cli import app

    root, rows, events = store
    ent = _reference(rows, events, M.ENTROPY_MEAN)
    for reader in _readers(root):
        (first, last) = reader.ends(RUN, [M.ENTROPY_MEAN, "not/logged"])[M.ENTROPY_MEAN]
        assert first == (pytest.approx(ent[0]), 0) and last == (pytest.approx(ent[79]), 79)
    r = typer.testing.CliRunner().invoke(app, ["--store", str(root), "show", RUN, "--json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    newest = max(max(_reference(rows, events, n)) for n in (M.ENTROPY_MEAN, M.REWARD_MEAN, "eval/reward"))
    assert newest == 90  # the evaluation process's row after the resume
    assert shown["metrics"][M.ENTROPY_MEAN] == [pytest.approx(ent[79]), 79] and shown["last_step"] == newest
    assert shown["entropy_first"] == [pytest.approx(ent[0]), 0]


def test_events_of_a_replaced_trajectory_are_left_out(tmp_path: Path) -> None:
    """Killed at 249, resumed from 200, resumed again from 100: the step-200 resume and the first session's events
    at 100 or later marked trajectories that are gone (the app drew a resume line at 200 ahead of the data, and the
    analysis would have explained a jump there); events before 100 and the last resume stay."""
    root = tmp_path / "store"
    rows: list[Row] = []
    marks = {
        0: [(20, "lr_schedule"), (150, "config_edit")],
        1: [(200, "resume"), (210, "lr_schedule")],
        2: [(100, "resume")],
    }
    spans = {0: range(0, 250), 1: range(200, 220), 2: range(100, 121)}
    for session, span in spans.items():
        w = RunWriter(root, "twice", rank=0)
        wall0 = 1000.0 * (session + 1)
        for step, kind in marks[session]:
            w.write(
                "events", {"step": [step], "kind": [kind], "payload": ["{}"], "wall_time": [wall0 + step - span[0]]}
            )
        _scalars(w, rows, M.ENTROPY_MEAN, span, wall0 - span[0], 1.0)
        w.close("failed")
        time.sleep(0.002)
    for reader in _readers(root):
        assert [(e["step"], e["kind"]) for e in reader.events("twice")] == [(20, "lr_schedule"), (100, "resume")]
