"""A CSV far wider than any log (a numeric array saved as one row) is one error line, read no further.

A million values in one CSV row aborted ``entropy-watch import`` inside pyarrow (``std::bad_alloc``: a core dump, no
message) after 27 s and 4.5 GB; 100,000 columns took 114 s and 1.1 GB to end in "no entropy column".
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers.loader import MAX_COLUMNS, load_log


def _wide(path: Path, columns: int, sep: str = ",") -> Path:
    names = ["step", "entropy", *(f"c{i}" for i in range(columns - 2))]
    rows = [sep.join(names), sep.join(["0", "1.0", *(["1"] * (columns - 2))])]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("sep", [",", "\t", ";"])
def test_a_csv_wider_than_any_log_is_one_error_line(tmp_path: Path, sep: str) -> None:
    path = _wide(tmp_path / "array.csv", MAX_COLUMNS + 1, sep)
    start = time.monotonic()
    with pytest.raises(ImportFormatError) as err:
        load_log(path, fmt="csv" if sep != ";" else None)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and f"{MAX_COLUMNS:,}" in message
    assert time.monotonic() - start < 5, "refused before parsing"


def test_a_compressed_one_names_the_compressed_file(tmp_path: Path) -> None:
    plain = _wide(tmp_path / "array.csv", MAX_COLUMNS + 1)
    packed = tmp_path / "array.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    with pytest.raises(ImportFormatError, match=r"array\.csv\.gz: its first line has 50,001 fields"):
        load_log(packed)


def test_a_wide_log_still_imports(tmp_path: Path) -> None:
    (run,) = load_log(_wide(tmp_path / "wide.csv", 1_000))
    assert len(run.scalars) >= 1_000 and run.series("entropy/mean") is not None
