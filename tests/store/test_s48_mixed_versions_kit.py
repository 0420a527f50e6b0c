"""Kit for the mixed-version store tests (no tests here): the previous release, built from git, driven in its own
process beside the code under test.

A team upgrades its trainers, the on-call's CLI, the cron compaction and the app server at different times, so one
store is written and read by two versions at once. :func:`old_tree` extracts the previous release
(:data:`OLD_COMMIT`, ``git archive``, as a user would install it) once per session; :class:`Side` runs a small server
(:data:`SERVER`) on either tree that performs store operations on request (write segments with a writer it keeps
open, compact, count what a ``Store`` reads, follow with a ``TailReader``, write or read the catalog, delete a run)
and answers each with one JSON line: the result, or the traceback it met (a test asserts there is none).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

OLD_COMMIT = "2b03607"  # the release before `entropy-watch rm`, parts merging parts and process-unique temporaries
REPO = Path(__file__).resolve().parents[2]
NEW_TREE = REPO

SERVER = textwrap.dedent(
    """
    import json, os, signal, sys, time, traceback
    import numpy as np
    import entropy_watch
    from entropy_watch.store import RunWriter, Store, TailReader

    writers, tails = {}, {}

    def scalars(first, rows):
        return {"step": np.full(rows, first, dtype=np.int64), "name": ["m"] * rows,
                "value": np.arange(rows, dtype=np.float64)}

    def which():
        return entropy_watch.__file__

    def write(root, run, segs, rows, close=False, acked=False, delay=0.0):
        w = writers.get((root, run))
        if w is None:
            w = writers[(root, run)] = RunWriter(root, run, rank=0)
        for i in range(segs):
            w.write("scalars", scalars(w.next_seq("scalars"), rows))
            if acked:
                print(json.dumps({"ack": i}), flush=True)
            time.sleep(delay)
        if close:
            writers.pop((root, run)).close()
        return segs * rows

    def count(root):
        st = Store(root)
        got = st.sql("SELECT run, count(*) AS n FROM scalars GROUP BY run").to_pylist()
        return {"runs": sorted((i.name, i.state) for i in st.runs()), "rows": {r["run"]: r["n"] for r in got}}

    def compact(root, final=False, loop=0):
        from importlib import import_module
        mod = import_module("entropy_watch.store.compact")
        n = 0
        for _ in range(max(loop, 1)):
            n += mod.compact(root, min_age_s=0.0, final=final).merged_files
        return n

    def catalog(root):
        from entropy_watch.store import write_catalog
        return str(write_catalog(root))

    def catread(root):
        import duckdb
        con = duckdb.connect(os.path.join(root, "_catalog.duckdb"), read_only=True)
        try:
            return dict(con.sql("SELECT run, count(*) FROM scalars GROUP BY run").fetchall())
        finally:
            con.close()

    def tail_open(root, name, keep=None, follow=()):
        t = tails[name] = TailReader(root, tables=("scalars",)) if keep is None else TailReader(
            root, tables=("scalars",), keep=keep)
        if follow:
            t.follow(*follow)
        return tail_poll(name)

    def tail_poll(name):
        t = tails[name]
        t.poll()
        got = t.query("SELECT run, count(*) AS n FROM scalars GROUP BY run").to_pylist()
        return {"runs": sorted(i.name for i in t.runs()), "rows": {r["run"]: r["n"] for r in got}}

    def rm(root, run, kill_after_hide=False):
        from entropy_watch.store.remove import remove_run
        hook = (lambda: os.kill(os.getpid(), signal.SIGKILL)) if kill_after_hide else None
        remove_run(root, run, force=True, _after_hide=hook)
        return run

    def write_alerts_paused(root, run):
        # `alerts --write`'s store step (both versions: cli.alerts_cmds._write_alerts), paused once it read the
        # run's stored alerts (holding the run's .alerts.lock): prints {"window": true}, goes on at the next line
        import importlib, pathlib
        from entropy_watch.analysis.alert import Alert
        cmds = importlib.import_module("entropy_watch.cli.alerts_cmds")
        real = Store.table

        def table(self, name, table, *args, **kwargs):
            out = real(self, name, table, *args, **kwargs)
            if table == "alerts" and name == run:
                print(json.dumps({"window": True}), flush=True)
                sys.stdin.readline()
            return out

        Store.table = table
        try:
            alert = Alert(step=1, detector="test", kind="collapse", severity="critical", message="m")
            return cmds._write_alerts(pathlib.Path(root), run, [alert])
        except Exception as exc:  # the one line a user would be told (the CLI prints it): not a traceback here
            return f"{type(exc).__name__}: {exc}"
        finally:
            Store.table = real

    for line in sys.stdin:
        req = json.loads(line)
        try:
            out = {"ok": globals()[req.pop("op")](**req)}
        except BaseException:
            out = {"error": traceback.format_exc()}
        print(json.dumps(out), flush=True)
    """
)


def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's source tree (``git archive``), extracted once per session; skips without git or the
    commit (a shallow clone, a source archive)."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed: the previous release cannot be built")
    if not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git checkout: the previous release cannot be built")
    dest = tmp_path_factory.getbasetemp() / f"entropy_watch-{OLD_COMMIT}"
    if (dest / "entropy_watch" / "__init__.py").is_file():
        return dest
    part = dest.with_name(dest.name + f".{os.getpid()}.part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    archive = subprocess.run([git, "-C", str(REPO), "archive", OLD_COMMIT, "entropy_watch"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {OLD_COMMIT} is not in this clone ({archive.stderr.decode(errors='replace').strip()})")
    subprocess.run(["tar", "-x", "-C", str(part)], input=archive.stdout, check=True)
    os.replace(part, dest)
    return dest


class Side:
    """A server process on one source tree (:data:`SERVER`); :meth:`do` sends one request and returns its result,
    failing the test with the server's traceback when it met one."""

    def __init__(self, tree: Path, label: str) -> None:
        self.tree, self.label = tree, label
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tree,
        )
        where = Path(self.do("which"))
        assert where.is_relative_to(tree), f"the {label} side imported {where}, not the tree at {tree}"

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"the {self.label} side ended (rc {self.proc.wait()}): {err[-2000:]}")
        out: dict[str, Any] = json.loads(line)
        return out

    def do(self, op: str, **args: Any) -> Any:
        self.send(op, **args)
        out = self.reply()
        assert "error" not in out, f"the {self.label} side failed in {op}{args}:\n{out['error']}"
        return out["ok"]

    def kill(self) -> list[str]:
        """SIGKILL the server; returns the lines it printed and nobody read."""
        self.proc.send_signal(signal.SIGKILL)
        rest, _ = self.proc.communicate()
        return rest.splitlines()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
