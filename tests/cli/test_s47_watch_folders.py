"""`watch` takes run folders as `alerts` and `report` do (`watch --once ew_runs/run=*`, the catalog placeholder a glob
names skipped); run folders of two stores are a usage error."""

from __future__ import annotations

from pathlib import Path

from entropy_watch.synthetic import write_to_store


def _lines(out: str) -> list[str]:
    return sorted(line for line in out.splitlines() if line.strip())


def test_watch_once_on_run_folders_says_what_it_says_on_their_names(ew, tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_to_store(store, "a", kind="fast_collapse", seed=0, n_steps=60)
    write_to_store(store, "b", kind="healthy", seed=1, n_steps=60)
    (store / "run=.catalog").mkdir()  # what `compact` leaves beside the runs
    by_name = ew("--store", store, "watch", "--once", "a", "b")
    by_folder = ew("--store", tmp_path / "elsewhere", "watch", "--once", store / "run=a", store / "run=b")
    by_glob = ew("watch", "--once", *sorted(store.glob("run=*")))
    assert by_name.code == 0 and "[a]" in by_name.out, by_name
    assert (by_folder.code, _lines(by_folder.out)) == (0, _lines(by_name.out)), by_folder
    assert (by_glob.code, _lines(by_glob.out)) == (0, _lines(by_name.out)), by_glob


def test_watch_write_on_a_run_folder_stores_in_that_run(ew, tmp_path: Path) -> None:
    write_to_store(tmp_path, "a", kind="fast_collapse", seed=0, n_steps=60)
    r = ew("watch", "--once", "--write", tmp_path / "run=a")
    assert r.code == 0, r
    from entropy_watch.store import Store

    stored = Store(tmp_path).sql("SELECT count(*) AS n FROM alerts WHERE run = 'a'").column("n").to_pylist()
    assert stored[0] > 0


def test_run_folders_of_two_stores_are_a_usage_error(ew, tmp_path: Path) -> None:
    write_to_store(tmp_path / "s1", "a", kind="healthy", seed=0, n_steps=30)
    write_to_store(tmp_path / "s2", "b", kind="healthy", seed=0, n_steps=30)
    r = ew("watch", "--once", tmp_path / "s1" / "run=a", tmp_path / "s2" / "run=b")
    assert r.code == 2 and "several" in r.err, r
