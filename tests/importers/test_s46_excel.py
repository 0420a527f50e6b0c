"""Real logs as spreadsheets export them: Excel's "CSV (semicolon)" with a BOM, decimal commas, CRLF, quoted headers
and, past the data, separators without a value (";;" ending each line: columns once touched, rows of ";;;;" below
the data). They read as the original log; the empty columns were refused as "duplicate column name(s) ," before."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from entropy_watch.importers import load_log

from ..real_runs import REAL

FILES = ["rasbt__reasoning-from-scratch__ch07-7_4-clip-ratio.csv", "befocuss__Deep-GRPO__qwen25-0.5b-gsm8k-treerl.csv"]


def _excel(src: Path, dst: Path, trailing: int) -> None:
    rows = list(csv.reader(src.open(newline="")))
    with dst.open("w", encoding="utf-8-sig", newline="") as fh:
        fh.write(";".join(f'"{h}"' for h in rows[0]) + ";" * trailing + "\r\n")
        for r in rows[1:]:
            fh.write(";".join(c.replace(".", ",") for c in r) + ";" * trailing + "\r\n")
        fh.write((";" * (len(rows[0]) - 1 + trailing) + "\r\n") * 3)


@pytest.mark.parametrize("trailing", [0, 1, 3])
@pytest.mark.parametrize("name", FILES)
def test_an_excel_export_reads_as_the_original(tmp_path: Path, name: str, trailing: int) -> None:
    src = REAL / name
    if not src.exists():
        pytest.skip(f"{src} is not here")
    dst = tmp_path / name
    _excel(src, dst, trailing)
    (want,) = load_log(src)
    (got,) = load_log(dst)
    for metric in ("entropy/mean", "reward/mean"):
        (ws, wv), (gs, gv) = want.series(metric), got.series(metric)
        assert gs.tolist() == ws.tolist() and gv.tolist() == pytest.approx(wv.tolist(), rel=1e-12)
    assert any("decimal commas" in n for n in got.notes), got.notes
    assert any("empty column(s) without a name" in n for n in got.notes) == (trailing > 0), got.notes


def test_a_pandas_index_column_is_still_named_as_one(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text(",step,entropy,\n0,1,0.5,\n1,2,0.4,\n2,3,0.3,\n")
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == [1, 2, 3]
    assert any("index of a pandas DataFrame" in n for n in run.notes), run.notes
