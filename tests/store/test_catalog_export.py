"""``export_duckdb``: replaces a DuckDB file but no other file or a folder, leaves no temporary behind on any failure
(Ctrl-C included), and exports a run named twice once."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from entropy_watch.errors import EntropyWatchError
from entropy_watch.store import catalog, export_duckdb
from entropy_watch.synthetic import write_to_store


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    write_to_store(root, "keep", kind="healthy", seed=0, n_steps=20)
    return root


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_run_named_twice_is_exported_once(root: Path, tmp_path: Path) -> None:
    dest = export_duckdb(root, tmp_path / "e.duckdb", runs=["keep", "keep"])
    con = duckdb.connect(str(dest), read_only=True)
    try:
        assert con.sql("SELECT run FROM runs").fetchall() == [("keep",)]
        steps = con.sql("SELECT count(*), count(DISTINCT (step, name)) FROM scalars").fetchall()[0]
        assert steps[0] == steps[1] > 0
    finally:
        con.close()


def test_an_earlier_export_is_replaced(root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "e.duckdb"
    export_duckdb(root, dest)
    assert dest.read_bytes()[8:12] == catalog.DUCKDB_MAGIC
    export_duckdb(root, dest)  # our own output: replaced
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("content", [b"step,entropy\n1,0.5\n", b""], ids=["csv", "empty"])
def test_another_file_is_never_replaced(root: Path, tmp_path: Path, content: bytes) -> None:
    dest = tmp_path / "mine.csv"
    dest.write_bytes(content)
    with pytest.raises(EntropyWatchError, match="is not a DuckDB database; refusing to overwrite"):
        export_duckdb(root, dest)
    assert dest.read_bytes() == content and _leftovers(tmp_path) == []


def test_a_folder_is_refused_before_anything_is_written(root: Path, tmp_path: Path) -> None:
    (tmp_path / "d.duckdb").mkdir()
    with pytest.raises(EntropyWatchError, match=r"d\.duckdb is a directory; pass a file path"):
        export_duckdb(root, tmp_path / "d.duckdb")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError], ids=["ctrl-c", "error"])
def test_no_temporary_is_left_when_the_export_fails(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: type[BaseException]
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise exc("stopped")

    monkeypatch.setattr(catalog, "with_retry", fail)  # while the temporary database is being filled
    with pytest.raises(exc):
        export_duckdb(root, tmp_path / "e.duckdb")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "e.duckdb").exists()
