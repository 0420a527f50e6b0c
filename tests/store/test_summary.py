"""Run summaries: listing runs reads small JSON files, never a query per run (issue 11: ``ls`` was quadratic)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter, Store
from entropy_watch.store.layout import run_json_path, status_path


def _write_run(root: Path, run: str, rank: int = 0, n: int = 30, offset: float = 0.0) -> None:
    w = RunWriter(root, run, rank=rank)
    for lo in range(0, n, 10):
        steps = np.arange(lo, min(lo + 10, n))
        names = [M.ENTROPY_MEAN] * len(steps)
        w.write("scalars", {"step": steps, "name": names, "value": 1.0 - steps / 100 + offset})
        w.write("scalars", {"step": steps, "name": ["loss"] * len(steps), "value": steps * 1.0})
    w.close()


def _reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[list[str] | None]:
    calls: list[list[str] | None] = []
    real = store._read

    def counting(runs, tables, sql, params=None):
        calls.append(None if runs is None else list(runs))
        return real(runs, tables, sql, params)

    monkeypatch.setattr(store, "_read", counting)
    monkeypatch.setattr(store, "_query_run", lambda *a, **k: pytest.fail("no per-run query while listing"))
    return calls


def test_live_runs_are_listed_from_their_heartbeats(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(20):
        _write_run(root, f"r{i:02d}", n=30 + i)
    store = Store(root)
    calls = _reads(store, monkeypatch)
    infos = store.runs()
    assert calls == [], "summarised runs need no query"
    for i, info in enumerate(infos):
        last = 29 + i
        assert info.last_step == last
        value, step = info.latest[M.ENTROPY_MEAN]
        assert step == last and value == pytest.approx(1.0 - last / 100)
        assert "loss" not in info.latest, "only canonical metrics are summarised"


def test_ranks_merge_by_highest_step_then_lowest_rank(root: Path) -> None:
    _write_run(root, "dp", rank=1, n=20, offset=0.5)
    _write_run(root, "dp", rank=0, n=20)
    _write_run(root, "dp", rank=2, n=10, offset=0.7)
    info = Store(root).run_info("dp")
    assert info.latest[M.ENTROPY_MEAN] == (pytest.approx(1.0 - 19 / 100), 19)


def test_a_restarted_writer_summarises_both_sessions(root: Path) -> None:
    """A resumed run (a new writer session on the same rank) is listed with what the store holds: the earlier
    session's last step and values at once (it read "N/A" until the new session published), and after a restart
    that ends sooner (steps 10-19 logged again) the earlier session's step 29, whose rows are still stored."""
    _write_run(root, "resumed", n=30)
    again = RunWriter(root, "resumed")
    info = Store(root).run_info("resumed")
    assert info.last_step == 29 and info.latest[M.ENTROPY_MEAN] == (pytest.approx(0.71), 29)
    steps = np.arange(10, 20)
    again.write("scalars", {"step": steps, "name": [M.ENTROPY_MEAN] * 10, "value": np.full(10, 0.5)})
    again.close()
    info = Store(root).run_info("resumed")
    assert info.state == "finished" and info.last_step == 29
    assert info.latest[M.ENTROPY_MEAN] == (pytest.approx(0.71), 29)
    assert Store(root).series("resumed", M.ENTROPY_MEAN)[0].tolist() == list(range(30))  # both sessions' rows


@pytest.mark.parametrize("event_first", [True, False], ids=["event-first", "scalars-first"])
def test_a_resume_drops_what_the_summary_carried_past_it(root: Path, event_first: bool) -> None:
    """Resumed at step 10 and stopped at 14 (whichever of its first scalars and its resume event a publish round
    writes first: the recorder writes scalars first): the rows of the first session past step 9 are no longer read, so
    ``ls`` lists step 14 and the entropy there, as ``show`` and the app read it."""
    _write_run(root, "back", n=30)
    again = RunWriter(root, "back")
    steps = np.arange(10, 15)
    writes = [("events", {"step": [10], "kind": ["resume"], "payload": ["{}"]}),
              ("scalars", {"step": steps, "name": [M.ENTROPY_MEAN] * 5, "value": np.full(5, 0.5)})]  # fmt: skip
    for table, rows in writes if event_first else writes[::-1]:
        again.write(table, rows)
    again.close()
    info = Store(root).run_info("back")
    assert info.last_step == 14 and info.latest[M.ENTROPY_MEAN] == (pytest.approx(0.5), 14)
    assert Store(root).series("back", M.ENTROPY_MEAN)[0].tolist() == list(range(15))


def test_imported_runs_carry_their_summary_in_run_json(root: Path, tmp_path: Path) -> None:
    from entropy_watch.importers import import_log

    log = tmp_path / "imp.csv"
    log.write_text("step,entropy,reward\n" + "".join(f"{s},{1 - s / 50:.3f},{s / 10}\n" for s in range(40)))
    import_log(root, log)
    meta = json.loads(run_json_path(root, "imp").read_text())
    assert meta["summary"]["last_step"] == 39
    info = Store(root).run_info("imp")
    assert info.state == "imported" and info.last_step == 39
    assert info.latest[M.ENTROPY_MEAN] == (pytest.approx(1 - 39 / 50), 39)
    assert info.latest[M.REWARD_MEAN] == (pytest.approx(3.9), 39)


def test_runs_without_summaries_cost_one_query_together(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores written before summaries (or by foreign tools): one query over all such runs, not one per run."""
    for i in range(6):
        _write_run(root, f"old{i}", n=20 + i)
    for i in range(3):  # an old heartbeat without "latest"
        path = status_path(root, f"old{i}", 0)
        st = json.loads(path.read_text())
        del st["latest"]
        path.write_text(json.dumps(st))
    for i in range(3, 6):  # a foreign run: no heartbeat, no summary
        status_path(root, f"old{i}", 0).unlink()
    _write_run(root, "new", n=50)
    store = Store(root)
    calls = _reads(store, monkeypatch)
    infos = {i.name: i for i in store.runs()}
    assert calls == [[f"old{i}" for i in range(6)]]
    for i in range(6):
        assert infos[f"old{i}"].last_step == 19 + i
        assert infos[f"old{i}"].latest[M.ENTROPY_MEAN][1] == 19 + i
    assert infos["new"].latest[M.ENTROPY_MEAN][1] == 49
    assert infos["old4"].state == "imported"
