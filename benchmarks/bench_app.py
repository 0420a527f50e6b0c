"""App benchmark: first paint of a long run's page, server-side downsampling, payload sizes.

    .venv/bin/python benchmarks/bench_app.py                  # 100k steps; AppTest + query breakdown
    .venv/bin/python benchmarks/bench_app.py --steps 20000 --browser   # also time a real chromium first paint

Writes a synthetic run of ``--steps`` steps (entropy, quantiles, reward, clip, advantage and covariance scalars and
a 65-bin token-entropy histogram per step, in 1000-step segments as a live trainer would) and measures:

* the cold tail-reader load (first ``poll``) and each query the Run page makes, with the points they return;
* the Plotly JSON the page sends (bytes per chart);
* the Run page's first full script run in AppTest (cold caches; includes the analysis wait budget);
* with ``--browser``: ``streamlit run`` + Debian chromium, navigation until every chart shown on load has rendered
  (``_fullData``: entropy and the first tab), then each other tab from its click until its charts are drawn.

Prints numbers only; no thresholds (goal: first paint of a 100k-step run ≤ 3 s).
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
from pathlib import Path

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.histogram import entropy_bin_edges
from entropy_watch.store import RunWriter, TailReader
from entropy_watch.synthetic import VOCAB_SIZE, generate

APP_MAIN = Path(__file__).resolve().parents[1] / "app" / "main.py"
RUN = "long"


def write_long_run(root: Path, n_steps: int, segment: int = 1000) -> None:
    """A collapse-shaped run with the scalars and histogram the Run page draws (vectorised; seconds for 100k)."""
    rng = np.random.default_rng(0)
    sr = generate("collapse_exp", seed=0, n_steps=n_steps)
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
        offs = np.arange(-8, 9)
        bins = (centre[lo : lo + k, None] + offs[None, :]).ravel()
        counts = (2000 * np.exp(-0.5 * (offs / 3.0) ** 2)).astype(np.int64)
        w.write("hist", {"step": np.repeat(steps, offs.size).tolist(), "bin": bins.tolist(),
                         "count": np.tile(counts, k).tolist()})  # fmt: skip
    w.close()


def timed(label: str, fn, *args, **kw):  # noqa: ANN001, ANN202
    t = time.perf_counter()
    out = fn(*args, **kw)
    print(f"  {label:<44s} {1000 * (time.perf_counter() - t):8.1f} ms")
    return out


def bench_queries(root: Path) -> None:
    from entropy_watch.app import charts
    from entropy_watch.app import queries as Q
    from entropy_watch.app import run_panels as P

    print("server side (cold tail reader):")
    reader = TailReader(root)
    rows = timed("first poll (ingest every segment)", reader.poll)
    print(f"  {'':<44s} {rows:8d} rows")
    names = Q.scalar_names(reader, RUN)
    window = Q.Window().bounds(None)
    tr = timed("traces: all scalars, ≤2k points each", Q.traces, reader, RUN, names, window)
    print(f"  {'':<44s} {max(len(t) for t in tr.values()):8d} points per trace (max)")
    edges = np.asarray(entropy_bin_edges(VOCAB_SIZE))
    hm = timed("heatmap: ≤1000 step columns", Q.heatmap, reader, RUN, len(edges), window)
    print(f"  {'':<44s} {hm.counts.shape[0]:8d} columns x {hm.counts.shape[1]} bins")
    timed("reward vs entropy pairs", Q.paired, reader, RUN, M.ENTROPY_MEAN, M.REWARD_MEAN, window)
    timed("observed dH", Q.delta_trace, reader, RUN, M.ENTROPY_MEAN, window)
    hm_page = Q.heatmap(reader, RUN, len(edges), window, P.HEATMAP_COLS)
    figs = {  # as the Run page sends them: tab charts at ≤ TAB_POINTS points, ≤ HEATMAP_COLS columns
        "entropy": charts.entropy_forecast(tr[M.ENTROPY_MEAN]),
        f"heatmap ({hm_page.counts.shape[0]} columns)": charts.entropy_heatmap(hm_page, edges),
        "fan": charts.quantile_fan({n: P.coarsen(tr[n]) for n in M.ENTROPY_QUANTILES}),
        "clip": charts.clip_chart(P.coarsen(tr[M.CLIP_LOW_FRAC]), P.coarsen(tr[M.CLIP_HIGH_FRAC])),
    }
    for key, fig in figs.items():
        t = time.perf_counter()
        size = len(fig.to_json())
        print(f"  plotly JSON {key:<32s} {1000 * (time.perf_counter() - t):8.1f} ms {size / 1e3:8.1f} kB")
    reader.close()


def bench_apptest(root: Path) -> None:
    from streamlit.testing.v1 import AppTest

    print("AppTest, Run page, cold caches (includes ≤1.5 s analysis wait):")
    os.environ["ENTROPY_WATCH_DIR"] = str(root)
    at = AppTest.from_file(str(APP_MAIN), default_timeout=300)
    at.switch_page("pages/run.py")
    at.session_state["run_select"] = RUN
    t = time.perf_counter()
    at.run()
    print(f"  first run: {time.perf_counter() - t:.2f} s, {len(at.get('plotly_chart'))} charts, "
          f"exceptions: {len(at.exception)}")  # fmt: skip
    t = time.perf_counter()
    at.run()
    print(f"  warm rerun: {time.perf_counter() - t:.2f} s")


# Run page tabs (app/run_panels.TABS, opened in turn) and a title fragment of each chart they draw.
TAB_CHARTS = {
    "Drivers": ["Clipped tokens", "Advantages", "Entropy change per step", "Covariance drive"],
    "Reward and precision": ["vs entropy"],
    "Distribution": ["histogram", "quantiles"],
}


def _wait_titles(page, titles: list[str]) -> None:  # noqa: ANN001
    """Until a chart rendered by Plotly (``_fullData``) exists for each title fragment."""
    page.wait_for_function(
        """ts => { const ok = [...document.querySelectorAll('.js-plotly-plot')]
                     .filter(e => e._fullData && e._fullData.length).map(e => e.layout.title.text);
                   return ts.every(t => ok.some(x => x.includes(t))); }""",
        arg=titles,
        timeout=120_000,
    )


def bench_browser(root: Path) -> None:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_MAIN), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--", "--store", str(root)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                  args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            for label in ("cold", "warm"):
                t = time.perf_counter()
                page.goto(f"{url}/run?run={RUN}")
                # on load: the entropy chart and the first tab (histogram, fan); the alert timeline joins when the
                # background analysis is done, so it is counted when present at that moment
                _wait_titles(page, ["Token entropy", "histogram", "quantiles"])
                print(f"  browser first paint ({label}): {time.perf_counter() - t:.2f} s "
                      f"(navigation → every chart shown on load)")  # fmt: skip
                for tab, titles in TAB_CHARTS.items():
                    t = time.perf_counter()
                    page.get_by_role("tab", name=tab).click()
                    _wait_titles(page, titles)
                    print(f"  open tab {tab!r:<28s} {time.perf_counter() - t:.2f} s (click → its charts drawn)")
            b.close()
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--browser", action="store_true", help="also time a real chromium first paint")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ew_bench_app_"))
    try:
        root = tmp / "store"
        t = time.perf_counter()
        write_long_run(root, args.steps)
        print(f"wrote a {args.steps:,}-step run in {time.perf_counter() - t:.1f} s")
        bench_queries(root)
        bench_apptest(root)
        if args.browser:
            bench_browser(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
