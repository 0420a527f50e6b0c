"""``report`` on a run whose data files cannot be read (damaged, or private to another user) agrees with ``alerts``:
each unreadable file is named on stderr and the exit status is an error's, never "nothing to analyse" and 0."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from entropy_watch.synthetic import write_to_store

from ..cli_run import Ran
from ..store.test_s48_readonly import as_other_user, give_away, make_private
from .test_s48_readonly import run_all


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    write_to_store(root, "g", kind="collapse_exp", seed=1, n_steps=60)
    return root


def _damaged(clean: Path, dest: Path, tables: tuple[str, ...]) -> list[Path]:
    """A copy of ``clean`` at ``dest`` whose segments of ``tables`` are overwritten by another program; those files."""
    shutil.copytree(clean, dest)
    bad = [p for t in tables for p in sorted((dest / "run=g" / f"table={t}").rglob("*.parquet"))]
    assert bad
    for p in bad:
        p.write_bytes(b"not parquet")
    return bad


def test_report_on_a_run_nothing_of_which_can_be_read(
    ew: Callable[..., Ran], ew_proc: Callable[..., Ran], clean_store: Path, tmp_path: Path
) -> None:
    root = tmp_path / "st"
    bad = _damaged(clean_store, root, ("scalars", "hist", "events", "alerts", "tokens"))
    out = tmp_path / "r.html"
    r = ew("--store", root, "report", "g", "-o", out)
    assert r.code == 1, (r.out, r.err)
    assert "nothing to analyse" not in r.out + r.err
    assert "g: no report written: 1 data file could not be read (above), and the rest holds no entropy" in r.err
    assert f"error: {next(p for p in bad if 'table=scalars' in str(p))}: unreadable data file (" in r.err
    assert not out.exists()
    a = ew_proc("--store", root, "alerts", "g")  # a process of its own: this one has these files quarantined
    assert a.code == 3  # alerts: an error too
    assert "Traceback" not in r.err + a.err


def test_report_on_a_run_part_of_which_cannot_be_read(
    ew: Callable[..., Ran], clean_store: Path, tmp_path: Path
) -> None:
    root = tmp_path / "st"
    (bad,) = _damaged(clean_store, root, ("events",))
    out = tmp_path / "r.html"
    r = ew("--store", root, "report", "g", "-o", out)
    assert r.code == 1, (r.out, r.err)
    assert out.exists() and "wrote" in r.out  # the rest of the run is reported
    err_lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert err_lines == [next(ln for ln in err_lines if str(bad) in ln)]  # named once, as `alerts` names it
    assert err_lines[0].startswith(f"error: {bad}: unreadable data file (")


def test_report_on_a_readable_run_still_exits_0(ew: Callable[..., Ran], clean_store: Path, tmp_path: Path) -> None:
    r = ew("--store", clean_store, "report", "g", "-o", tmp_path / "r.html")
    assert r.code == 0 and r.err.strip() == "", r.err


def test_report_as_a_user_who_may_not_read_the_run(clean_store: Path, tmp_path: Path) -> None:
    """Segments private to their writer (another user's store): named "permission denied", exit 1, no report."""
    root = tmp_path / "shared"
    shutil.copytree(clean_store, root)
    root.chmod(0o755)  # a shared store (its source is a private temporary folder)
    files = sorted((root / "run=g").rglob("*.parquet"))
    give_away(root)
    for f in files:
        make_private(f)
    out = tmp_path / "r.html"
    ((code, stdout, stderr),) = run_all(as_other_user(), tmp_path, ["--store", root, "report", "g", "-o", out])
    assert code == 1, (stdout, stderr)
    assert "unreadable data file (permission denied" in stderr and "no report written" in stderr
    assert "nothing to analyse" not in stdout + stderr
    assert not out.exists()
