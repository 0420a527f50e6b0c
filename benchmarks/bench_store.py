"""Store benchmarks: writer throughput, tail-poll latency, one-shot query latency before/after compaction.

Run: ``.venv/bin/python benchmarks/bench_store.py [--files 1000]``. Prints a table; asserts nothing (timings depend
on the machine, so read the ratios). Targets from the design notes: writer >= 500k rows/s at 10k-row scalar
batches; a TailReader poll of 5 new files <= 50 ms while it already holds ~1000 files.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from entropy_watch.store import RunWriter, Store, TailReader, compact, write_catalog


def scalar_batch(n: int, step0: int) -> pa.Table:
    """``n`` scalar rows: 16 metric names per step, steps from ``step0``."""
    steps = step0 + np.arange(n, dtype=np.int64) // 16
    names = pa.array([f"metric/{i % 16}" for i in range(n)], type=pa.string())
    return pa.table(
        {"step": steps, "name": names, "value": np.random.default_rng(0).random(n), "wall_time": steps * 1.0}
    )


def median_ms(fn: Callable[[], object], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def bench_writer(root: Path, batch: int, batches: int) -> tuple[float, float, float]:
    tables = [scalar_batch(batch, i * batch) for i in range(batches)]
    w = RunWriter(root, "bench-writer")
    w.write("scalars", tables[0])  # warm-up: first-call initialisation in pyarrow
    t = time.perf_counter()
    for tbl in tables:
        w.write("scalars", tbl)
    writer_rate = batch * batches / (time.perf_counter() - t)
    wf = RunWriter(root, "bench-writer-fsync", fsync=True)
    t = time.perf_counter()
    for tbl in tables:
        wf.write("scalars", tbl)
    fsync_rate = batch * batches / (time.perf_counter() - t)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (step BIGINT, name VARCHAR, value DOUBLE, wall_time DOUBLE)")
    t = time.perf_counter()
    for tbl in tables:  # noqa: B007 - DuckDB's replacement scan reads the local variable `tbl` by name
        con.execute("INSERT INTO t SELECT * FROM tbl")
    duck_rate = batch * batches / (time.perf_counter() - t)
    return writer_rate, fsync_rate, duck_rate


def bench_reads(root: Path, n_files: int, rows_per_file: int) -> list[tuple[str, float]]:
    run = "bench-read"
    w = RunWriter(root, run)
    for i in range(n_files):
        w.write("scalars", scalar_batch(rows_per_file, i * rows_per_file // 16))
    out: list[tuple[str, float]] = []
    tail = TailReader(root, tables=("scalars",), runs=[run])
    t = time.perf_counter()
    tail.poll()
    out.append((f"TailReader first poll ({n_files} files)", (time.perf_counter() - t) * 1e3))
    polls = []
    for k in range(7):
        for j in range(5):
            w.write("scalars", scalar_batch(rows_per_file, 10**6 + (k * 5 + j) * rows_per_file))
        t = time.perf_counter()
        tail.poll()
        polls.append((time.perf_counter() - t) * 1e3)
    out.append((f"TailReader poll of 5 new files (holding {tail.files_seen - 5})", statistics.median(polls)))
    out.append(
        (
            "TailReader query: per-step mean of one metric",
            median_ms(
                lambda: tail.query(
                    "SELECT step, avg(value) FROM scalars WHERE name = $n GROUP BY step ORDER BY step",
                    {"n": "metric/3"},
                )
            ),
        )
    )

    store = Store(root)
    catalog = write_catalog(root)
    cat = duckdb.connect(str(catalog), read_only=True)

    def one_shot(label: str) -> None:
        out.append((f"{label}: Store.series (one metric)", median_ms(lambda: store.series(run, "metric/3"))))
        out.append(
            (
                f"{label}: Store.scalars(since_step=last 50)",
                median_ms(lambda: store.scalars(run, since_step=10**6 + 30 * rows_per_file // 16)),
            )
        )
        out.append((f"{label}: Store.sql count(*)", median_ms(lambda: store.sql("SELECT count(*) FROM scalars"))))
        out.append(
            (
                f"{label}: catalog view count(*) (row-level de-dup)",
                median_ms(lambda: cat.sql("SELECT count(*) FROM scalars WHERE run = 'bench-read'").fetchall()),
            )
        )

    files = len(list((root / f"run={run}" / "table=scalars" / "rank=0").glob("*.parquet")))
    one_shot(f"before compaction ({files} files)")
    t = time.perf_counter()
    compact(root, run, final=True)
    out.append(("compact(final=True)", (time.perf_counter() - t) * 1e3))
    one_shot("after compaction (1 file)")
    cat.close()
    return out


def bench_whole_reads(root: Path, n_steps: int, n_bins: int = 50, n_names: int = 20) -> list[tuple[str, float]]:
    """What ``show``/``alerts``/``report`` read of a long run, against reading the same rows (``Store.table``): the
    full-resolution histogram summed over two ranks, and every scalar series at once (interleaved medians)."""
    run = "bench-whole"
    rng = np.random.default_rng(0)
    names = [f"m/{i}" for i in range(n_names)]
    for rank in (0, 1):
        w = RunWriter(root, run, rank=rank)
        for k in range(4):
            st = np.repeat(np.arange(k * n_steps // 4, (k + 1) * n_steps // 4), n_bins)
            bins = np.tile(np.arange(n_bins, dtype=np.int32), st.size // n_bins)
            w.write("hist", {"step": st, "bin": bins, "count": rng.integers(0, 500, st.size)})
            if rank == 0:
                sc = np.repeat(np.arange(k * n_steps // 4, (k + 1) * n_steps // 4), n_names)
                w.write("scalars", {"step": sc, "name": names * (sc.size // n_names), "value": rng.random(sc.size),
                                    "wall_time": sc + 0.0})  # fmt: skip
        w.close()
    store = Store(root)
    hist_ms, hist_rows_ms = (
        median_ms(lambda: store.hist_matrix(run, n_bins)),
        median_ms(lambda: store.table(run, "hist")),
    )
    many_ms = median_ms(lambda: store.series_many(run, names))
    rows_ms = median_ms(lambda: store.table(run, "scalars"))
    return [
        (f"Store.hist_matrix, {n_steps:,} steps x {n_bins} bins x 2 ranks", hist_ms),
        ("  ratio to reading its rows (Store.table hist)", hist_ms / hist_rows_ms),
        (f"Store.series_many, {n_names} names x {n_steps:,} steps", many_ms),
        ("  ratio to reading its rows (Store.table scalars)", many_ms / rows_ms),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="segments before compaction")
    parser.add_argument("--rows-per-file", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--whole-steps", type=int, default=100_000, help="steps of the long run read whole")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        writer_rate, fsync_rate, duck_rate = bench_writer(Path(tmp) / "w", args.batch, args.batches)
        reads = bench_reads(Path(tmp) / "r", args.files, args.rows_per_file)  # a store holding only this run
        reads += bench_whole_reads(Path(tmp) / "h", args.whole_steps)
    print(f"{'measurement':<66} {'value':>14}")
    print("-" * 81)
    print(f"{f'RunWriter.write, {args.batch}-row scalar batches':<66} {writer_rate:>10,.0f} rows/s")
    print(f"{'RunWriter.write with fsync=True':<66} {fsync_rate:>10,.0f} rows/s")
    print(f"{'DuckDB in-memory INSERT ... SELECT from Arrow (reference)':<66} {duck_rate:>10,.0f} rows/s")
    print(f"{'ratio writer / DuckDB Arrow insert':<66} {writer_rate / duck_rate:>14.2f}")
    for label, ms in reads:
        print(f"{label:<66} {ms:>13.2f}x" if "ratio" in label else f"{label:<66} {ms:>11.1f} ms")


if __name__ == "__main__":
    main()
