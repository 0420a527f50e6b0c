"""Spark (pyspark, local mode) reads a store with nothing but ``spark.read.parquet(ROOT)``, and sees what DuckDB sees.

The store holds a run written by ``Watch`` (scalars, histograms, sampled tokens, an event), a two-rank run written by
``RunWriter`` and compacted into parts, an imported log, and the catalog (``_catalog.duckdb`` plus its placeholder
files). Spark's partition discovery must find ``run``, ``table`` and ``rank`` (it refuses a root where a non-data file
such as ``run.json`` sits beside the partition folders), and without ``mergeSchema`` it must still see every table's
columns (from the root's ``_common_metadata``). Row counts per (run, table, rank) and every value are compared with
DuckDB's view of the same store (:meth:`Store.sql`).

Needs pyspark (``pip install -e '.[spark]'``) and Java 17+ (OS packages); skipped with the reason otherwise.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.importers import import_log
from entropy_watch.store import RunWriter, Store, compact, write_catalog
from entropy_watch.store.layout import TABLES
from entropy_watch.store.schema import TABLE_SCHEMAS

pytestmark = pytest.mark.slow


def _java_ok() -> str | None:
    """Why Spark cannot start here, or None."""
    if shutil.which("java") is None:
        return "java is not installed (Spark needs Java 17+: apt-get install openjdk-17-jre-headless)"
    out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    return None if out.returncode == 0 else f"`java -version` failed: {out.stderr.strip()[:200]}"


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    pyspark_sql = pytest.importorskip("pyspark.sql", reason="pyspark is not installed (pip install -e '.[spark]')")
    reason = _java_ok()
    if reason:
        pytest.skip(reason)
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("entropy_watch-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _store(root: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from entropy_watch.hooks import Watch

    gen = torch.Generator().manual_seed(0)
    with Watch("watched", store=root, vocab_size=64, config={"lr": 1e-6}, sample_tokens=4, token_every=2) as w:
        for step in range(12):
            logits = torch.randn(2, 6, 64, generator=gen) * (1 + step / 4)
            w.log_tokens(step, logits=logits, mask=torch.ones(2, 6, dtype=torch.bool))
            w.log(step, **{"reward/mean": step / 12})
        w.event(5, "lr_change", lr=5e-7)
    for rank in range(2):
        writer = RunWriter(root, "ranked", rank=rank)
        for seg in range(3):
            steps = np.arange(seg * 10, seg * 10 + 10)
            writer.write("scalars", {"step": steps, "name": ["m"] * 10, "value": steps * 0.5 + rank})
        writer.write("alerts", {"step": [7], "detector": ["d"], "severity": ["warning"], "message": ["x"]})
        writer.close()
    compact(root, "ranked", min_age_s=0, final=True)
    log = tmp_path / "old.csv"
    rows = "".join(f"{s},{1 / (1 + s)},{math.nan if s == 3 else s}\n" for s in range(40))
    log.write_text("step,entropy,reward\n" + rows)
    import_log(root, log, run="imported")
    write_catalog(root)


def _rows(records: list[tuple]) -> list[tuple]:
    """Sorted, with NaN made comparable (NaN != NaN); values are compared exactly."""
    norm = [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in records]
    return sorted(norm, key=lambda r: tuple((v is None, str(v)) for v in r))


def test_spark_reads_the_store_like_duckdb(spark: object, tmp_path: Path) -> None:
    root = tmp_path / "ew_runs"
    _store(root, tmp_path)
    df = spark.read.parquet(str(root))  # nothing else: no mergeSchema, no basePath, no file filter
    columns = set(df.columns)
    assert {"run", "table", "rank"} <= columns
    assert {f.name for schema in TABLE_SCHEMAS.values() for f in schema} <= columns

    grouped = df.groupBy("run", "table", "rank").count().collect()
    counts = {(r["run"], r["table"], r["rank"]): r["count"] for r in grouped}
    store = Store(root)
    duck = store.sql("SELECT run, 'scalars' AS t, rank, count(*) AS n FROM scalars GROUP BY ALL").to_pylist()
    for table in TABLES[1:]:
        duck += store.sql(f"SELECT run, '{table}' AS t, rank, count(*) AS n FROM {table} GROUP BY ALL").to_pylist()
    assert counts == {(r["run"], r["t"], r["rank"]): r["n"] for r in duck}
    assert {run for run, _, _ in counts} == {"watched", "ranked", "imported"}
    assert counts[("watched", "tokens", 0)] > 0 and counts[("ranked", "scalars", 1)] == 30

    for table in TABLES:
        cols = ["run", "rank", *TABLE_SCHEMAS[table].names]
        got = [tuple(r) for r in df.where(df["table"] == table).select(*cols).collect()]
        quoted = ", ".join(f'"{c}"' for c in cols)
        want = [tuple(r.values()) for r in store.sql(f"SELECT {quoted} FROM {table}").to_pylist()]
        assert len(got) == counts_of(counts, table) and _rows(got) == _rows(want), table


def counts_of(counts: dict[tuple[str, str, int], int], table: str) -> int:
    return sum(n for (_, t, _), n in counts.items() if t == table)
