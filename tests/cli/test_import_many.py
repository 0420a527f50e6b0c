"""`import A B C`: every good PATH is imported; each bad one gets one error line saying it was not imported and what
to do, and the command exits 1 (0 when every PATH was imported)."""

from __future__ import annotations

import json
from pathlib import Path

from entropy_watch.store.query import run_names

CSV = "step,entropy,reward\n0,1.0,0.1\n1,0.9,0.2\n2,0.8,0.3\n"


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    a, b, bad = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "bad.json"
    a.write_text(CSV)
    b.write_text(CSV)
    bad.write_text("{bad\n")
    return a, b, bad


def test_one_bad_file_leaves_the_others_imported(ew, tmp_path: Path) -> None:
    a, b, bad = _files(tmp_path)
    store = tmp_path / "s"
    r = ew("--store", store, "import", a, bad, b)
    assert r.code == 1, r.err
    (line,) = r.err.strip().splitlines()
    assert line.startswith(f"error: {bad} not imported: ") and "fix the file" in line, line
    assert run_names(store) == ["a", "b"] and "imported into" in r.out


def test_a_run_that_exists_fails_only_its_file_and_replace_still_works(ew, tmp_path: Path) -> None:
    a, b, _ = _files(tmp_path)
    store = tmp_path / "s"
    assert ew("--store", store, "import", a).code == 0
    r = ew("--store", store, "import", a, b, "--json")
    assert r.code == 1
    (line,) = r.err.strip().splitlines()
    assert f"{a} not imported: run 'a' already exists" in line and "--replace" in line, line
    out = json.loads(r.out)
    assert [x["run"] for x in out["runs"]] == ["b"] and [e["path"] for e in out["errors"]] == [str(a)]
    assert run_names(store) == ["a", "b"]
    r = ew("--store", store, "import", a, b, "--replace")
    assert r.code == 0 and r.err == "", r.err


def test_two_files_giving_one_run_name_import_the_first(ew, tmp_path: Path) -> None:
    one, two = tmp_path / "x" / "m.csv", tmp_path / "y" / "m.csv"
    for p in (one, two):
        p.parent.mkdir()
        p.write_text(CSV)
    r = ew("--store", tmp_path / "s", "import", one, two)
    assert r.code == 1
    (line,) = r.err.strip().splitlines()
    assert f"{two} not imported" in line and "--run NAME" in line, line
    assert run_names(tmp_path / "s") == ["m"]


def test_every_file_bad_imports_nothing_and_prints_no_table(ew, tmp_path: Path) -> None:
    _, _, bad = _files(tmp_path)
    r = ew("--store", tmp_path / "s", "import", bad)
    assert r.code == 1 and r.out == "" and len(r.err.strip().splitlines()) == 1
    assert run_names(tmp_path / "s") == []
