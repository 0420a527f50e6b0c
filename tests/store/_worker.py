"""Subprocess roles for the store's multi-process tests: ``python _worker.py ROLE ARGS...``.

* ``writer ROOT RUN RANK N_SEGS ROWS DELAY_S`` - publishes N_SEGS scalar segments of ROWS rows (step = segment index),
  printing ``ACK <seq> <rows>`` after each publish returns (flushed), then ``DONE``.
* ``reader ROOT EXPECTED STOPFILE`` - polls a one-shot Store and a TailReader until both see EXPECTED rows and
  STOPFILE exists; prints ``READY`` after its first poll, then one JSON line: polls, errors, whether counts were
  monotone, final counts.
* ``trainer ROOT RUN FLUSH_S DELAY_S`` - a :class:`~entropy_watch.recorder.Recorder` logging canonical metrics (entropy
  three steps behind the others) every DELAY_S until killed, printing ``L <step>`` after each step.
* ``compactor ROOT STOPFILE [GRACE_S]`` - runs ``compact(min_age_s=0)`` in a loop until STOPFILE exists, then a
  final one; GRACE_S (object stores) delays the deletion of merged files, the final compaction deletes at once.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path


def writer(root: str, run: str, rank: str, n_segs: str, rows: str, delay_s: str) -> None:
    import numpy as np

    from entropy_watch.store import RunWriter

    w = RunWriter(root, run, rank=int(rank))
    n = int(rows)
    for seq in range(int(n_segs)):
        path = w.write(
            "scalars",
            {"step": np.full(n, seq, dtype=np.int64), "name": ["m"] * n, "value": np.arange(n, dtype=np.float64)},
        )
        print(f"ACK {seq} {n} {path.name}", flush=True)
        if float(delay_s) > 0:
            time.sleep(float(delay_s))
    w.close()
    print("DONE", flush=True)


def reader(root: str, expected: str, stopfile: str) -> None:
    from entropy_watch.store import Store, TailReader

    store, tail = Store(root), TailReader(root, tables=("scalars",))
    errors: list[str] = []
    last = {"store": -1, "tail": -1}
    monotone = True
    polls = 0
    deadline = time.time() + 120
    while time.time() < deadline:
        polls += 1
        try:
            n_store = store.sql("SELECT count(*) AS n FROM scalars").column("n")[0].as_py()
            tail.poll()
            n_tail = tail.query("SELECT count(*) AS n FROM scalars").column("n")[0].as_py()
        except Exception:  # noqa: BLE001 - every error is a test failure, reported to the parent
            errors.append(traceback.format_exc(limit=3))
            n_store = n_tail = None
        if polls == 1:
            print("READY", flush=True)  # the parent starts the writers now: polls while they write, however slow
        if n_store is None:
            continue
        for key, value in (("store", n_store), ("tail", n_tail)):
            monotone &= value >= last[key]
            last[key] = value
        if Path(stopfile).exists():
            deadline = min(deadline, time.time() + 20)
            if last["store"] >= int(expected) and last["tail"] >= int(expected):
                break
        time.sleep(0.02)
    print(json.dumps({"polls": polls, "errors": errors, "monotone": monotone, "final": last}), flush=True)


def compactor(root: str, stopfile: str, grace_s: str = "") -> None:
    from entropy_watch.store import compact

    grace = float(grace_s) if grace_s else None
    merged = 0
    while not Path(stopfile).exists():
        merged += compact(root, min_age_s=0.0, grace_s=grace).merged_files
        time.sleep(0.05)
    merged += compact(root, final=True, grace_s=0.0 if grace is not None else None).merged_files
    print(json.dumps({"merged": merged}), flush=True)


def recorder(root: str, run: str, flush_s: str, n: str, delay_s: str) -> None:
    from entropy_watch.recorder import Recorder
    from entropy_watch.store import RunWriter

    rec = Recorder(RunWriter(root, run), flush_secs=float(flush_s))
    for step in range(int(n)):
        rec.scalars(step, {"x": float(step)})
        print(f"L {step} {time.time():.6f}", flush=True)
        time.sleep(float(delay_s))
    rec.close()
    print("DONE", flush=True)


def trainer(root: str, run: str, flush_s: str, delay_s: str) -> None:
    """Logs like a trainer until killed: ``reward/mean`` at each step, ``entropy/mean`` three steps behind (computed
    asynchronously, as ``Watch`` does) and a histogram; prints ``L <step>`` after each."""
    from entropy_watch import metrics as M
    from entropy_watch.recorder import Recorder
    from entropy_watch.store import RunWriter

    rec = Recorder(RunWriter(root, run), flush_secs=float(flush_s))
    step = 0
    while True:
        rec.scalars(step, {M.REWARD_MEAN: step * 1e-3, "loss": 0.5})
        if step >= 3:
            rec.scalars(step - 3, {M.ENTROPY_MEAN: 2.0 + ((step - 3) % 97) / 97})
            rec.hist(step - 3, [1, 2, 3])
        print(f"L {step}", flush=True)
        step += 1
        time.sleep(float(delay_s))


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    roles = {"writer": writer, "reader": reader, "compactor": compactor, "recorder": recorder, "trainer": trainer}
    roles[role](*args)
