"""Reading a store this process may not write: another user's store (a cluster's shared filesystem, the app or a cron
job run as another user), a read-only mount, runs private to the user who wrote them; and the SQL sandbox's memory.

This machine runs the tests as root, whom permissions do not bind: "another user" is root without capabilities
(``setpriv --bounding-set=-all --inh-caps=-all``) over files owned by ``nobody``, and a read-only mount is a bind
mount remounted read-only in a private mount namespace (``unshare -m``). Where neither works the tests say why and
skip. The helpers here also serve ``tests/cli/test_s48_readonly.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from entropy_watch.errors import EntropyWatchError
from entropy_watch.store import RunWriter, Store, compact
from entropy_watch.store.query import sandbox
from entropy_watch.synthetic import write_to_store

NOBODY = 65534
ENV_SQL_MEMORY = "ENTROPY_WATCH_SQL_MEMORY"
REAL_LOG = (
    Path(__file__).parents[2].parent / "shared/real_runs/arvindcr4__tinker-rl-lab__tinker-arithmetic-llama32-1b.jsonl"
)

KILLED = """
import os, signal, sys
from entropy_watch.store import RunWriter
w = RunWriter(sys.argv[1], "killed")
for s in range(12):
    w.write("scalars", {"step": [s], "name": ["entropy/mean"], "value": [1.0 - s * 0.02]})
    w.heartbeat(step=s)
os.kill(os.getpid(), signal.SIGKILL)
"""


def build_store(root: Path) -> None:
    """A store with a finished collapsing run ``fin``, a compacted healthy run ``comp``, a live run ``live`` (its
    writer still open), a run killed mid-write ``killed`` and an imported run ``imp`` (synthetic when the shared
    real log is absent)."""
    write_to_store(root, "fin", kind="collapse_exp", seed=1, n_steps=120)
    write_to_store(root, "comp", kind="healthy", seed=2, n_steps=120)
    compact(root, "comp", final=True, min_age_s=0)
    w = RunWriter(root, "live")
    for s in range(15):
        w.write("scalars", {"step": [s], "name": ["entropy/mean"], "value": [1.0 - s * 0.01]})
        w.heartbeat(step=s)
    subprocess.run([sys.executable, "-c", KILLED, str(root)], check=False, timeout=60)
    if REAL_LOG.is_file():
        from entropy_watch.cli import main

        try:
            main(["--store", str(root), "import", str(REAL_LOG), "--run", "imp", "--json"])
        except SystemExit as done:
            assert done.code in (0, None)
    else:
        write_to_store(root, "imp", kind="healthy", seed=3, n_steps=60)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (links not followed) -> (size, modification time): what a reader must not change."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run([*argv, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def as_other_user() -> list[str]:
    """The command prefix that runs a process as a user who owns nothing here (root without capabilities), or
    ``[]`` when this process is not root (permissions bind it already); skips when neither is possible."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    prefix = [setpriv or "setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    if setpriv is None or not _works(prefix):
        pytest.skip("root cannot drop its capabilities here (setpriv missing or refused): no other user to read as")
    return prefix


def make_private(path: Path) -> None:
    """``path`` (a file or a folder) readable by its owner only, owned by someone else than the reader."""
    if os.geteuid() == 0:
        path.chmod(0o700 if path.is_dir() else 0o600)
    else:
        path.chmod(0)


def give_away(root: Path) -> None:
    """Hand ``root`` to another user (root: to nobody; else nothing to do: the reader is its owner, and
    :func:`make_private` takes the owner's rights away)."""
    if os.geteuid() == 0:
        for dirpath, dirs, files in os.walk(root):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirs + files)]:
                os.lchown(name, NOBODY, NOBODY)


def read_only_mount(path: Path) -> list[str]:
    """The command prefix that runs a process with ``path`` mounted read-only at its own place (a private mount
    namespace: nothing outside it changes); skips where this container cannot mount."""
    unshare = shutil.which("unshare")
    prefix = [
        unshare or "unshare",
        "-m",
        "sh",
        "-c",
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
        str(path),
    ]
    if os.geteuid() != 0 or unshare is None or not _works(prefix):
        pytest.skip(
            "no read-only bind mount here (needs root and unshare -m with mount): cannot make a read-only store"
        )
    return prefix


READ_RUNS = """
import json, sys
from entropy_watch.store import Store, TailReader
root = sys.argv[1]
out = {"runs": {i.name: [i.state, i.last_step, i.error] for i in Store(root).runs()}}
with TailReader(root, keep=4) as t:
    t.poll()
    out["refused"] = sorted(t.refused)
    out["versions"] = sorted(t.versions())
    out["tail_runs"] = {i.name: i.state for i in t.runs()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store handed to another user, with one run private to its writer (``killed``)."""
    root = tmp_path_factory.mktemp("shared") / "ew_runs"
    build_store(root)
    give_away(root)
    make_private(root / "run=killed")
    return root


def test_a_private_run_is_listed_unreadable_beside_the_others(shared: Path) -> None:
    """``ls``, the app's reader and ``watch`` listed nothing of a shared store where one run was private to its writer:
    ``Store.runs`` and ``TailReader.poll`` failed on ``PermissionError`` (the app's runs page with a traceback)."""
    prefix = as_other_user()
    r = subprocess.run([*prefix, sys.executable, "-c", READ_RUNS, str(shared)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert set(got["runs"]) == {"fin", "comp", "live", "killed", "imp"}
    assert got["runs"]["killed"][0] == "unreadable" and "permission denied" in got["runs"]["killed"][2]
    assert got["runs"]["fin"][:2] == ["finished", 119] and got["runs"]["comp"][:2] == ["finished", 119]
    assert got["runs"]["live"][1] == 14
    assert got["refused"] == ["killed"]  # said, not skipped silently
    assert {"fin", "comp", "live", "imp"} <= set(got["versions"])
    assert got["tail_runs"]["killed"] == "unreadable"


def test_a_private_run_json_is_an_error_not_an_empty_one(tmp_path: Path) -> None:
    """A ``_run.json`` the reader may not open was read as ``{}``: the run listed and analysed without its vocabulary
    size and reward ceiling, silently."""
    root = tmp_path / "ew_runs"
    write_to_store(root, "g", kind="healthy", seed=1, n_steps=30)
    give_away(root)
    make_private(root / "run=g" / "_run.json")
    code = "import sys; from entropy_watch.store import Store; print(Store(sys.argv[1]).run_meta('g'))"
    r = subprocess.run([*as_other_user(), sys.executable, "-c", code, str(root)], capture_output=True, text=True)
    assert r.returncode != 0 and "PermissionError" in r.stderr and "_run.json" in r.stderr, r.stdout + r.stderr


# -- the SQL sandbox's memory -----------------------------------------------------------------------------------------
def _limit(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0])


def test_sandbox_memory_is_a_quarter_not_duckdbs_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox kept DuckDB's default memory limit (80% of the machine's memory) for any user query."""
    monkeypatch.delenv(ENV_SQL_MEMORY, raising=False)
    reference = duckdb.connect(":memory:", config={"memory_limit": "25%"})
    assert _limit(sandbox()) == _limit(reference) != _limit(duckdb.connect(":memory:"))
    monkeypatch.setenv(ENV_SQL_MEMORY, "300MB")
    assert _limit(sandbox()) == _limit(duckdb.connect(":memory:", config={"memory_limit": "300MB"}))
    assert str(sandbox().sql("SELECT current_setting('temp_directory')").fetchall()[0][0]) == ""


def test_sandbox_memory_setting_that_is_no_size_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SQL_MEMORY, "lots")
    with pytest.raises(EntropyWatchError, match=rf"\${ENV_SQL_MEMORY}='lots' is not a memory size"):
        sandbox()


def test_a_query_over_the_limit_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A query that outgrew the memory raised DuckDB's OutOfMemoryException, whose message advises ``SET memory_limit``
    and ``SET temp_directory``, both refused in the sandbox; nothing is spilled to the working directory."""
    root = tmp_path / "ew_runs"
    write_to_store(root, "g", kind="healthy", seed=1, n_steps=30)
    monkeypatch.setenv(ENV_SQL_MEMORY, "64MB")
    monkeypatch.chdir(tmp_path)
    from entropy_watch.store.query import SqlOutOfMemory

    with pytest.raises(SqlOutOfMemory) as err:
        Store(root).sql("SELECT (SELECT count(*) FROM scalars) AS n, count(DISTINCT i) FROM range(30000000) t(i)")
    msg = str(err.value)
    assert "\n" not in msg and "SET " not in msg and ENV_SQL_MEMORY in msg and "MiB" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ew_runs"]
    monkeypatch.setenv(ENV_SQL_MEMORY, "1GB")  # the same store answers a query that fits
    assert Store(root).sql("SELECT count(*) AS n FROM scalars").column("n")[0].as_py() > 0
