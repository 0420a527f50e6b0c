"""A TailReader poll over many new files ingests them in bounded batches, each row once.

Found by the store audit: the first poll of a run with 30,000 one-row segments read them with ONE ``read_parquet``
and peaked at 2.7 GB (10 s); in batches of 1,000 files it peaks at 340 MB (7.5 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from entropy_watch.store import RunWriter, TailReader, compact
from entropy_watch.store import tail as tail_mod


def test_poll_ingests_in_batches_each_row_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tail_mod, "INGEST_BATCH_FILES", 3)
    sizes: list[int] = []
    real = tail_mod.TailReader._ingest

    def spy(self: TailReader, table: str, sel: tail_mod.Selection) -> int:
        sizes.append(len(sel.whole) + len(sel.partial))
        return real(self, table, sel)

    monkeypatch.setattr(tail_mod.TailReader, "_ingest", spy)
    w = RunWriter(tmp_path, "r", rank=0)
    for step in range(10):
        w.write("scalars", {"step": [step], "name": ["m"], "value": [float(step)]})
    tail = TailReader(tmp_path, tables=("scalars",))
    assert tail.poll() == 10
    compact(tmp_path, min_age_s=0.0)  # a part covering what was read, and new segments after it
    for step in range(10, 17):
        w.write("scalars", {"step": [step], "name": ["m"], "value": [float(step)]})
    assert tail.poll() == 7
    assert max(sizes) <= 3
    steps = tail.query("SELECT step FROM scalars ORDER BY step").column("step").to_pylist()
    assert steps == list(range(17))
