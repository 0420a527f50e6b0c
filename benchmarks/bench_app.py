"""App benchmark: first paint of a run's page in real Chromium, cold and warm, at 1k, 10k and 100k steps, against the
floor of this stack — the same entropy series drawn by a minimal Streamlit page with one ``st.line_chart``.

    .venv/bin/python benchmarks/bench_app.py                       # 1k, 10k, 100k steps (a few minutes)
    .venv/bin/python benchmarks/bench_app.py --steps 1000 10000    # a subset
    .venv/bin/python benchmarks/bench_app.py --queries             # also the server-side reads behind the page
    .venv/bin/python benchmarks/bench_app.py --runs-page STORE     # the Runs page of a team's store, and memory

For each size it writes a collapse-shaped run (entropy, quantiles, reward, clip, advantage and covariance scalars
and a 65-bin token-entropy histogram per step, in 1000-step segments as a live trainer writes them) and measures,
with ``streamlit run`` and Debian's chromium (``/usr/bin/chromium``, never a download):

* **cold**: a freshly started server (``/_stcore/health`` answers) and its very first visit, ``/run?run=long``, from
  a fresh browser profile (nothing cached);
* **warm**: the same page again in a new tab of the same browser, on the same server (a user reopening it), ``--warm``
  times (default 3): the median is printed, with the fastest and slowest visit (this VM's run-to-run spread is
  ±0.5 s, more than the differences worth measuring);
* for each: *first chart* — navigation until the entropy chart is drawn by Plotly (``_fullData``), the first thing
  the page sends — and *page* — until every chart shown on load is drawn (entropy, histogram, quantile fan);
* the floor: the same for a one-``st.line_chart`` page of the same entropy series (drawn when Vega's line path is in
  its SVG, or its canvas has pixels for larger data);
* the Plotly floor: a page with one ``st.plotly_chart`` of the same series in ≤ 2,000 bucket means (what our reader
  sends the entropy chart), drawn when Plotly has ``_fullData`` — what any Plotly chart costs on this stack.

Prints seconds and ratios (ours / floor) measured in one run; no thresholds (the issue's goal: warm ≤ 3 s at 100k
steps). Run it on an idle machine with ``nice`` off: absolute seconds depend on the machine, ratios much less.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.histogram import entropy_bin_edges
from entropy_watch.store import RunWriter, TailReader
from entropy_watch.store.reads import ALL_STEPS
from entropy_watch.synthetic import VOCAB_SIZE, generate

APP_MAIN = Path(__file__).resolve().parents[1] / "app" / "main.py"
CHROMIUM = "/usr/bin/chromium"
RUN = "long"
TIMEOUT_MS = 300_000
FLOOR_PAGE = '''"""The floor: one st.line_chart of the entropy series (what a user would write in five lines)."""
import sys

import numpy as np
import pandas as pd
import streamlit as st

data = np.load(sys.argv[1])
st.line_chart(pd.DataFrame({"step": data["steps"], "entropy": data["entropy"]}), x="step", y="entropy")
'''
PLOTLY_FLOOR_PAGE = '''"""The Plotly floor: one st.plotly_chart of the series in <= 2,000 bucket means."""
import sys

import numpy as np
import plotly.graph_objects as go
import streamlit as st

data = np.load(sys.argv[1])
steps, h = data["steps"].astype(float), data["entropy"]
b = np.arange(h.size) * min(2000, h.size) // h.size
k = np.bincount(b)
st.plotly_chart(go.Figure(go.Scatter(x=np.bincount(b, steps) / k, y=np.bincount(b, h) / k, mode="lines")))
'''


def write_long_run(root: Path, n_steps: int, segment: int = 1000) -> np.ndarray:
    """A collapse-shaped run with the scalars and histogram the Run page draws (vectorised; seconds for 100k).
    Returns the entropy series (n_steps,)."""
    rng = np.random.default_rng(0)
    sr = generate("fast_collapse", seed=0, n_steps=n_steps)
    edges = entropy_bin_edges(VOCAB_SIZE)
    w = RunWriter(root, RUN)
    w.update_run_meta(framework="bench_app", hist_edges=edges.tolist(), vocab_size=VOCAB_SIZE, planned_steps=n_steps)
    h = sr.entropy
    series = {
        M.ENTROPY_MEAN: h,
        M.ENTROPY_P10: h * 0.05,
        M.ENTROPY_P50: h * 0.4,
        M.ENTROPY_P90: h * 2.5,
        M.ENTROPY_P99: h * 6.0,
        M.REWARD_MEAN: sr.reward,
        M.CLIP_LOW_FRAC: np.abs(rng.normal(0.015, 0.005, n_steps)),
        M.CLIP_HIGH_FRAC: np.abs(rng.normal(0.02, 0.005, n_steps)),
        M.ADV_MEAN: rng.normal(0, 0.01, n_steps),
        M.ADV_STD: np.abs(rng.normal(0.9, 0.05, n_steps)),
        M.COV_PG_DRIVE: -np.diff(h, prepend=h[0]) + rng.normal(0, 1e-3, n_steps),
        M.COV_PRED_DH: np.diff(h, prepend=h[0]) + rng.normal(0, 1e-3, n_steps),
    }
    centre = np.clip(np.searchsorted(edges, np.maximum(h, 1e-4)), 2, len(edges) - 10)
    offs = np.arange(-8, 9)
    counts = (2000 * np.exp(-0.5 * (offs / 3.0) ** 2)).astype(np.int64)
    for lo in range(0, n_steps, segment):
        steps = sr.steps[lo : lo + segment]
        k = steps.size
        cols = {
            "step": np.tile(steps, len(series)),
            "name": np.repeat(list(series), k),
            "value": np.concatenate([v[lo : lo + k] for v in series.values()]),
            "wall_time": np.tile(1.7e9 + steps.astype(np.float64), len(series)),
        }
        w.write("scalars", {c: v.tolist() for c, v in cols.items()})
        bins = (centre[lo : lo + k, None] + offs[None, :]).ravel()
        w.write("hist", {"step": np.repeat(steps, offs.size).tolist(), "bin": bins.tolist(),
                         "count": np.tile(counts, k).tolist()})  # fmt: skip
    w.close()
    return np.asarray(h, dtype=np.float64)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_queries(root: Path) -> None:
    """The reads behind the Run page, on a cold tail reader."""
    reader = TailReader(root)
    dt, rows = timed(reader.poll)
    print(f"    first poll (ingest every segment)   {1000 * dt:8.1f} ms  {rows:,} rows")
    names = reader.scalar_names(RUN)
    dt, tr = timed(lambda: reader.downsampled(RUN, names, ALL_STEPS))
    print(f"    every scalar, ≤2k points each       {1000 * dt:8.1f} ms  {max(len(t) for t in tr.values())} points")
    dt, hm = timed(lambda: reader.heatmap(RUN, len(entropy_bin_edges(VOCAB_SIZE)), ALL_STEPS, 500))
    print(f"    histogram, ≤500 step columns        {1000 * dt:8.1f} ms  {hm.counts.shape[0]} columns")
    reader.close()


class Server:
    """``streamlit run SCRIPT -- ARGS`` on a free port, until :meth:`stop`."""

    def __init__(self, script: Path, args: list[str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer", "--", *args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, ENTROPY_WATCH_DIR=""))  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok":
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: {cmd}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


OUR_FIRST = """() => [...document.querySelectorAll('.js-plotly-plot')].some(
    e => e._fullData && e._fullData.length && e.layout.title.text.includes('Token entropy'))"""
OUR_PAGE = """() => { const ok = [...document.querySelectorAll('.js-plotly-plot')]
    .filter(e => e._fullData && e._fullData.length).map(e => e.layout.title.text);
    return ['Token entropy', 'histogram', 'quantiles'].every(t => ok.some(x => x.includes(t))); }"""
PLOTLY_DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')].some(
    e => e._fullData && e._fullData.length)"""
FLOOR_DRAWN = """() => { const root = document.querySelector('[data-testid="stVegaLiteChart"]');
    if (!root) return false;
    const p = root.querySelector('svg.marks .mark-line path');              // small data: SVG
    if (p) return (p.getAttribute('d') || '').length > 10;
    const c = root.querySelector('canvas.marks');                           // large data: canvas
    if (!c || !c.width || !c.height) return false;
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < px.length; i += 4 * 97) if (px[i] > 0) return true;  // something is drawn
    return false; }"""


def paint(context: object, url: str, first: str, page_done: str) -> tuple[float, float]:
    """Seconds from navigation to ``first`` and to ``page_done`` (JS conditions) in a new tab of ``context``."""
    page = context.new_page()  # type: ignore[attr-defined]
    page.set_default_timeout(TIMEOUT_MS)
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_function(first, polling=50)
    t_first = time.perf_counter() - t
    page.wait_for_function(page_done, polling=50)
    t_page = time.perf_counter() - t
    page.close()
    return t_first, t_page


def measure(
    browser: object, script: Path, args: list[str], path: str, first: str, done: str, warm_visits: int = 3
) -> dict[str, float]:
    """Cold (a fresh server and a fresh browser profile: first visit) and warm (the same page again in a new tab of
    the same browser, as a user reopening it; the median of ``warm_visits`` visits, and their range) paint times."""
    server = Server(script, args)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    try:
        cold = paint(context, server.url + path, first, done)
        warm = np.array([paint(context, server.url + path, first, done) for _ in range(max(1, warm_visits))])
    finally:
        context.close()
        server.stop()
    first_w, page_w = warm[:, 0], warm[:, 1]
    return {
        "cold_first": cold[0],
        "cold_page": cold[1],
        "warm_first": float(np.median(first_w)),
        "warm_page": float(np.median(page_w)),
        "warm_min": float(first_w.min()),
        "warm_max": float(first_w.max()),
    }


def server_memory(pid: int) -> str:
    """The resident memory of process ``pid`` now and at its peak (Linux ``/proc``)."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            got[line.split(":")[0]] = int(line.split()[1]) // 1024
    return f"RSS {got.get('VmRSS', 0):,} MB, peak {got.get('VmHWM', 0):,} MB"


def runs_page(browser: object, root: Path, settle_s: float = 30.0) -> None:
    """The Runs page of an existing store (``--runs-page STORE``): cold (a fresh server, its first visit, until the
    caption counts every run and the table is drawn), a second visit, and the server's memory after each and
    ``settle_s`` later (the background monitor's passes). The memory and first paint of a team's store: 60
    uncompacted runs (9,290 files) drew in 11 s with every row held (1.5 GB), 16 s once the reader held only the
    runs drawn, while the sparklines and per-run analyses read every run's files."""
    from entropy_watch.store import Store

    n = len(Store(root).runs())
    done = f"""() => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
        .some(e => e.innerText.includes('{n} of {n} runs'))
        && !!document.querySelector('[data-testid="stDataFrame"] canvas')"""
    server = Server(APP_MAIN, ["--store", str(root)])
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    try:
        cold, _ = paint(context, server.url + "/", done, done)
        print(f"Runs page, {n} runs: cold server {cold:.2f} s; server {server_memory(server.proc.pid)}", flush=True)
        again, _ = paint(context, server.url + "/", done, done)
        print(f"  second visit {again:.2f} s; server {server_memory(server.proc.pid)}", flush=True)
        time.sleep(settle_s)
        print(f"  {settle_s:.0f} s later: server {server_memory(server.proc.pid)}", flush=True)
    finally:
        context.close()
        server.stop()
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-page", type=Path, metavar="STORE", help="only the Runs page of this store, and memory")
    ap.add_argument("--steps", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--queries", action="store_true", help="also time the server-side reads behind the page")
    ap.add_argument("--warm", type=int, default=3, help="warm visits per page (the median is printed)")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is absent (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    if args.runs_page is not None:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
            runs_page(browser, args.runs_page.resolve())
            browser.close()
        return
    tmp = Path(tempfile.mkdtemp(prefix="ew_bench_app_"))
    floor_script = tmp / "floor.py"
    floor_script.write_text(FLOOR_PAGE)
    plotly_script = tmp / "plotly_floor.py"
    plotly_script.write_text(PLOTLY_FLOOR_PAGE)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
            for n in args.steps:
                root = tmp / f"store-{n}"
                dt, h = timed(lambda: write_long_run(root, n))  # noqa: B023
                np.savez(tmp / f"series-{n}.npz", steps=np.arange(n), entropy=h)
                print(f"{n:,} steps: wrote the run in {dt:.1f} s")
                if args.queries:
                    bench_queries(root)
                page = f"/run?run={RUN}"
                ours = measure(browser, APP_MAIN, ["--store", str(root)], page, OUR_FIRST, OUR_PAGE, args.warm)
                npz = [str(tmp / f"series-{n}.npz")]
                floor = measure(browser, floor_script, npz, "/", FLOOR_DRAWN, FLOOR_DRAWN, args.warm)
                plotly = measure(browser, plotly_script, npz, "/", PLOTLY_DRAWN, PLOTLY_DRAWN, args.warm)
                rows.append((n, ours, floor, plotly))
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("first paint in Chromium, seconds (ours / floor = one st.line_chart of the same entropy series; plotly =")
    print("one st.plotly_chart of it in <= 2,000 bucket means, this stack's floor for a Plotly chart); warm: the")
    print(f"median of {args.warm} visits, [fastest, slowest] first chart")
    print(f"{'steps':>8} | {'':5} | {'ours: first chart':>17} | {'ours: page':>10} | {'floor':>6} | "
          f"{'ratio first':>11} | {'ratio page':>10} | {'plotly':>6} | {'ours/plotly':>11} | "
          f"{'ours warm range':>15} | {'floor warm range':>16} | {'plotly warm range':>17}")  # fmt: skip
    for n, ours, floor, plotly in rows:
        for kind in ("cold", "warm"):
            f, pl = floor[f"{kind}_first"], plotly[f"{kind}_first"]
            spread = ""
            if kind == "warm":
                spread = " | ".join(f"[{d['warm_min']:.2f}, {d['warm_max']:.2f}]" for d in (ours, floor, plotly))
            print(f"{n:>8,} | {kind:5} | {ours[f'{kind}_first']:17.2f} | {ours[f'{kind}_page']:10.2f} | {f:6.2f} | "
                  f"{ours[f'{kind}_first'] / f:10.2f}x | {ours[f'{kind}_page'] / f:9.2f}x | {pl:6.2f} | "
                  f"{ours[f'{kind}_first'] / pl:10.2f}x | {spread}")  # fmt: skip


if __name__ == "__main__":
    main()
