"""One store, two versions at once: the previous release (commit ``2b03607``, built from git) and this one writing,
compacting, reading and cataloguing the same live run, and each killed -9 mid-way.

What must hold whatever the mix: every row written is read exactly once by both versions (compared with what was
written), and neither side meets an error. The new compaction merges its own small parts (more than
``MAX_SMALL_PARTS``), which the previous release never did: its readers, its compactor (which then deletes the merged
parts as covered) and its catalog must read those parts like any other.
"""

from __future__ import annotations

import importlib
import json
import random
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, compact, write_catalog

from .test_s48_mixed_versions_kit import NEW_TREE, Side

compact_module = importlib.import_module("entropy_watch.store.compact")
ROWS = 7


def _counts(root: Path) -> dict[str, object]:
    st = Store(root)
    got = st.sql("SELECT run, count(*) AS n FROM scalars GROUP BY run").to_pylist()
    return {"runs": sorted([i.name, i.state] for i in st.runs()), "rows": {r["run"]: r["n"] for r in got}}


def _parts(root: Path, run: str) -> list[Path]:
    return sorted((root / f"run={run}" / "table=scalars" / "rank=0").glob("part-*.parquet"))


def _write(w: RunWriter, segs: int) -> int:
    for _ in range(segs):
        seq = w.next_seq("scalars")
        w.write("scalars", {"step": np.full(ROWS, seq), "name": ["m"] * ROWS, "value": np.arange(ROWS, dtype=float)})
    return segs * ROWS


def test_old_trainer_new_cron_merging_parts_every_reader_counts_each_row_once(old: Side, tmp_path: Path) -> None:
    """An old trainer's live run, compacted by a new cron every round: the new compaction merges its small parts;
    the old and new readers read every row once, then an old compactor (its cron not yet upgraded) and an old
    ``--final`` run over those merged parts and lose nothing."""
    root = str(tmp_path / "ew_runs")
    written = 0
    rounds = compact_module.MAX_SMALL_PARTS + 3
    for _ in range(rounds):
        written += old.do("write", root=root, run="live", segs=2, rows=ROWS)
        compact(root, "live", min_age_s=0.0)
        assert _counts(Path(root))["rows"] == {"live": written}
    parts = _parts(Path(root), "live")
    assert len(parts) <= compact_module.MAX_SMALL_PARTS + 1 < rounds  # the new cron merged its own parts
    for reader in (old.do("count", root=root), _counts(Path(root))):
        assert reader["rows"] == {"live": written}
        assert reader["runs"] == [["live", "running"]]
    written += old.do("write", root=root, run="live", segs=3, rows=ROWS)
    old.do("compact", root=root)  # the old cron: merges the new segments beside the merged parts
    assert old.do("count", root=root)["rows"] == _counts(Path(root))["rows"] == {"live": written}
    written += old.do("write", root=root, run="live", segs=1, rows=ROWS, close=True)
    old.do("compact", root=root, final=True)
    assert len(_parts(Path(root), "live")) == 1
    for reader in (old.do("count", root=root), _counts(Path(root))):
        assert reader == {"runs": [["live", "finished"]], "rows": {"live": written}}


def test_new_trainer_old_and_new_crons_alternating(old: Side, tmp_path: Path) -> None:
    """A new trainer's live run compacted by an old and a new cron in turn (two hosts, one upgraded): parts written
    by each, merged by the new one, then the old ``--final``; both readers read each row once throughout."""
    root = tmp_path / "ew_runs"
    w = RunWriter(root, "live", rank=0)
    written = 0
    for i in range(compact_module.MAX_SMALL_PARTS + 4):
        written += _write(w, 2)
        if i % 2:
            old.do("compact", root=str(root))
        else:
            compact(root, min_age_s=0.0)
        assert old.do("count", root=str(root))["rows"] == _counts(root)["rows"] == {"live": written}
    assert len(_parts(root, "live")) <= compact_module.MAX_SMALL_PARTS + 1
    written += _write(w, 1)
    w.close()
    old.do("compact", root=str(root), final=True)
    for reader in (old.do("count", root=str(root)), _counts(root)):
        assert reader == {"runs": [["live", "finished"]], "rows": {"live": written}}


def test_catalog_written_by_one_version_is_read_by_the_other(old: Side, tmp_path: Path) -> None:
    """``_catalog.duckdb`` from an old ``compact`` answers the new side's queries (and the views see rows written
    after it), one written by the new side answers the old side's, over parts the new compaction merged."""
    root = tmp_path / "ew_runs"
    w = RunWriter(root, "new", rank=0)
    written = {"new": 0, "old": 0}
    for _ in range(compact_module.MAX_SMALL_PARTS + 2):
        written["new"] += _write(w, 1)
        compact(root, min_age_s=0.0)
    written["old"] += old.do("write", root=str(root), run="old", segs=3, rows=ROWS, close=True)
    old.do("catalog", root=str(root))
    written["new"] += _write(w, 2)  # after the catalog: its views re-expand their globs
    with duckdb.connect(str(root / "_catalog.duckdb"), read_only=True) as con:
        assert dict(con.sql("SELECT run, count(*) FROM scalars GROUP BY run").fetchall()) == written
    w.close()
    write_catalog(root)
    written["old"] += old.do("write", root=str(root), run="old", segs=1, rows=ROWS, close=True)
    assert old.do("catread", root=str(root)) == written == _counts(root)["rows"]
    old.do("catalog", root=str(root))  # the old one replaces the new one's catalog (views with comments)
    with duckdb.connect(str(root / "_catalog.duckdb"), read_only=True) as con:
        assert dict(con.sql("SELECT run, count(*) FROM scalars GROUP BY run").fetchall()) == written


@pytest.mark.parametrize("trainer", ["old", "new"])
def test_killed_mid_way_trainer_and_cron_of_either_version(
    old: Side, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, trainer: str
) -> None:
    """kill -9 of a trainer mid-write and of a compactor mid-pass, of one version each: afterwards both versions'
    compactors and readers run without error and read exactly the rows of every segment published (each acked one,
    and at most the one being written when the kill came)."""
    root = str(tmp_path / "ew_runs")
    old_dir = old.tree
    writer = Side(old_dir if trainer == "old" else NEW_TREE, trainer)
    cron = Side(NEW_TREE if trainer == "old" else old_dir, "cron")
    try:
        writer.send("write", root=root, run="live", segs=10_000, rows=ROWS, acked=True, delay=0.002)
        cron.send("compact", root=root, loop=10_000)
        rng = random.Random(trainer)
        acks = 0
        while acks < 30:
            acks += "ack" in writer.reply()
        time.sleep(rng.uniform(0.0, 0.05))
        acks += sum("ack" in json.loads(line) for line in writer.kill())
        time.sleep(rng.uniform(0.0, 0.05))
        cron.kill()
    finally:
        writer.close()
        cron.close()
    old.do("compact", root=root)
    compact(root, min_age_s=0.0)
    for reader in (old.do("count", root=root)["rows"], _counts(Path(root))["rows"]):
        assert reader["live"] in (acks * ROWS, (acks + 1) * ROWS), (reader, acks)
    got = _counts(Path(root))["rows"]["live"]
    old.do("compact", root=root, final=True)
    assert old.do("count", root=root)["rows"] == _counts(Path(root))["rows"] == {"live": got}
    assert not list(Path(root).rglob(".part-*.tmp"))  # a killed compactor's temporary: cleaned by the next one
