"""What an on-call engineer meets in the app during a live incident (AppTest, no browser): a selection that stays on
the runs ticked while a live refresh reorders the table, a run whose folder is deleted while its page is open, a data
file that cannot be read, and a server started on an empty address."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter

from .conftest import APP_HOME, shown

TIMEOUT = 60


def app(monkeypatch: pytest.MonkeyPatch, root: Path, page: str | None = None, **state: object) -> AppTest:
    monkeypatch.setenv("ENTROPY_WATCH_DIR", str(root))
    from entropy_watch.app import data, first_paint

    monkeypatch.setattr(data, "POLL_MIN_S", 0.0)  # every script run polls (no rate limit between fragments)
    monkeypatch.setattr(first_paint, "HOLD_S", 0.0)  # no browser: nothing to wait for
    at = AppTest.from_file(str(APP_HOME), default_timeout=TIMEOUT)
    if page:
        at.switch_page(page)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def write(root: Path, run: str, steps: range) -> None:
    w = RunWriter(root, run)
    w.write("scalars", {"step": list(steps), "name": [M.ENTROPY_MEAN] * len(steps), "value": [1.0] * len(steps)})
    w.close()


def captions(at: AppTest) -> list[str]:
    return [shown(c.value) for c in at.caption]


def test_a_live_refresh_that_reorders_the_runs_keeps_the_selection_on_the_run_ticked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    for run, last in (("a", 10), ("b", 20), ("c", 30)):
        write(root, run, range(last + 1))
    at = app(monkeypatch, root, runs_sort="last step")
    assert list(at.dataframe[0].value["run"]) == ["c", "b", "a"]
    at.session_state["runs_df"] = {"selection": {"rows": [2], "columns": [], "cells": []}}  # the user ticks "a"
    at.run()
    assert "Selected: a" in captions(at)
    write(root, "a", range(11, 100))  # "a" resumes and logs past the others: the refresh moves it to the top
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert list(at.dataframe[0].value["run"]) == ["a", "c", "b"]
    assert "Selected: a" in captions(at), captions(at)  # not "b", the run now in the ticked row
    assert list(at.session_state["runs_df"]["selection"]["rows"]) == [0], "the grid's tick moves with the run"
    at.text_input(key="runs_filter").set_value("c").run()  # filtered out: unselected, never another run
    assert not any(c.startswith("Selected") for c in captions(at)), captions(at)


def corrupt_segment(root: Path, run: str) -> Path:
    """A segment of ``run`` cut short by something outside the store (a copy interrupted, a disk error)."""
    folder = root / f"run={run}" / "table=scalars" / "rank=0"
    good = sorted(folder.glob("seg-*.parquet"))[0]
    bad = good.with_name(good.name.replace("-000000.parquet", "-000007.parquet"))
    bad.write_bytes(good.read_bytes()[:300])
    return bad


def test_an_unreadable_data_file_is_named_on_the_run_page_and_the_runs_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    write(root, "a", range(40))
    write(root, "b", range(40))
    bad = corrupt_segment(root, "a")
    at = app(monkeypatch, root, "views/run.py")
    at.query_params["run"] = "a"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    warned = [shown(w.value) for w in at.warning]
    assert any(bad.name in w and "cannot be read" in w for w in warned), warned
    assert at.metric[0].value == "39", "the rest of the run is still shown"
    at.query_params["run"] = "b"  # another run's page: not its file
    at.run()
    assert not any(bad.name in shown(w.value) for w in at.warning)
    at.switch_page("views/runs.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(bad.name in shown(w.value) for w in at.warning), [w.value for w in at.warning]
    assert sorted(at.dataframe[0].value["run"]) == ["a", "b"]
    bad.unlink()  # the user deleted it, as the message says: no longer named
    at.run()
    assert not any(bad.name in shown(w.value) for w in at.warning)


def test_a_run_deleted_while_its_page_is_open_says_so_instead_of_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from entropy_watch.app import data

    root = tmp_path / "store"
    write(root, "a", range(40))
    write(root, "b", range(40))
    # the run listing's 5-second clock held still: the refresh below lands in the same tick as the first drawing
    monkeypatch.setattr(data, "runs", lambda r, generation: data._runs(r, generation, 0))
    at = app(monkeypatch, root, "views/run.py")
    at.query_params["run"] = "a"
    at.run()
    assert not at.exception and at.metric[0].value == "39"
    shutil.rmtree(root / "run=a")  # someone cleans the store up while the on-call engineer reads the page
    data.run_meta.clear()  # its run.json read again (its cache entry expired)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert [t.value for t in at.title][-1] == "Run not found" or any(
        "no longer in the store" in shown(w.value) for w in at.warning
    ), [w.value for w in at.warning]  # the live reader may already have seen the folder go
    data._runs.clear()  # the listing's next tick: the run is not listed any more
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert [t.value for t in at.title][-1] == "Run not found" or any(
        "no longer in the store" in shown(w.value) for w in at.warning
    )
    assert not at.metric, "nothing of the deleted run is drawn as if it were there"
