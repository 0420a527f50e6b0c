"""``hist_matrix`` / ``heatmap`` read the same counts as the store's rules say, computed here in plain Python from the
raw rows (``Store.table``), on a run with two ranks, a step logged twice and a resume; null and huge counts read as
SQL's ``sum`` reads them; and reading the matrix costs about what reading its rows does (it cost 7x, 2.3 s at 100k
steps: the sums left DuckDB as Arrow decimals, one Python ``Decimal`` per cell, after a ``GROUP BY`` of every row)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter, Store, TailReader
from entropy_watch.store.reads import ALL_STEPS, Heatmap

RUN = "h"
NB = 5
RESUME = (20, 2000.0)  # step, wall time
ID = 1000  # a row's count is write id * ID + a payload below ID; write id = session * 100 + write in session


def _session(root: Path, rank: int) -> RunWriter:
    time.sleep(0.002)  # sessions are named by their start (ns): keep the order of creation
    return RunWriter(root, RUN, rank=rank)


def _write_hist(w: RunWriter, session: int, k: int, steps: range, rng: np.random.Generator) -> None:
    """One write of ``steps``: 1-4 random bins each (some outside ``NB``: dropped by the reads), counts coding the
    write."""
    rows = [(s, b) for s in steps for b in rng.choice(NB + 2, size=int(rng.integers(1, 5)), replace=False)]
    counts = [(session * 100 + k) * ID + int(rng.integers(0, ID)) for _ in rows]
    w.write("hist", {"step": [s for s, _ in rows], "bin": [int(b) for _, b in rows], "count": counts})


def _scalars(w: RunWriter, steps: range, wall0: float) -> None:
    w.write("scalars", {"step": list(steps), "name": [M.ENTROPY_MEAN] * len(steps), "value": [1.0] * len(steps),
                        "wall_time": [wall0 + s for s in steps]})  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ranks 0 and 1 (sessions 1, 2) log steps 0-29 in two writes each, rank 0 logs steps 5-9 again in a third (its
    latest write of them); then both resume at step 20 (sessions 3, 4) and log 20-24, rank 1 twice."""
    root = tmp_path_factory.mktemp("hist") / "store"
    rng = np.random.default_rng(7)
    first = {1: _session(root, 0), 2: _session(root, 1)}
    for i, w in first.items():
        _scalars(w, range(30), 1000.0)
        _write_hist(w, i, 0, range(15), rng)
        _write_hist(w, i, 1, range(15, 30), rng)
    _write_hist(first[1], 1, 2, range(5, 10), rng)
    for w in first.values():
        w.close("failed")
    resumed = {3: _session(root, 0), 4: _session(root, 1)}
    for i, w in resumed.items():
        w.write("events", {"step": [RESUME[0]], "kind": ["resume"], "payload": ["{}"], "wall_time": [RESUME[1]]})
        _scalars(w, range(RESUME[0], 25), RESUME[1] + 1)
        _write_hist(w, i, 0, range(RESUME[0], 25), rng)
    _write_hist(resumed[4], 4, 1, range(22, 24), rng)
    for w in resumed.values():
        w.close()
    return root


def _reference(raw: pa.Table, window: tuple[int, int], max_cols: int) -> Heatmap:
    """The rules over the raw rows: rows of sessions 1-2 at the resume's step or later are gone; per (rank, step) the
    rows of its latest write; ranks add; bins outside ``NB`` dropped; columns of ``w`` steps from the first step."""
    rows = [
        (r["rank"], r["step"], r["bin"], r["count"])
        for r in raw.to_pylist()
        if window[0] <= r["step"] <= window[1] and 0 <= r["bin"] < NB
        and not (r["count"] // ID // 100 in (1, 2) and r["step"] >= RESUME[0])
    ]  # fmt: skip
    latest: dict[tuple[int, int], int] = defaultdict(int)
    for rank, step, _, count in rows:
        latest[rank, step] = max(latest[rank, step], count // ID)
    kept = [(step, b, count) for rank, step, b, count in rows if count // ID == latest[rank, step]]
    s0, s1 = min(s for s, _, _ in kept), max(s for s, _, _ in kept)
    w = 1 if max_cols <= 0 else max(1, -(-(s1 - s0 + 1) // max_cols))
    cells: dict[int, list[int]] = defaultdict(lambda: [0] * NB)
    for step, b, count in kept:
        cells[s0 + (step - s0) // w * w][b] += count
    cols = sorted(cells)
    return Heatmap(np.array(cols, dtype=np.int64), np.array([cells[c] for c in cols], dtype=np.float64), w)


CASES = [(ALL_STEPS, 0), (ALL_STEPS, 7), ((3, 21), 0), ((3, 21), 4), ((6, 6), 3), (ALL_STEPS, 1)]


def test_histograms_read_what_the_rules_say_about_the_raw_rows(root: Path) -> None:
    store = Store(root)
    raw = store.table(RUN, "hist")
    assert sorted(set(raw.column("rank").to_pylist())) == [0, 1]
    with TailReader(root) as tail:
        tail.poll()
        for reader in (store, tail):
            steps, counts = reader.hist_matrix(RUN, NB)  # type: ignore[misc]
            want = _reference(raw, ALL_STEPS, 0)
            assert steps.dtype == np.int64 and counts.dtype == np.float64
            np.testing.assert_array_equal(steps, want.steps)
            np.testing.assert_array_equal(counts, want.counts)
            for window, max_cols in CASES:
                hm, want = reader.heatmap(RUN, NB, window, max_cols), _reference(raw, window, max_cols)
                assert hm.width == want.width, (window, max_cols)
                np.testing.assert_array_equal(hm.steps, want.steps)
                np.testing.assert_array_equal(hm.counts, want.counts)
            assert reader.heatmap(RUN, NB, (100, 200)).steps.size == 0


def test_null_and_huge_counts_read_as_sql_sums_them(tmp_path: Path) -> None:
    """A cell whose every row has a null count reads NaN, nulls add nothing to the others; a sum past int64 is exact,
    then rounded once to float64 (as DuckDB's HUGEINT sum read)."""
    root = tmp_path / "s"
    big = [2**62 + 1, 2**62 + 3]
    for rank in (0, 1):
        w = RunWriter(root, RUN, rank=rank)
        w.write("hist", {"step": [3, 3, 3, 4], "bin": [0, 1, 2, 0], "count": [None, [None, 4][rank], big[rank], 1]})
        w.close()
    for reader in (Store(root), TailReader(root)):
        if isinstance(reader, TailReader):
            reader.poll()
        steps, counts = reader.hist_matrix(RUN, 3)  # type: ignore[misc]
        assert steps.tolist() == [3, 4]
        np.testing.assert_array_equal(counts, [[np.nan, 4.0, float(sum(big))], [2.0, 0.0, 0.0]])


def test_series_many_reads_each_name_as_series_does(root: Path) -> None:
    """Names in any order, repeated or never logged: each logged one as :meth:`series` reads it (the resume applied)."""
    store = Store(root)
    names = ["nope", M.ENTROPY_MEAN, "nope", M.ENTROPY_MEAN]
    got = store.series_many(RUN, names)
    assert list(got) == [M.ENTROPY_MEAN]
    steps, values = store.series(RUN, M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(25))
    np.testing.assert_array_equal(got[M.ENTROPY_MEAN][0], steps)
    np.testing.assert_array_equal(got[M.ENTROPY_MEAN][1], values)
    assert store.series_many(RUN, ["nope"]) == {} and store.series_many(RUN, []) == {}
