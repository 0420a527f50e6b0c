"""A step logged twice by one writer reads as one write on every reader: its scalars (also when both rows sit in one
segment), its histogram and its token sample come from the latest write within a rank, ranks' histograms add up;
before and after compaction, and in ``ls`` after a kill."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter, Store, TailReader
from entropy_watch.store.compact import compact

RUN = "twice"
NB = 6


def _hist(w: RunWriter, step: int, counts: list[int]) -> None:
    w.write("hist", {"step": [step] * len(counts), "bin": list(range(len(counts))), "count": counts})


def _tokens(w: RunWriter, step: int, entropies: list[float]) -> None:
    n = len(entropies)
    w.write("tokens", {"step": [step] * n, "seq": [0] * n, "pos": list(range(n)), "entropy": entropies})


def test_a_steps_histogram_and_tokens_are_its_latest_write_per_rank(tmp_path: Path) -> None:
    root = tmp_path / "s"
    w0, w1 = RunWriter(root, RUN, rank=0), RunWriter(root, RUN, rank=1)
    first = {0: [1, 2, 0, 0, 0, 0], 1: [0, 4, 4, 0, 0, 0], 2: [0, 0, 1, 1, 0, 0]}
    for step, counts in first.items():
        _hist(w0, step, counts)
    _hist(w0, 1, [0, 0, 0, 3, 3, 0])  # step 1 logged again by the same writer: this write is kept
    _hist(w1, 1, [5, 0, 0, 0, 0, 0])  # another rank's tokens of step 1: added
    _tokens(w0, 1, [0.1, 0.2])
    _tokens(w0, 1, [0.7, 0.8, 0.9])
    want = np.array([first[0], [5, 0, 0, 3, 3, 0], first[2]], dtype=float)

    def check(reader: object) -> None:
        steps, counts = reader.hist_matrix(RUN, NB)  # type: ignore[attr-defined]
        assert steps.tolist() == [0, 1, 2]
        np.testing.assert_array_equal(counts, want)
        hm = reader.heatmap(RUN, NB, max_cols=1)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(hm.counts, want.sum(0, keepdims=True))
        tok = reader.top_tokens(RUN, spread=False, limit=10)  # type: ignore[attr-defined]
        assert sorted(tok.column("entropy").to_pylist()) == [0.7, 0.8, 0.9]

    check(Store(root))
    with TailReader(root) as tail:
        tail.poll()
        check(tail)
        compact(root, RUN, final=True, min_age_s=0)
        check(Store(root))
        tail.poll()
        check(tail)


def test_a_name_logged_twice_in_one_segment_reads_once_everywhere(tmp_path: Path) -> None:
    root = tmp_path / "s"
    w = RunWriter(root, RUN)
    vals, walls = [1.0, 0.9, 0.5, 0.8], [10.0, 11.0, 12.0, 13.0]
    w.write("scalars", {"step": [0, 1, 1, 2], "name": [M.ENTROPY_MEAN] * 4, "value": vals, "wall_time": walls})
    for reader in (Store(root), TailReader(root)):
        if isinstance(reader, TailReader):
            reader.poll()
        steps, values = reader.series(RUN, M.ENTROPY_MEAN)
        assert steps.tolist() == [0, 1, 2] and values.tolist() == [1.0, 0.5, 0.8]  # the later write of step 1
        many = reader.series_many(RUN, [M.ENTROPY_MEAN])[M.ENTROPY_MEAN]
        assert many[0].tolist() == steps.tolist() and many[1].tolist() == values.tolist()
        assert reader.downsampled(RUN, [M.ENTROPY_MEAN])[M.ENTROPY_MEAN].mean.tolist() == values.tolist()


def test_ls_of_a_killed_writer_lists_the_row_show_reads(tmp_path: Path) -> None:
    root = tmp_path / "s"
    w = RunWriter(root, "stall", heartbeat_interval_s=1e9)  # killed: no heartbeat after its segment
    vals, walls = [1.0, 0.9, 0.5], [10.0, 11.0, 12.0]
    w.write("scalars", {"step": [4, 5, 5], "name": [M.ENTROPY_MEAN] * 3, "value": vals, "wall_time": walls})
    store = Store(root)
    assert store.run_info("stall").state == "running"
    assert store.series("stall", M.ENTROPY_MEAN)[1].tolist() == [1.0, 0.5]
    assert store.run_info("stall").latest[M.ENTROPY_MEAN] == (0.5, 5)
