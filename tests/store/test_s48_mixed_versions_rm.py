"""``entropy-watch rm`` (new in this version) in a store the previous release (commit ``2b03607``) still reads,
follows and compacts: its app's tail reader, its ``Store``, its cron compaction and its catalog never meet an error,
never show a deleted run again, and keep every row of the other runs; an ``rm`` killed after hiding the run (its
hidden ``.removing-*`` folder left behind, the run's row still in ``_runs.parquet``) is invisible to them too."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from entropy_watch.store import Store, TailReader
from entropy_watch.store.remove import LEFTOVER_PREFIX, clean_leftovers, remove_run

from .test_s48_mixed_versions_kit import NEW_TREE, Side

ROWS = 5


def _two_runs(old: Side, root: Path) -> dict[str, int]:
    """Run ``a`` (compacted: parts) and run ``b`` (segments), written by the old trainer; rows per run."""
    rows = {run: old.do("write", root=str(root), run=run, segs=4, rows=ROWS, close=True) for run in ("a", "b")}
    old.do("compact", root=str(root))
    old.do("catalog", root=str(root))  # _runs.parquet lists both
    return rows


def _only_b(old: Side, root: Path, rows: dict[str, int]) -> None:
    """Every old reader and the new one see run ``b`` whole and nothing of ``a``."""
    got = old.do("count", root=str(root))
    assert got == {"runs": [["b", "finished"]], "rows": {"b": rows["b"]}}
    st = Store(root)
    assert [i.name for i in st.runs()] == ["b"]
    assert st.sql("SELECT run, count(*) AS n FROM scalars GROUP BY run").to_pylist() == [{"run": "b", "n": rows["b"]}]


def test_rm_while_an_old_app_follows_and_an_old_cron_compacts(old: Side, tmp_path: Path) -> None:
    """The old app's tail readers (all rows, and ``keep`` following both runs) drop the deleted run at their next
    poll and keep the other; the old cron's next pass and its catalog skip it without an error."""
    root = tmp_path / "ew_runs"
    rows = _two_runs(old, root)
    both = {"runs": ["a", "b"], "rows": rows}
    assert old.do("tail_open", root=str(root), name="all") == both
    assert old.do("tail_open", root=str(root), name="kept", keep=2, follow=["a", "b"])["runs"] == ["a", "b"]
    tail = TailReader(root, tables=("scalars",))  # a new app beside the old one
    tail.poll()
    remove_run(root, "a")
    assert old.do("tail_poll", name="all") == {"runs": ["b"], "rows": {"b": rows["b"]}}
    assert old.do("tail_poll", name="kept")["runs"] == ["b"]
    old.do("compact", root=str(root))
    old.do("compact", root=str(root), final=True)
    old.do("catalog", root=str(root))
    assert old.do("catread", root=str(root)) == {"b": rows["b"]}
    _only_b(old, root, rows)
    tail.poll()
    assert [i.name for i in tail.runs()] == ["b"]
    assert tail.query("SELECT count(*) AS n FROM scalars").to_pylist() == [{"n": rows["b"]}]
    tail.close()


@pytest.mark.parametrize("how", ["interrupted", "kill -9"])
def test_rm_stopped_after_hiding_the_run_is_invisible_to_the_old_release(old: Side, tmp_path: Path, how: str) -> None:
    """An ``rm`` stopped right after its rename (Ctrl-C, or kill -9 in a process of its own) leaves the run in a
    hidden folder and its row in ``_runs.parquet``: the old release's readers, tail reader, compactions (one pass and
    ``--final``) and catalog neither list it nor fail, and leave the folder alone; the next ``rm`` deletes it."""
    root = tmp_path / "ew_runs"
    rows = _two_runs(old, root)
    old.do("tail_open", root=str(root), name=f"t-{how}")
    if how == "kill -9":
        killer = Side(NEW_TREE, "new rm")
        killer.send("rm", root=str(root), run="a", kill_after_hide=True)
        assert killer.proc.wait(timeout=60) == -9
        killer.close()
    else:

        def stop() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            remove_run(root, "a", _after_hide=stop)
    (leftover,) = [p for p in root.iterdir() if p.name.startswith(LEFTOVER_PREFIX)]
    held = sorted(p.relative_to(leftover) for p in leftover.rglob("*"))
    assert old.do("tail_poll", name=f"t-{how}") == {"runs": ["b"], "rows": {"b": rows["b"]}}
    old.do("compact", root=str(root))
    old.do("compact", root=str(root), final=True)
    old.do("catalog", root=str(root))
    assert old.do("catread", root=str(root)) == {"b": rows["b"]}
    _only_b(old, root, rows)
    assert sorted(p.relative_to(leftover) for p in leftover.rglob("*")) == held  # the old side left it alone
    assert clean_leftovers(root) == 1
    assert not leftover.exists()
    _only_b(old, root, rows)


def test_old_cli_reads_a_store_with_an_rm_leftover(old: Side, tmp_path: Path) -> None:
    """The old CLI (``ls``, ``show``, ``sql``) beside a killed ``rm``'s leftover: exit 0 and one line of error for
    the deleted run, never a traceback."""
    root = tmp_path / "ew_runs"
    rows = _two_runs(old, root)

    def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        remove_run(root, "a", _after_hide=stop)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"PYTHONPATH": str(old.tree), "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
        cmd = [sys.executable, "-m", "entropy_watch", "--store", str(root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=old.tree, timeout=120)

    ls = cli("ls", "--json")
    assert ls.returncode == 0, ls.stderr
    assert '"a"' not in ls.stdout and '"b"' in ls.stdout
    sql = cli("sql", "SELECT run, count(*) AS n FROM scalars GROUP BY run")
    assert sql.returncode == 0 and f"{rows['b']}" in sql.stdout and "Traceback" not in sql.stderr
    show = cli("show", "a")
    assert show.returncode != 0 and "Traceback" not in show.stderr + show.stdout
    assert len(show.stderr.strip().splitlines()) == 1 and "not found" in show.stderr


@pytest.mark.parametrize("importer", ["old", "new"])
def test_a_removed_run_is_not_brought_back_by_the_next_import(old: Side, tmp_path: Path, importer: str) -> None:
    """``import --replace a`` killed after publishing the new ``a``, before deleting the ``a`` it replaced, leaves that
    one in ``.replaced-a-<host>-<pid>-<ns>``; the import of either version restores such a folder as ``run=a``
    whenever ``run=a`` is missing, "the user's only copy". After ``rm a`` it is missing on purpose: the next import
    of anything must not bring the deleted run back (its older version, at that)."""
    root = tmp_path / "ew_runs"
    old.do("write", root=str(root), run="a", segs=2, rows=ROWS, close=True)
    stale_ns = time.time_ns() - 2 * 3600 * 10**9  # its import died two hours ago (stale by every host's rule)
    shutil.copytree(root / "run=a", root / f".replaced-a-otherhost-4242-{stale_ns}")
    remove_run(root, "a")
    log = tmp_path / "other.csv"
    log.write_text("step,entropy\n0,1.0\n1,0.9\n")
    tree = old.tree if importer == "old" else NEW_TREE
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "entropy_watch", "--store", str(root), "import", str(log), "--run", "other"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [i.name for i in Store(root).runs()] == ["other"]
    assert old.do("count", root=str(root))["runs"] == [["other", "imported"]]


@pytest.mark.parametrize("version", ["old", "new"])
def test_rm_while_alerts_are_being_stored_does_not_bring_the_run_back(old: Side, tmp_path: Path, version: str) -> None:
    """``watch --write`` (or ``alerts --write``) of either version stores a new alert in run ``a`` while ``rm a``
    runs: it holds ``run=a/.alerts.lock`` from reading the stored alerts to writing the new ones. An ``rm`` that
    renamed the run in between had its writer create ``run=a`` again, a stub without config that ``ls`` lists as
    ``imported``. The rm must wait for that lock (then delete the run, the new alert with it)."""
    root = tmp_path / "ew_runs"
    for run in ("a", "b"):
        old.do("write", root=str(root), run=run, segs=2, rows=ROWS, close=True)
    side = old if version == "old" else Side(NEW_TREE, "new")
    try:
        side.send("write_alerts_paused", root=str(root), run="a")
        assert side.reply() == {"window": True}
        rm = threading.Thread(target=remove_run, args=(root, "a"))
        rm.start()
        deadline = time.monotonic() + 2.0  # an rm that does not wait for the lock renames the run at once
        while (root / "run=a").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert side.proc.stdin is not None
        side.proc.stdin.write("go\n")
        side.proc.stdin.flush()
        stored = side.reply()
        rm.join(timeout=60)
        assert not rm.is_alive()
    finally:
        if side is not old:
            side.close()
    assert "error" not in stored, stored["error"]
    assert [i.name for i in Store(root).runs()] == ["b"]
    assert old.do("count", root=str(root))["runs"] == [["b", "finished"]]


def test_export_of_every_run_skips_a_run_removed_meanwhile(
    old: Side, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``export --duckdb`` of the whole store (an old trainer's runs) while ``rm a`` lands after its listing: the
    export is of the runs still there, as ``compact`` of every run skips one deleted since the listing; it failed
    with "run 'a' not found" and exported nothing."""
    root = tmp_path / "ew_runs"
    rows = {run: old.do("write", root=str(root), run=run, segs=2, rows=ROWS, close=True) for run in ("a", "b")}
    catalog = importlib.import_module("entropy_watch.store.catalog")
    listed = catalog.run_names

    def run_names(where: object) -> list[str]:
        names = listed(where)
        remove_run(root, "a")
        return names

    monkeypatch.setattr(catalog, "run_names", run_names)
    dest = catalog.export_duckdb(root, tmp_path / "all.duckdb")
    with duckdb.connect(str(dest), read_only=True) as con:
        assert con.sql("SELECT run, count(*) FROM scalars GROUP BY run").fetchall() == [("b", rows["b"])]
        assert con.sql("SELECT run FROM runs").fetchall() == [("b",)]
