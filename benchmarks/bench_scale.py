"""How cost grows (issue 15 §3): every surface of the store measured at growing sizes, with growth exponents.

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py            # full sizes (~15-30 min on 2 cores)
    nice -n 10 .venv/bin/python benchmarks/bench_scale.py --quick    # smaller top sizes (a few minutes)
    .venv/bin/python benchmarks/bench_scale.py --only ls tail        # some surfaces

Surfaces, each at its sizes (the exponent is the slope of log time over log size: 1 = linear, 2 = quadratic, ~0 =
independent of size), and what each is compared with (ratios measured in this run, never thresholds):

* **writer**: rows/s of ``RunWriter.write`` against the floor, a bare ``pq.write_table`` + ``os.replace`` of the
  same Arrow table;
* **ls**: ``entropy-watch ls --json`` (a real process, start-up included) and ``Store.runs()`` in-process over 10,
  100, 1,000 and 10,000 compacted runs (9 in 10 written by a trainer, 1 in 10 imported); target ≤ 2 s at 10,000;
* **show / alerts**: ``entropy-watch show RUN --json`` and ``entropy-watch alerts RUN`` on one run of 1k, 10k, 100k
  and 1M steps (6 scalars and an 8-bin histogram per step, in 1,000-step segments as written), with 100 other runs
  in the store; target: no worse than linear in the steps;
* **tail**: ``TailReader.poll()`` ingesting one new segment when 100 or 10,000 files were already read (one rank
  folder, as an uncompacted long run leaves it), and an idle poll; target: independent of the files already read;
* **compaction**: ``compact(final=True)`` of a run of 300, 1,000 and 3,000 segments per table (target: linear; a
  folder's files were compared pairwise, quadratic, until session 47), and the next cold read (``Store.series`` in a
  fresh reader) before and after it;
* **app**: first paint of the Runs page in Chromium (cold server, first visit) at 10, 100 and 1,000 runs, with
  ``benchmarks/bench_app.py``'s server and browser driver.

Absolute seconds depend on the machine (2 loaded cores here); read the exponents and ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter, Store, TailReader, compact, write_catalog
from entropy_watch.store.layout import run_dir
from entropy_watch.store.manifest import MANIFEST, SETTLE_S

BENCH = Path(__file__).resolve().parent
NAMES = [M.ENTROPY_MEAN, M.REWARD_MEAN, M.CLIP_HIGH_FRAC, M.CLIP_LOW_FRAC, M.ADV_STD, M.COV_PG_DRIVE]
Row = tuple[int, float]  # (size, seconds)


# -- helpers ----------------------------------------------------------------------------------------------------------
def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """Median seconds of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def cli(root: Path, *args: str) -> float:
    """Wall seconds of ``entropy-watch --store ROOT ARGS`` as a real process (exit 0-2 accepted: alerts' levels)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "entropy_watch", "--store", str(root), *args], capture_output=True)
    secs = time.perf_counter() - t
    if proc.returncode not in (0, 1, 2):
        raise RuntimeError(f"entropy-watch {' '.join(args)} failed: {proc.stderr.decode()[-400:]}")
    return secs


def exponent(rows: list[Row]) -> float:
    """Least-squares slope of log(seconds) over log(size)."""
    x = np.log([s for s, _ in rows])
    y = np.log([max(t, 1e-6) for _, t in rows])
    return float(np.polyfit(x, y, 1)[0]) if len(rows) > 1 else float("nan")


def table(title: str, unit: str, rows: list[Row], note: str = "") -> float:
    """Print ``rows`` with the step-to-step exponents; returns the overall exponent."""
    print(f"\n{title}" + (f"  ({note})" if note else ""))
    print(f"{unit:>12} {'seconds':>9} {'exponent':>9}")
    for i, (size, secs) in enumerate(rows):
        step = f"{exponent(rows[i - 1 : i + 1]):.2f}" if i else ""
        print(f"{size:>12,} {secs:>9.3f} {step:>9}")
    e = exponent(rows)
    print(f"{'overall':>12} {'':>9} {e:>9.2f}")
    return e


def scalars_block(steps: np.ndarray, names: list[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Columns of ``len(names)`` scalars per step (entropy decays slowly; the rest is noise)."""
    k = steps.size
    values = rng.normal(0.5, 0.05, (len(names), k))
    values[0] = 1.5 * np.exp(-steps / max(4.0 * (steps[-1] + 1), 1.0)) + rng.normal(0, 0.01, k)
    return {
        "step": np.tile(steps, len(names)),
        "name": np.repeat(np.asarray(names, dtype=object), k),
        "value": values.ravel(),
        "wall_time": np.tile(1.7e9 + steps.astype(np.float64), len(names)),
    }


def write_run(root: Path, run: str, n_steps: int, segment: int = 1000, hist_bins: int = 8) -> None:
    """A run as a trainer leaves it: ``NAMES`` per step and a ``hist_bins``-bin histogram, in ``segment``-step
    segments, closed (its heartbeat carries the summary ``ls`` reads)."""
    rng = np.random.default_rng(0)
    w = RunWriter(root, run)
    w.update_run_meta(framework="bench_scale", hist_edges=list(np.linspace(0, 8, hist_bins + 1)[1:]))
    for lo in range(0, n_steps, segment):
        steps = np.arange(lo, min(n_steps, lo + segment), dtype=np.int64)
        w.write("scalars", pa.table(scalars_block(steps, NAMES, rng)))
        hist = {"step": np.repeat(steps, hist_bins), "bin": np.tile(np.arange(hist_bins, dtype=np.int32), steps.size),
                "count": rng.integers(1, 1000, steps.size * hist_bins)}  # fmt: skip
        w.write("hist", pa.table(hist))
    w.close()


def imported_run(root: Path, run: str, n_steps: int) -> None:
    """A run as ``entropy-watch import`` leaves it (no heartbeat; the summary in run.json)."""
    from entropy_watch.importers.base import ImportedRun
    from entropy_watch.importers.store_import import publish_runs

    steps = np.arange(n_steps, dtype=np.int64)
    scalars = {M.ENTROPY_MEAN: (steps, 1.5 * np.exp(-steps / n_steps)), M.REWARD_MEAN: (steps, steps / n_steps)}
    publish_runs(root, [ImportedRun(run, "bench.csv", "csv", {}, scalars, {}, [])])


def clone_runs(root: Path, template: str, names: list[str]) -> None:
    """Copies of ``template``'s folder under new run names (the data need not differ for listing costs)."""
    src = run_dir(root, template)
    for name in names:
        shutil.copytree(src, run_dir(root, name))


def build_runs_store(root: Path, n: int, have: int) -> None:
    """Grow ``root`` to ``n`` compacted runs (9 in 10 trained, 1 in 10 imported); the first ``have`` exist."""
    if have == 0:
        write_run(root, "trained-template", 200, segment=25)
        imported_run(root, "imported-template", 200)
        compact(root, min_age_s=0, final=True)
        have = 2
    names = [f"run-{i:05d}" for i in range(have - 2, n - 2)]
    clone_runs(root, "trained-template", [x for i, x in enumerate(names) if (i + have) % 10])
    clone_runs(root, "imported-template", [x for i, x in enumerate(names) if (i + have) % 10 == 0])


def bare_writes(directory: Path, tbl: pa.Table, n: int) -> None:
    """The floor of publishing: ``n`` times ``pq.write_table`` to a temporary and ``os.replace``."""
    for i in range(n):
        pq.write_table(tbl, directory / f".{i}.tmp")
        os.replace(directory / f".{i}.tmp", directory / f"{i}.parquet")


# -- surfaces ---------------------------------------------------------------------------------------------------------
def bench_writer(tmp: Path) -> dict[str, float]:
    print("\nwriter: rows/s publishing one segment per batch (RunWriter vs bare pq.write_table + os.replace)")
    print(f"{'rows/batch':>12} {'RunWriter':>12} {'bare':>12} {'ratio':>7}")
    rng = np.random.default_rng(0)
    out = {}
    for rows in (1_000, 10_000, 100_000):
        steps = np.arange(rows // len(NAMES), dtype=np.int64)
        tbl = pa.table(scalars_block(steps, NAMES, rng))
        n = max(3, 200_000 // rows)
        w = RunWriter(tmp / f"writer-{rows}", "w")
        ours = timed(lambda: [w.write("scalars", tbl) for _ in range(n)]) / n  # noqa: B023
        bare_dir = tmp / f"bare-{rows}"
        bare_dir.mkdir()
        floor = timed(lambda: bare_writes(bare_dir, tbl, n)) / n  # noqa: B023
        out[f"writer rows/s at {rows:,}"] = tbl.num_rows / ours
        print(f"{tbl.num_rows:>12,} {tbl.num_rows / ours:>12,.0f} {tbl.num_rows / floor:>12,.0f} {floor / ours:>6.2f}x")
    return out


def bench_ls(tmp: Path, sizes: list[int]) -> tuple[list[Row], list[Row], list[Row]]:
    """``ls`` before and after the manifest that compaction's catalog refresh writes (``_runs.parquet``)."""
    root = tmp / "ls"
    cli_rows, api_rows, scan_rows, have = [], [], [], 0
    for n in sizes:
        t = time.perf_counter()
        build_runs_store(root, n, have)
        have = n
        built = time.perf_counter() - t
        (root / MANIFEST).unlink(missing_ok=True)
        scan = timed(lambda: Store(root).runs(), repeat=3)  # noqa: B023
        time.sleep(SETTLE_S)  # the copies are fresh; a real store's finished runs are older than this
        refresh = timed(lambda: write_catalog(root))  # noqa: B023 - what `entropy-watch compact` ends with
        api = timed(lambda: Store(root).runs(), repeat=3)  # noqa: B023
        proc = min(cli(root, "ls", "--json") for _ in range(2))
        scan_rows.append((n, scan))
        api_rows.append((n, api))
        cli_rows.append((n, proc))
        print(
            f"  ls: {n:,} runs (built in {built:.0f} s): Store.runs() {scan:.3f} s without the manifest, "
            f"{api:.3f} s with it (catalog + manifest refresh {refresh:.1f} s); entropy-watch ls {proc:.3f} s"
        )
    return cli_rows, api_rows, scan_rows


def bench_show_alerts(tmp: Path, sizes: list[int], others: int) -> tuple[list[Row], list[Row]]:
    show_rows, alert_rows = [], []
    for n in sizes:
        root = tmp / f"show-{n}"
        build_runs_store(root, others, 0)
        t = time.perf_counter()
        write_run(root, "long", n)
        built = time.perf_counter() - t
        show = min(cli(root, "show", "long", "--json") for _ in range(2))
        alert = min(cli(root, "alerts", "long") for _ in range(2))
        show_rows.append((n, show))
        alert_rows.append((n, alert))
        print(f"  {n:,} steps (written in {built:.0f} s): show {show:.2f} s, alerts {alert:.2f} s")
        shutil.rmtree(root)
    return show_rows, alert_rows


def bench_tail(tmp: Path, sizes: list[int]) -> tuple[list[Row], list[Row]]:
    new_rows, idle_rows = [], []
    rng = np.random.default_rng(0)
    for n in sizes:
        root = tmp / f"tail-{n}"
        w = RunWriter(root, "live")
        small = pa.table(scalars_block(np.arange(2, dtype=np.int64), NAMES, rng))
        for _ in range(n):
            w.write("scalars", small)
        tail = TailReader(root, tables=("scalars",))
        tail.poll()

        polls = []
        for _ in range(15):
            w.write("scalars", small)
            polls.append(timed(tail.poll))
        new = statistics.median(polls)
        time.sleep(0.2)  # an app polls every 1-5 s: the folder is settled by then
        idle = timed(tail.poll, repeat=15)
        new_rows.append((n, new))
        idle_rows.append((n, idle))
        print(f"  tail: {n:,} files read: poll with one new segment {1000 * new:.2f} ms, idle {1000 * idle:.2f} ms")
        tail.close()
        shutil.rmtree(root)
    return new_rows, idle_rows


def bench_compaction(tmp: Path, sizes: list[int]) -> tuple[list[Row], dict[str, float]]:
    """``compact(final=True)`` of a run of ``n`` segments per table (scalars and hist, 100 steps each) at each size,
    and the next cold read before and after it at the largest."""
    rows: list[Row] = []
    extra: dict[str, float] = {}
    for n_segments in sizes:
        root = tmp / f"compaction-{n_segments}"
        write_run(root, "long", n_segments * 100, segment=100)

        def cold() -> None:
            s = Store(root)  # noqa: B023
            s.series("long", M.ENTROPY_MEAN)

        before = timed(cold, repeat=3)
        took = timed(lambda: compact(root, "long", min_age_s=0, final=True))  # noqa: B023
        after = timed(cold, repeat=3)
        rows.append((n_segments, took))
        print(f"  compaction of {n_segments:,} segments per table: {took:.2f} s; next cold read (Store.series) "
              f"{before:.3f} s before, {after:.3f} s after ({before / after:.1f}x faster)")  # fmt: skip
        extra = {"cold read before s": before, "cold read after s": after}
        shutil.rmtree(root)
    return rows, extra


def bench_app(tmp: Path, sizes: list[int]) -> list[Row]:
    """First paint of the Runs page (cold server) with bench_app.py's server and Chromium driver."""
    spec = importlib.util.spec_from_file_location("bench_app", BENCH / "bench_app.py")
    assert spec and spec.loader
    ba = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ba)
    if not Path(ba.CHROMIUM).exists():
        print(f"\napp: skipped ({ba.CHROMIUM} is absent)")
        return []
    from playwright.sync_api import sync_playwright

    rows, have, root = [], 0, tmp / "app"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ba.CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        for n in sizes:
            build_runs_store(root, n, have)
            have = n
            done = f"""() => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
                .some(e => e.innerText.includes('{n} of {n} runs'))
                && !!document.querySelector('[data-testid="stDataFrame"] canvas')"""
            server = ba.Server(ba.APP_MAIN, ["--store", str(root)])
            try:
                first, _ = ba.paint(browser, server.url + "/", done, done)
            finally:
                server.stop()
            rows.append((n, first))
            print(f"  app: Runs page at {n:,} runs painted in {first:.2f} s (cold server)")
        browser.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller top sizes")
    ap.add_argument("--only", nargs="+", choices=["writer", "ls", "show", "tail", "compaction", "app"])
    args = ap.parse_args()
    only = set(args.only or ["writer", "ls", "show", "tail", "compaction", "app"])
    q = args.quick
    tmp = Path(tempfile.mkdtemp(prefix="ew_bench_scale_"))
    summary: list[tuple[str, str, float, str]] = []
    extra: dict[str, float] = {}
    try:
        if "writer" in only:
            extra.update(bench_writer(tmp))
        if only & {"ls", "show"}:
            floor = min(timed(lambda: subprocess.run([sys.executable, "-m", "entropy_watch", "--help"],
                                                     capture_output=True, check=True)) for _ in range(3))  # fmt: skip
            extra["CLI start-up floor s (entropy-watch --help)"] = floor
            print(f"\nCLI start-up floor (entropy-watch --help, a process): {floor:.2f} s")
        if "ls" in only:
            cli_rows, api_rows, scan_rows = bench_ls(tmp, [10, 100, 1_000] if q else [10, 100, 1_000, 10_000])
            e = table("entropy-watch ls --json (process, after compaction)", "runs", cli_rows)
            summary.append(("ls (CLI)", f"{cli_rows[-1][1]:.2f} s at {cli_rows[-1][0]:,} runs", e, "<= 2 s at 10,000"))
            e = table("Store.runs() (in-process, after compaction)", "runs", api_rows)
            summary.append(("Store.runs()", f"{api_rows[-1][1]:.2f} s at {api_rows[-1][0]:,} runs", e, "linear"))
            e = table("Store.runs() (in-process, no manifest)", "runs", scan_rows)
            summary.append(("Store.runs() no manif.", f"{scan_rows[-1][1]:.2f} s at {scan_rows[-1][0]:,}", e, "linear"))
        if "show" in only:
            sizes = [1_000, 10_000, 100_000] if q else [1_000, 10_000, 100_000, 1_000_000]
            show_rows, alert_rows = bench_show_alerts(tmp, sizes, others=100)
            for name, rows in (("show", show_rows), ("alerts", alert_rows)):
                e = table(f"entropy-watch {name} RUN (process; 100 other runs in the store)", "steps", rows)
                summary.append((name, f"{rows[-1][1]:.2f} s at {rows[-1][0]:,} steps", e, "<= 1 (linear)"))
        if "tail" in only:
            new_rows, idle_rows = bench_tail(tmp, [100, 1_000, 10_000] if not q else [100, 1_000, 3_000])
            e = table("TailReader.poll() with one new segment", "files read", new_rows)
            ratio = new_rows[-1][1] / new_rows[0][1]
            summary.append(("tail poll (1 new)", f"{ratio:.2f}x from {new_rows[0][0]:,} to {new_rows[-1][0]:,}", e,
                            "~0 (independent)"))  # fmt: skip
            e = table("TailReader.poll() with nothing new", "files read", idle_rows)
            summary.append(("tail poll (idle)", f"{1000 * idle_rows[-1][1]:.1f} ms at {idle_rows[-1][0]:,}", e, "~0"))
        if "compaction" in only:
            rows, cold_reads = bench_compaction(tmp, [100, 300, 1_000] if q else [300, 1_000, 3_000])
            e = table("compact(final=True) of one run (scalars + hist)", "segments", rows)
            summary.append(("compaction", f"{rows[-1][1]:.2f} s at {rows[-1][0]:,} segments", e, "<= 1 (linear)"))
            extra.update(cold_reads)
        if "app" in only:
            rows = bench_app(tmp, [10, 100] if q else [10, 100, 1_000])
            if rows:
                e = table("app: Runs page first paint (Chromium, cold server)", "runs", rows)
                summary.append(("app Runs page", f"{rows[-1][1]:.2f} s at {rows[-1][0]:,} runs", e, "linear"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nsummary (exponent: slope of log time over log size; 1 = linear, 0 = independent of size)")
    print(f"{'surface':<20} {'largest size':<32} {'exponent':>8}  target")
    for name, size, e, target in summary:
        print(f"{name:<20} {size:<32} {e:>8.2f}  {target}")
    for k, v in extra.items():
        print(f"{k:<40} {v:>14,.3f}")
    print(json.dumps({"summary": summary, "extra": extra}))


if __name__ == "__main__":
    main()
