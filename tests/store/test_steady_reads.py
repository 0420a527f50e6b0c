"""Reads of one run while ``import --replace`` swaps it: each read sees one version (``read_steady``), and the swap
leaves no moment without the run (``atomic.exchange``). The audit's loop of replacements tore 11 of 50 ``show`` reads:
the old run's last step beside the new run's verdict."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from entropy_watch import metrics as M
from entropy_watch.importers.store_import import import_log
from entropy_watch.store import Store, read_steady
from entropy_watch.store.atomic import exchange


def _log(path: Path, n: int) -> Path:
    path.write_text("step,entropy\n" + "".join(f"{s},{1 - s / 100}\n" for s in range(n)))
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_exchange_swaps_two_folders_in_one_step(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert exchange(a, b)
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"
    assert not exchange(a, tmp_path / "missing")  # both must exist: nothing moved
    assert (a / "x").read_text() == "b"


def test_a_read_spanning_a_replacement_is_done_again(tmp_path: Path) -> None:
    root = tmp_path / "store"
    import_log(root, _log(tmp_path / "short.csv", 10), run="r")
    calls = []

    def read(store: Store) -> tuple[int | None, int]:
        last = store.run_info("r").last_step
        if not calls:  # the replacement lands between this read's two queries
            import_log(root, _log(tmp_path / "long.csv", 30), run="r", replace=True)
        calls.append(last)
        return last, int(store.series("r", M.ENTROPY_MEAN)[0][-1])

    assert read_steady(root, "r", read) == (29, 29)  # the new run in both, not (9, 29)
    assert len(calls) == 2
    assert not [p for p in root.iterdir() if p.name.startswith((".replaced-", ".staging-"))]
