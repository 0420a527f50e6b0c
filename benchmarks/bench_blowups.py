"""Growth of the two commands that blew up under hostile probing (issue 11): ``ls`` over many runs, ``alerts`` on a
long CSV. Each size runs as a real ``entropy-watch`` process; the table gives wall time, peak resident memory and
the growth factor against the previous size (x time per x size: 1 = linear, 2 = quadratic).

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_blowups.py [--ls 10 100 1000] [--alerts 100000 1000000 3850000]
[--code DIR]``. ``--code`` runs another checkout's CLI (e.g. an old commit unpacked with ``git archive``) on the same
inputs, for before/after numbers; ``--mem-limit-gb`` caps each child's address space so an old blow-up fails
instead of taking the machine down. Asserts nothing. Targets (issue 11): ``ls`` <= 1 s at 1,000 runs; ``alerts`` on
a 3.85M-step, ~200 MB CSV <= 60 s and <= 2 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# A store run as a short training run leaves it: run.json, a heartbeat, 8 scalar segments (16 metrics, entropy among
# them), 2 histogram segments. Written by the checkout under test (its own writer, its own summaries, if any).
_MAKE_RUNS = """
import sys, numpy as np
from entropy_watch.store import RunWriter
root, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
names = ["entropy/mean", "reward/mean"] + [f"metric/{i}" for i in range(14)]
for r in range(lo, hi):
    w = RunWriter(root, f"run-{r:05d}")
    w.update_run_meta(framework="bench")
    for seg in range(8):
        steps = np.repeat(np.arange(seg * 25, seg * 25 + 25), len(names))
        w.write("scalars", {"step": steps, "name": names * 25, "value": np.linspace(1.0, 0.5, steps.size)})
    for seg in range(2):
        w.write("hist", {"step": np.repeat([seg], 64), "bin": np.arange(64), "count": np.ones(64, dtype=np.int64)})
    w.close()
"""


# What `ls` needs from the store, without the CLI's own formatting: every run with its state, last step and entropy.
_LIST_RUNS = """
import sys, time
from entropy_watch.store import Store
t = time.perf_counter()
rows = [(i.name, i.state, i.last_step, i.latest.get("entropy/mean")) for i in Store(sys.argv[1]).runs()]
print(f"in-process {time.perf_counter() - t:.3f} s")
assert all(r[3] is not None for r in rows), "a run without its latest entropy"
"""


def run_cli(code: Path, args: list[str], mem_limit_gb: float, timeout_s: float) -> tuple[float, float, str]:
    """``(seconds, peak RSS in MB, status)`` of ``python -m entropy_watch ARGS`` (or ``python -c CODE ...`` when
    ``args[0] == "-c"``) from the checkout ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    limit = int(mem_limit_gb * 2**30)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *(args if args[0] == "-c" else ["-m", "entropy_watch", *args])],
        cwd=code,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=cap,
        text=True,
    )
    out: list[str] = []
    drain = threading.Thread(target=lambda: out.extend(proc.stdout.read().splitlines()), daemon=True)  # never block
    drain.start()
    deadline = t + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            return time.perf_counter() - t, usage.ru_maxrss / 1024, f"killed at {timeout_s:.0f} s"
        time.sleep(0.05)
    secs = time.perf_counter() - t
    code_ = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().strip().splitlines() if proc.stderr else []
    drain.join(timeout=30)
    state = f"exit {code_}" + (f": {err[-1][:70]}" if code_ not in (0, 1, 2) and err else "")
    if out and out[-1].startswith("in-process"):
        state += f" ({out[-1]})"
    return secs, usage.ru_maxrss / 1024, state


def make_store(code: Path, root: Path, n_runs: int, have: int) -> None:
    """Add runs ``have .. n_runs-1`` to ``root`` (stores of growing size share their first runs)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "-c", _MAKE_RUNS, str(root), str(have), str(n_runs)], check=True, env=env)


def make_csv(path: Path, n_steps: int) -> None:
    """``step,entropy,reward,kl``: a slow entropy decline with noise, ~52 bytes per row (3.85M rows ~ 200 MB)."""
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        fh.write("step,entropy,reward,kl\n")
        for lo in range(0, n_steps, 500_000):
            s = np.arange(lo, min(n_steps, lo + 500_000))
            ent = 1.2 * np.exp(-s / (2.0 * n_steps)) + 0.02 * rng.standard_normal(s.size)
            rew = 0.3 + 0.4 * s / n_steps + 0.05 * rng.standard_normal(s.size)
            kl = np.abs(0.01 * rng.standard_normal(s.size))
            block = np.column_stack([s, ent, rew, kl])
            np.savetxt(fh, block, fmt=["%d", "%.12f", "%.12f", "%.12f"], delimiter=",")


def table(title: str, unit: str, rows: list[tuple[int, float, float, str]]) -> None:
    print(f"\n{title}")
    print(f"{unit:>10} {'seconds':>9} {'peak MB':>9} {'x time/x size':>14}  status")
    prev: tuple[int, float] | None = None
    for size, secs, mb, status in rows:
        growth = ""
        if prev is not None and prev[1] > 0:
            growth = f"{np.log(secs / prev[1]) / np.log(size / prev[0]):.2f}"
        print(f"{size:>10,} {secs:>9.2f} {mb:>9.0f} {growth:>14}  {status}")
        prev = (size, secs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ls", type=int, nargs="*", default=[10, 100, 1000], help="run counts for `ls`")
    ap.add_argument("--alerts", type=int, nargs="*", default=[100_000, 1_000_000, 3_850_000], help="CSV steps")
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose CLI is measured")
    ap.add_argument("--mem-limit-gb", type=float, default=6.0, help="address-space cap per child")
    ap.add_argument("--timeout", type=float, default=400.0, help="seconds per child")
    ap.add_argument("--cli-ls-max", type=int, default=10**9, help="skip the CLI `ls` above this many runs")
    ap.add_argument("--no-api", action="store_true", help="skip Store.runs() (checkouts without run summaries)")
    args = ap.parse_args()
    code = args.code.resolve()
    print(f"code under test: {code}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        rows, api, have = [], [], 0
        for n in sorted(args.ls):
            make_store(code, root, n, have)
            have = n
            ls = ["--store", str(root), "ls", "--json"]
            if n <= args.cli_ls_max:
                run_cli(code, ls, args.mem_limit_gb, args.timeout)  # warm the page cache
                rows.append((n, *run_cli(code, ls, args.mem_limit_gb, args.timeout)))
            if not args.no_api:
                api.append((n, *run_cli(code, ["-c", _LIST_RUNS, str(root)], args.mem_limit_gb, args.timeout)))
        if rows:
            table("entropy-watch ls --json (runs of 200 steps, 10 segments each)", "runs", rows)
        if api:
            table("Store(root).runs() with each run's latest entropy (what ls lists), one process", "runs", api)
        rows = []
        for n in sorted(args.alerts):
            csv = Path(tmp) / f"long-{n}.csv"
            make_csv(csv, n)
            secs, mb, status = run_cli(code, ["alerts", str(csv), "--json"], args.mem_limit_gb, args.timeout)
            rows.append((n, secs, mb, f"{status} ({csv.stat().st_size / 1e6:.0f} MB CSV)"))
            csv.unlink()
        if rows:
            table("entropy-watch alerts FILE.csv --json (step,entropy,reward,kl)", "steps", rows)


if __name__ == "__main__":
    main()
