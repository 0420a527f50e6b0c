"""Every reading command on a store this process may not write (a read-only mount; another user's store with a run
private to its writer), reached through odd paths (spaces, unicode, glob characters, a symlinked root, a relative
path, ``~``): each read works or says why in one line, and none creates anything in the store. How "another user"
and "read-only" are made here: ``tests/store/test_s48_readonly.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..store.test_s48_readonly import (
    as_other_user,
    build_store,
    give_away,
    make_private,
    read_only_mount,
    snapshot,
)

DRIVER = """
import contextlib, io, json, sys
from entropy_watch.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            main(argv)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    out.append([code, o.getvalue(), e.getvalue()])
print(json.dumps(out))
"""


def run_all(prefix: list[str], cwd: Path, *argvs: list[str], home: Path | None = None) -> list[tuple[int, str, str]]:
    """Each ``argv`` through the console script's ``main``, in one process started with ``prefix`` in ``cwd``."""
    env = {**os.environ, "COLUMNS": "250", **({"HOME": str(home)} if home else {})}
    r = subprocess.run(
        [*prefix, sys.executable, "-c", DRIVER, json.dumps([list(map(str, a)) for a in argvs])],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return [tuple(x) for x in json.loads(r.stdout)]  # type: ignore[misc]


def clean(ran: tuple[int, str, str]) -> None:
    """No traceback, no internal error; what went to stderr is at most a few one-line messages."""
    code, out, err = ran
    assert "Traceback" not in out + err and "internal error" not in out + err, (code, out[-2000:], err[-2000:])


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store under a path with a space, unicode and glob characters; a symlink to it; a working directory."""
    base = tmp_path_factory.mktemp("s48")
    root = base / "odd dir" / "ünï cöde [x]*" / "ew runs"
    build_store(root)
    (base / "link").symlink_to(root)
    cwd = base / "cwd"
    cwd.mkdir()
    (cwd / "rel").symlink_to(root)
    return {"root": root, "link": base / "link", "cwd": cwd, "base": base}


READS = [
    ["ls"],
    ["ls", "--json"],
    ["show", "fin"],
    ["show", "live", "--json"],
    ["show", "killed"],
    ["show", "imp"],
    ["show", "comp"],
    ["alerts"],
    ["alerts", "--json", "fin"],
    ["sql", "SELECT run, count(*) AS n FROM scalars GROUP BY run ORDER BY run"],
    ["watch", "--once"],
]


def test_reads_through_odd_paths_create_nothing(odd: dict[str, Path]) -> None:
    """As a user who may write the store (nothing stops a stray write here): every read, through the symlinked root,
    a relative path and ``~``, leaves the store as it was (no catalog, no lock, no temporary, no DuckDB file)."""
    before = snapshot(odd["root"])
    home = odd["base"] / "home"
    home.mkdir(exist_ok=True)
    (home / "store").symlink_to(odd["root"])
    argvs = [["--store", odd["link"], *a] for a in READS]
    argvs += [["--store", store, *a] for store in ("rel", "~/store") for a in (["ls", "--json"], ["show", "fin"])]
    argvs += [["--store", "rel", "report", "fin", "-o", odd["base"] / "r.html"]]
    argvs += [["--store", "rel", "export", "--duckdb", odd["base"] / "e.duckdb"]]
    ran = run_all([], odd["cwd"], *argvs, home=home)
    for r in ran:
        clean(r)
    sql = [json.loads(r[1]) for a, r in zip(argvs, ran, strict=True) if a[1:3] == ["ls", "--json"]]
    assert all(sorted(x["run"] for x in s) == ["comp", "fin", "imp", "killed", "live"] for s in sql)
    assert snapshot(odd["root"]) == before
    assert (odd["base"] / "r.html").is_file() and (odd["base"] / "e.duckdb").is_file()
    assert sorted(p.name for p in odd["cwd"].iterdir()) == ["rel"]  # nothing spilled into the working directory


def test_read_only_mount_reads_and_write_says_why(odd: dict[str, Path]) -> None:
    """On a read-only mount every read works; ``alerts --write`` printed no alert at all (the write came first and
    its ``OSError`` ended the target: ``error: [Errno 30] Read-only file system: '.../.alerts.lock'``): now the
    alerts are listed and one line says they were not stored, and why."""
    prefix = read_only_mount(odd["root"])
    argvs = [["--store", odd["root"], *a] for a in READS]
    argvs += [
        ["--store", odd["root"], "alerts", "--write", "fin"],
        ["--store", odd["root"], "alerts", "--write", "--json", "fin"],
        ["--store", odd["root"], "watch", "--once", "--write"],
    ]
    ran = run_all(prefix, odd["cwd"], *argvs)
    for r in ran:
        clean(r)
    for a, (code, _, err) in zip(argvs[: len(READS)], ran, strict=False):
        assert code in (0, 1, 2) and not err.strip() or a[2] == "watch", (a, code, err)
    code, out, err = ran[len(READS)]
    assert code == 3 and "collapse" in out  # listed
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "not stored" in lines[0] and "read-only" in lines[0], err
    code, out, err = ran[len(READS) + 1]
    listing = json.loads(out)
    assert code == 3 and listing[0]["alerts"] and "read-only" in listing[-1]["error"]
    code, out, err = ran[len(READS) + 2]
    assert code == 1 and "CRITICAL collapse" in out and "were not stored: error: the store is on a read-only" in err


def test_shared_store_with_a_private_run(tmp_path: Path) -> None:
    """Another user's store with one run private to its writer: ``ls`` failed whole (``error: [Errno 13]
    Permission denied: '.../run=killed/_status'``), ``watch`` too; a private segment was to be "deleted". Now the
    other runs are listed and followed, the private run is named, and the advice fits a sound file."""
    root = tmp_path / "ew_runs"
    build_store(root)
    give_away(root)
    make_private(root / "run=killed")
    segment = sorted((root / "run=live" / "table=scalars" / "rank=0").glob("seg-*.parquet"))[0]
    make_private(segment)
    ran = run_all(
        as_other_user(),
        tmp_path,
        ["--store", root, "ls", "--json"],
        ["--store", root, "show", "killed"],
        ["--store", root, "watch", "--once"],
        ["--store", root, "show", "live"],
        ["--store", root, "sql", "SELECT count(*) AS n FROM scalars WHERE run = 'fin'"],
    )
    for r in ran:
        clean(r)
    listing: list[dict[str, Any]] = json.loads(ran[0][1])
    states = {x["run"]: x["state"] for x in listing}
    assert ran[0][0] == 0 and states["killed"] == "unreadable" and states["fin"] == "finished", ran[0]
    code, _, err = ran[1]
    assert code == 1 and len(err.strip().splitlines()) == 1 and "permission denied" in err
    code, _, err = ran[2]
    assert code == 1 and "[killed] error: the run cannot be read (permission denied" in err
    said = "".join(r[2] for r in ran)  # the warning is given once per file and process: by whichever read it first
    assert f"skipping unreadable data file {segment}" in said and "not damaged" in said and "delete it" not in said
    assert ran[4][0] == 0 and "run 'killed' left out: this user may not read" in said  # `sql` reads the others


def test_report_output_under_tilde(odd: dict[str, Path], tmp_path: Path) -> None:
    """``report --output=~/r.html`` (the shell does not expand ``~`` after ``=``) made a folder named ``~`` in the
    working directory; ``--store`` expands it, and so does ``--output`` now."""
    home = tmp_path / "home"
    home.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    ((code, out, err),) = run_all([], cwd, ["--store", odd["root"], "report", "fin", "--output=~/r.html"], home=home)
    assert code == 0, err
    assert (home / "r.html").is_file() and not (cwd / "~").exists()
