"""A run's ``_run.json`` is data any writer chose (a hand edit, a foreign tool, an old version): values of the wrong
type lose what they state, never the run's analysis — in the CLI, the report and the app's background analysis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.analysis.series import analysis_meta, hist_edges
from entropy_watch.monitor import Monitor
from entropy_watch.store import RunWriter, Store
from entropy_watch.store.layout import RUN_JSON, run_dir

HOSTILE: list[dict[str, Any]] = [
    {"hist_edges": 5},
    {"hist_edges": ["a", "b"]},
    {"planned_steps": "abc"},
    {"config": {"max_steps": [1, 2]}},
    {"import_notes": "one string note"},
    {"import_notes": [1, {"x": 2}, None]},
]


def _store(root: Path, extra: dict[str, Any]) -> None:
    n = 60
    h = 1.2 * np.exp(-np.arange(n) / 20.0) + 0.02
    w = RunWriter(root, "r")
    w.write("scalars", {"step": np.arange(n), "name": [M.ENTROPY_MEAN] * n, "value": h})
    w.write("hist", {"step": [0, 0], "bin": [0, 1], "count": [3, 4]})
    w.close()
    path = run_dir(root, "r") / RUN_JSON
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, **extra}))


@pytest.mark.parametrize("extra", HOSTILE, ids=[json.dumps(x) for x in HOSTILE])
def test_a_wrong_value_in_run_json_is_left_out_not_fatal(tmp_path: Path, extra: dict[str, Any]) -> None:
    _store(tmp_path, extra)
    series = RunSeries.from_reader(Store(tmp_path), "r")
    result = analyze(series)
    assert result.verdict is not None
    assert all(isinstance(n, str) for n in result.verdict.notes)
    if "import_notes" in extra:
        want = extra["import_notes"]
        assert [n for n in result.verdict.notes if n in map(str, want if isinstance(want, list) else [want])]
        assert "o" not in result.verdict.notes  # a string is one note, not one per character


@pytest.mark.parametrize("extra", HOSTILE[:2], ids=["edges-number", "edges-text"])
def test_the_monitor_reports_what_it_cannot_read(tmp_path: Path, extra: dict[str, Any]) -> None:
    """A run whose store cannot be read is an error state, one line: not a background thread that dies and leaves the
    app's page "analysing…" forever."""
    _store(tmp_path, extra)
    errors: list[str] = []
    mon = Monitor(Store(tmp_path), on_error=lambda r, m: errors.append(m))
    mon.follow(interval_s=0.01, iterations=1)
    st = mon.state("r")
    assert st is not None and (st.result is not None or st.error is not None)


def test_meta_values() -> None:
    assert analysis_meta({"planned_steps": "600"})["planned_steps"] == 600
    assert analysis_meta({"config": {"max_steps": 600.0}})["planned_steps"] == 600
    for bad in ("abc", 0, -5, 1.5, True, [600], 1e300):
        assert "planned_steps" not in analysis_meta({"planned_steps": bad}), bad
    assert analysis_meta({"import_notes": "a note"})["import_notes"] == ["a note"]
    assert analysis_meta({"import_notes": [1, None]})["import_notes"] == ["1", "None"]
    assert hist_edges({"hist_edges": [0, 0.5, 1]}) == [0.0, 0.5, 1.0]
    for bad in (5, "0,1", [], [0, "1"], [0, True], {"a": 1}):
        assert hist_edges({"hist_edges": bad}) is None, bad


def test_a_read_that_fails_is_the_runs_error_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever reading a run raises (a file another process damaged), the monitor records it as the run's error,
    one line, and the loop goes on."""
    _store(tmp_path, {})

    def broken(cls: type, reader: object, run: str) -> RunSeries:
        raise OSError("segment unreadable")

    monkeypatch.setattr(RunSeries, "from_reader", classmethod(broken))
    errors: list[str] = []
    mon = Monitor(Store(tmp_path), on_error=lambda r, m: errors.append(m))
    assert mon.follow(interval_s=0.01, iterations=2) == 2
    st = mon.state("r")
    assert st is not None and st.error is not None and "segment unreadable" in st.error
    assert errors and "segment unreadable" in errors[0]


def test_a_database_error_while_reading_is_the_runs_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB's own errors (a foreign segment whose column has another type) are the run's error line, one line, not
    an exception that ends the app's background analysis thread; Ctrl-C during a query still stops the caller."""
    import duckdb

    _store(tmp_path, {})
    raised: list[BaseException] = [duckdb.ConversionException("Conversion Error: cannot cast\nfirst hint\nsecond hint")]

    def broken(cls: type, reader: object, run: str) -> RunSeries:
        raise raised[0]

    monkeypatch.setattr(RunSeries, "from_reader", classmethod(broken))
    mon = Monitor(Store(tmp_path))
    mon.follow(interval_s=0.01, iterations=1)
    st = mon.state("r")
    assert st is not None and st.error == "reading the run failed: ConversionException: Conversion Error: cannot cast"
    raised[0] = duckdb.InterruptException("INTERRUPT Error: Interrupted!")
    mon2 = Monitor(Store(tmp_path))
    with pytest.raises(duckdb.InterruptException):
        mon2.follow(interval_s=0.01, iterations=1)
