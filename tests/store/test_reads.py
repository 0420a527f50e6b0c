"""The one read interface: ``Store`` (one-shot) and ``TailReader`` (incremental) answer every query identically, and
both apply the one de-duplication rule (checked against a reference written out here in Python)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter, Store, TailReader
from entropy_watch.store.reads import ALL_STEPS, RunReader

RUN = "mixed"
N_BINS = 8


def _reference_latest(rows: list[tuple[int, int, float, float, str, int]]) -> dict[int, float]:
    """The rule in plain Python: per step, lowest rank, then latest wall_time, writer, segment."""
    best: dict[int, tuple] = {}
    for step, rank, wall, value, writer, seq in rows:
        key = (-rank, wall, writer, seq)
        if step not in best or key > best[step][0]:
            best[step] = (key, value)
    return {s: v for s, (_, v) in sorted(best.items())}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, float]]:
    """Two ranks, a restart that re-logs steps 40–59 later, a histogram, events, alerts and token rows (some
    without text, some without ids)."""
    root = tmp_path_factory.mktemp("reads") / "store"
    rows: list[tuple[int, int, float, float, str, int]] = []
    w0 = RunWriter(root, RUN, rank=0)
    w0.update_run_meta(hist_edges=list(np.linspace(0.0, 2.0, N_BINS)))
    w1 = RunWriter(root, RUN, rank=1)
    for w, rank in ((w0, 0), (w1, 1)):
        for lo in range(0, 60, 20):
            steps = list(range(lo, lo + 20))
            vals = [float(1.0 - 0.01 * s + 0.1 * rank) for s in steps]
            walls = [1000.0 + s for s in steps]
            w.write("scalars", {"step": steps, "name": [M.ENTROPY_MEAN] * 20, "value": vals, "wall_time": walls})
            rows += [(s, rank, t, v, w.session, 0) for s, t, v in zip(steps, walls, vals, strict=True)]
    w0.write(
        "scalars",
        {
            "step": list(range(60)),
            "name": [M.REWARD_MEAN] * 60,
            "value": [0.01 * s for s in range(60)],
            "wall_time": [1000.0 + s for s in range(60)],
        },
    )
    w0.write("hist", {"step": [s for s in range(60) for _ in range(2)], "bin": [1, 5] * 60, "count": [3, 1] * 60})
    w1.write("hist", {"step": list(range(60)), "bin": [5] * 60, "count": [2] * 60})
    # written before rank 1's last row (1059): no session ended before it, so it replaces nothing (see test_resume)
    w0.write("events", {"step": [40], "kind": ["resume"], "payload": ["{}"], "wall_time": [1040.0]})
    w0.write(
        "alerts",
        {
            "step": [10],
            "detector": ["d"],
            "kind": ["collapse"],
            "severity": ["warning"],
            "message": ["m"],
            "evidence": ["{}"],
        },
    )
    w0.write(
        "tokens",
        {
            "step": [0, 0, 0, 30, 30, 50],
            "seq": [0] * 6,
            "pos": [0, 1, 2, 0, 1, 0],
            "token_id": [5, 6, 7, 8, 9, -1],
            "token_text": ["a", "", None, "b", "c", None],
            "entropy": [3.0, 2.5, 2.0, 1.0, 0.5, 0.2],
        },
    )
    w0.close()
    w1.close()
    restart = RunWriter(root, RUN, rank=0)  # a resumed trainer re-logs steps 40..59 later with new values
    steps = list(range(40, 60))
    walls = [5000.0 + s for s in steps]
    restart.write("scalars", {"step": steps, "name": [M.ENTROPY_MEAN] * 20, "value": [0.25] * 20, "wall_time": walls})
    rows += [(s, 0, t, 0.25, restart.session, 0) for s, t in zip(steps, walls, strict=True)]
    restart.close()
    return root, _reference_latest(rows)


def _readers(root: Path) -> list[RunReader]:
    tail = TailReader(root)
    tail.poll()
    return [Store(root), tail]


def test_series_follow_the_one_rule_on_both_readers(store: tuple[Path, dict[int, float]]) -> None:
    root, ref = store
    for reader in _readers(root):
        steps, values = reader.series(RUN, M.ENTROPY_MEAN)
        np.testing.assert_array_equal(steps, list(ref))
        np.testing.assert_allclose(values, list(ref.values()))
        many = reader.series_many(RUN, [M.ENTROPY_MEAN, M.REWARD_MEAN, "not/logged"])
        assert set(many) == {M.ENTROPY_MEAN, M.REWARD_MEAN}
        np.testing.assert_allclose(many[M.ENTROPY_MEAN][1], list(ref.values()))
        tr = reader.downsampled(RUN, [M.ENTROPY_MEAN], ALL_STEPS, max_points=20)[M.ENTROPY_MEAN]
        assert len(tr) == 20 and tr.width == 3
        np.testing.assert_allclose(tr.mean, np.asarray(list(ref.values())).reshape(20, 3).mean(1))
        r1 = reader.series(RUN, M.ENTROPY_MEAN, rank=1)[1]
        np.testing.assert_allclose(r1, [1.0 - 0.01 * s + 0.1 for s in range(60)])


def test_both_readers_answer_every_query_alike(store: tuple[Path, dict[int, float]]) -> None:
    root, _ = store
    a, b = _readers(root)
    assert a.versions() == b.versions() == {RUN: (2 * 60 + 60 + 20, 59)}
    assert a.scalar_names(RUN) == b.scalar_names(RUN) == [M.ENTROPY_MEAN, M.REWARD_MEAN]
    assert a.events(RUN) == b.events(RUN) and a.events(RUN)[0]["kind"] == "resume"
    assert a.alerts(RUN) == b.alerts(RUN) and a.alerts(RUN)[0]["severity"] == "warning"
    assert [r.name for r in a.runs()] == [r.name for r in b.runs()] == [RUN]
    assert a.run_meta(RUN) == b.run_meta(RUN)
    ha, hb = a.hist_matrix(RUN, N_BINS), b.hist_matrix(RUN, N_BINS)
    assert ha is not None and hb is not None
    np.testing.assert_array_equal(ha[1], hb[1])
    assert ha[1].shape == (60, N_BINS) and ha[1][:, 1].sum() == 180 and ha[1][:, 5].sum() == 180  # ranks summed
    hm = a.heatmap(RUN, N_BINS, ALL_STEPS, max_cols=10)
    assert hm.counts.shape == (10, N_BINS) and hm.width == 6 and hm.counts.sum() == ha[1].sum()
    for x, y in zip(
        a.paired(RUN, M.ENTROPY_MEAN, M.REWARD_MEAN), b.paired(RUN, M.ENTROPY_MEAN, M.REWARD_MEAN), strict=True
    ):
        np.testing.assert_allclose(x, y)
    np.testing.assert_allclose(a.sparklines(M.ENTROPY_MEAN, 6)[RUN], b.sparklines(M.ENTROPY_MEAN, 6)[RUN])
    da, db = a.delta(RUN, M.ENTROPY_MEAN), b.delta(RUN, M.ENTROPY_MEAN)
    assert da is not None and db is not None
    np.testing.assert_allclose(da.mean, db.mean)
    assert a.top_tokens(RUN).to_pylist() == b.top_tokens(RUN).to_pylist()


def test_tokens_spread_over_steps_and_show_ids_without_text(store: tuple[Path, dict[int, float]]) -> None:
    root, _ = store
    reader = Store(root)
    spread = reader.top_tokens(RUN, limit=25).to_pylist()
    assert [r["step"] for r in spread] == [0, 0, 0, 30, 30, 50], "25 asked, all 6 shown, in step order"
    assert [r["token"] for r in spread] == ["a", "#6", "#7", "b", "c", "?"]
    assert [r["step"] for r in reader.top_tokens(RUN, limit=3).to_pylist()] == [0, 30, 50], "one of each step"
    top = reader.top_tokens(RUN, limit=3, spread=False).to_pylist()
    assert [r["entropy"] for r in top] == [3.0, 2.5, 2.0]
    assert [r["token"] for r in top] == ["a", "#6", "#7"], "empty or missing text shows the id"
    assert top[0]["context"] == "⟦a⟧#6#7"
    assert reader.top_tokens(RUN, (20, 40)).column("step").to_pylist() == [30, 30]
    assert reader.top_tokens(RUN, text="B").column("token").to_pylist() == ["b"]
