"""Reading a run's log, per format: ``load_log`` against what a user would write instead, in the same run.

    .venv/bin/python benchmarks/bench_import.py                  # 100,000 steps x 20 metrics (~1 min on 2 cores)
    .venv/bin/python benchmarks/bench_import.py --steps 20000    # smaller

One run of ``--steps`` steps, 20 metrics each (entropy, reward and 18 others), written in every format the importer
reads from a plain file or folder; each is read ``--repeat`` times and the median printed, with the user's
alternative on the same file: ``pandas.read_csv`` / ``read_json(lines=True)`` / ``read_parquet`` (gzip included),
and for the trackers the SQL a user would run (trackio: its rows with ``json.loads`` into a DataFrame; MLflow:
``pandas.read_sql`` and a pivot; ``mlruns``: one ``read_csv`` per metric file). Ours does more than parse (aliases,
step checks and de-duplication, gap and restart detection, one value per step per metric), so the ratio is the cost of
that; it is a measurement, never a threshold.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from bench_scale import timed  # median seconds of repeated calls (this folder is on sys.path when run as a script)

from entropy_watch.importers import load_log

N_OTHER = 18


def _table(steps: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    cols = {"step": np.arange(steps), "entropy": 1.2 * np.exp(-np.arange(steps) / steps) + rng.normal(0, 0.01, steps)}
    cols["reward"] = np.linspace(0.1, 0.8, steps)
    for i in range(N_OTHER):
        cols[f"metric_{i}"] = rng.normal(size=steps)
    return pd.DataFrame(cols)


def _write(df: pd.DataFrame, root: Path) -> dict[str, tuple[Path, Callable[[Path], object]]]:
    """Each format's file and the user's alternative reader of it."""
    out: dict[str, tuple[Path, Callable[[Path], object]]] = {}
    df.to_csv(p := root / "log.csv", index=False)
    out["csv"] = (p, pd.read_csv)
    with gzip.open(p := root / "log.csv.gz", "wt") as fh:
        df.to_csv(fh, index=False)
    out["csv.gz"] = (p, pd.read_csv)
    df.to_json(p := root / "log.jsonl", orient="records", lines=True)
    out["jsonl"] = (p, lambda q: pd.read_json(q, lines=True))
    df.to_parquet(p := root / "log.parquet")
    out["parquet"] = (p, pd.read_parquet)
    metrics = df.drop(columns="step").to_dict(orient="records")
    con = sqlite3.connect(p := root / "trackio.db")
    con.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id TEXT, timestamp TEXT, run_name TEXT, step INT, "
                "metrics TEXT)")  # fmt: skip
    con.executemany(
        "INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES ('r1', 't', 'run', ?, ?)",
        ((int(s), json.dumps(m).encode()) for s, m in zip(df["step"], metrics, strict=True)),
    )
    con.commit()
    con.close()
    out["trackio"] = (p, _trackio_pandas)
    con = sqlite3.connect(p := root / "mlflow.db")
    con.execute("CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, name TEXT, lifecycle_stage TEXT)")
    con.execute(
        "CREATE TABLE metrics (key TEXT, value FLOAT, timestamp BIGINT, run_uuid TEXT, step BIGINT, is_nan INT)"
    )
    con.execute("INSERT INTO runs VALUES ('u1', 'run', 'active')")
    long = df.melt(id_vars="step", var_name="key")
    con.executemany(
        "INSERT INTO metrics VALUES (?, ?, 0, 'u1', ?, 0)",
        zip(long["key"], long["value"].astype(float), long["step"].astype(int), strict=True),
    )
    con.commit()
    con.close()
    out["mlflow"] = (p, _mlflow_pandas)
    run = root / "mlruns" / "1" / "u1"
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_text("lifecycle_stage: active\nrun_name: run\n")
    for col in df.columns[1:]:
        lines = (f"0 {v!r} {s}\n" for s, v in zip(df["step"], df[col], strict=True))
        (run / "metrics" / col).write_text("".join(lines))
    out["mlruns"] = (root / "mlruns", _mlruns_pandas)
    return out


def _trackio_pandas(p: Path) -> pd.DataFrame:
    con = sqlite3.connect(p)
    rows = con.execute("SELECT step, metrics FROM metrics ORDER BY id").fetchall()
    con.close()
    return pd.DataFrame([{"step": s, **json.loads(m)} for s, m in rows])


def _mlflow_pandas(p: Path) -> pd.DataFrame:
    con = sqlite3.connect(p)
    long = pd.read_sql("SELECT key, value, step FROM metrics", con)
    con.close()
    return long.pivot_table(index="step", columns="key", values="value", aggfunc="last")


def _mlruns_pandas(p: Path) -> pd.DataFrame:
    files = sorted((p / "1" / "u1" / "metrics").iterdir())
    parts = [pd.read_csv(f, sep=" ", names=["ts", f.name, "step"], usecols=[1, 2]).set_index("step") for f in files]
    return pd.concat(parts, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    df = _table(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        files = _write(df, Path(tmp))
        print(f"{args.steps:,} steps x {df.shape[1] - 1} metrics; median of {args.repeat} reads each")
        print(f"{'format':<10}{'ours s':>9}{'pandas s':>10}{'ours/pandas':>13}{'ours M values/s':>17}")
        for name, (path, theirs) in files.items():
            (run,) = load_log(path)
            assert len(run.series("entropy/mean")[0]) == args.steps, name
            ours = timed(lambda path=path: load_log(path), args.repeat)
            alt = timed(lambda path=path, theirs=theirs: theirs(path), args.repeat)
            rate = args.steps * (df.shape[1] - 1) / ours / 1e6
            print(f"{name:<10}{ours:>9.3f}{alt:>10.3f}{ours / alt:>12.2f}x{rate:>17.2f}")


if __name__ == "__main__":
    main()
