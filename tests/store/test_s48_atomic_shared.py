"""Two writers publishing the same shared file at once (``_runs.parquet``: overlapping cron compactions, a compaction
and ``entropy-watch rm``) shared one temporary, ``._runs.parquet.tmp``: the second truncated the first's half-written
file and then failed (``FileNotFoundError``) when the first had already renamed it away. Each writes its own."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from entropy_watch.store import atomic


def test_two_writers_of_one_file_each_publish_a_whole_file(tmp_path: Path, monkeypatch) -> None:
    both_writing = threading.Barrier(2, timeout=10)
    write = pq.write_table

    def interleaved(table: pa.Table, where, **kw) -> None:
        both_writing.wait()  # both temporaries open before either is renamed into place
        write(table, where, **kw)

    monkeypatch.setattr(atomic.pq, "write_table", interleaved)
    dest, errors = tmp_path / "_runs.parquet", []

    def publish(n: int) -> None:
        try:
            atomic.write_parquet_atomic(dest, pa.table({"run": [f"r{n}"] * (n + 1)}))
        except Exception as e:  # noqa: BLE001 - the failure under test
            errors.append(e)

    workers = [threading.Thread(target=publish, args=(n,)) for n in (0, 1)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(20)
    assert errors == []
    assert pq.read_table(dest).column("run").to_pylist() in (["r0"], ["r1", "r1"])  # one writer's whole file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_runs.parquet"]  # no temporary left behind
