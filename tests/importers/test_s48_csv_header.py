"""A CSV header whose quoted column name holds a line break (``"reward\\nmean"``: what pandas' ``to_csv`` and Excel
write for a wrapped header cell). Read as one line, the rest of the name became a row and every row after it had a
field too many: the import failed ("N fields but the header has N-1"), or, with the name last, a bogus row was
reported and the name cut short. Both readers (Arrow's and the line reader) now read the whole header row."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.importers import columns, generic, load_log

from ..cli_run import run_cli

N = 25


def _rows() -> list[list[object]]:
    return [[s, round(1.2 - 0.01 * s, 6), round(0.1 + 0.02 * s, 6), round(0.001 * s, 6)] for s in range(1, N + 1)]


def _write(path: Path, header: list[str], terminator: str = "\n", repeat_at: int | None = None) -> list[list[object]]:
    rows = _rows()
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator=terminator)  # quotes a name with a line break, as pandas does
        w.writerow(header)
        for i, row in enumerate(rows):
            if i == repeat_at:
                w.writerow(header)  # a second log appended after the first, header and all
            w.writerow(row)
    return rows


@pytest.fixture(params=["arrow", "lines"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "lines":
        monkeypatch.setattr(generic, "read_csv_arrow", lambda *a: None)
        monkeypatch.setattr(columns, "read_csv_arrow", lambda *a: None)
    return str(request.param)


@pytest.mark.parametrize("terminator", ["\n", "\r\n"])
@pytest.mark.parametrize(
    "header",
    [
        ["step", "entropy", "reward\nmean", "kl"],  # a wrapped name in the middle: every row had a field too many
        ["step", "entropy", "kl", "reward\nmean"],  # last: a bogus row at line 2
        ["global\nstep", "entropy", "reward\n\nmean", "kl"],  # several, one over three lines
    ],
)
def test_a_wrapped_column_name_reads_every_row_in_its_column(
    tmp_path: Path, header: list[str], terminator: str, reader: str
) -> None:
    p = tmp_path / "wrapped.csv"
    rows = _write(p, header, terminator)
    (run,) = load_log(p, mapping={"step": header[0].replace("\n", " ").replace("  ", " ")})
    want = {h: np.array([r[i] for r in rows], dtype=float) for i, h in enumerate(header)}
    steps = want[header[0]].astype(np.int64)
    for h in header[1:]:
        name = " ".join(h.split())
        got_steps, got = run.series(name)
        assert got_steps.tolist() == steps.tolist(), f"{name}: every row, none lost"
        np.testing.assert_array_equal(got, want[h])
    assert run.series("entropy/mean")[1].tolist() == want["entropy"].tolist()
    assert not any("skipped" in n for n in run.notes), run.notes
    assert any("held line breaks" in n for n in run.notes)


def test_a_wrapped_header_repeated_mid_file_is_left_out(tmp_path: Path, reader: str) -> None:
    p = tmp_path / "joined.csv"
    rows = _write(p, ["step", "entropy", "reward\nmean", "kl"], repeat_at=10)
    (run,) = load_log(p)
    assert run.series("reward mean")[0].tolist() == [r[0] for r in rows]
    assert any("repeat the header (first at line 13)" in n for n in run.notes), run.notes


def test_a_bad_cell_is_located_on_its_own_line(tmp_path: Path, reader: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text('step,entropy,"reward\nmean"\n1,0.9,0.1\n2,0.8,0.2\n3,oops,0.3\n4,0.7,0.4\n')
    (run,) = load_log(p)
    assert any("line 5: 'oops'" in n for n in run.notes), run.notes  # the header takes lines 1-2
    assert run.series("reward mean")[0].tolist() == [1, 2, 3, 4]


def test_the_cli_imports_and_analyses_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "wrapped.csv"
    _write(p, ["step", "entropy", "reward\nmean", "kl"], "\r\n")
    store = tmp_path / "store"
    ran = run_cli(capsys, "--store", store, "alerts", p)
    assert ran.code in (0, 1), ran.err
    ran = run_cli(capsys, "--store", store, "import", p, "--map", "reward=reward mean", "--json")
    assert ran.code == 0, ran.err


def test_a_header_quote_that_never_closes_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "broken.csv"
    p.write_text('step,"entropy,reward\n' + "".join(f"{s},0.5,0.1\n" for s in range(1, 20)))
    store = tmp_path / "store"
    ran = run_cli(capsys, "--store", store, "import", p)
    assert ran.code == 1
    (line,) = ran.err.strip().splitlines()
    assert "line 1: a quote in the header row is not closed" in line
    assert not list(store.glob("**/run=*"))
