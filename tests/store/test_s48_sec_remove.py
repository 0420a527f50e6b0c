"""``entropy-watch rm`` deletes the hidden ``.removing-*`` folders that killed ``rm`` runs left (``clean_leftovers``).
A shared store's root is writable by every user of it: a ``.removing-x`` that is a link (planted, or a stray) made
every ``rm`` fail ("Cannot call rmtree on a symbolic link"), so no run could be deleted. A link is never followed nor
a reason to fail; a real leftover is still deleted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entropy_watch.store import RunWriter, Store
from entropy_watch.store.remove import clean_leftovers

from ..cli_run import run_cli


def _run(root: Path, name: str) -> None:
    w = RunWriter(root, name)
    w.write("scalars", {"step": [0, 1], "name": ["entropy/mean"] * 2, "value": [1.0, 0.9]})
    w.close()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_rm_works_with_a_link_named_like_a_leftover_and_leaves_its_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    _run(root, "a")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep")
    (root / ".removing-planted").symlink_to(precious, target_is_directory=True)
    (root / ".removing-123-456" / "run=old").mkdir(parents=True)  # a killed rm's real leftover
    ran = run_cli(capsys, "--store", root, "rm", "a", "--yes")
    assert ran.code == 0, ran.err
    assert [r.name for r in Store(root).runs()] == []
    assert (precious / "data.txt").read_text() == "keep"
    assert not (root / ".removing-123-456").exists()


def test_clean_leftovers_goes_on_past_one_it_cannot_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (".removing-1-1", ".removing-2-2"):
        (tmp_path / name / "run=x").mkdir(parents=True)
    real = __import__("shutil").rmtree

    def refuse_first(path: object, *args: object, **kwargs: object) -> None:
        if str(path).endswith(".removing-1-1"):
            raise PermissionError(13, "Permission denied", str(path))  # another user's files
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("entropy_watch.store.remove.shutil.rmtree", refuse_first)
    assert clean_leftovers(tmp_path) == 1
    assert (tmp_path / ".removing-1-1").exists() and not (tmp_path / ".removing-2-2").exists()
