"""The token explorer's reads (``RunReader.top_tokens``): "spread over steps" gives the ``limit`` tokens asked for,
shared evenly over the steps (each step's highest-entropy ones), not one per step; ties (ranks of one step with
equal entropy) come in one order every time, on both readers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.store import RunWriter, Store, TailReader

RUN = "forks"


def _write(root: Path, per_step: dict[int, int], ranks: int = 1, seed: int = 0, ties: bool = False) -> None:
    """``per_step[s]`` sampled tokens at step ``s`` on each of ``ranks`` ranks (random entropies, or all 1.0)."""
    rng = np.random.default_rng(seed)
    for rank in range(ranks):
        w = RunWriter(root, RUN, rank=rank)
        steps = [s for s, n in per_step.items() for _ in range(n)]
        pos = [p for n in per_step.values() for p in range(n)]
        ent = [1.0] * len(steps) if ties else rng.uniform(0.0, 5.0, len(steps)).round(6).tolist()
        w.write(
            "tokens",
            {
                "step": steps,
                "seq": [0] * len(steps),
                "pos": pos,
                "token_id": list(range(len(steps))),
                "token_text": [f"r{rank}t{i}" for i in range(len(steps))],
                "entropy": ent,
            },
        )
        w.close()


def _check_spread(rows: list[dict], every: list[dict], limit: int) -> None:
    """Invariants of a spread read: ``min(limit, all)`` rows; each step's are its highest-entropy ones; the steps'
    shares differ by at most one unless a step gave all it had; in step order, highest entropy first."""
    assert len(rows) == min(limit, len(every))
    got = Counter(r["step"] for r in rows)
    have = Counter(r["step"] for r in every)
    for step, n in got.items():
        best = sorted((r["entropy"] for r in every if r["step"] == step), reverse=True)[:n]
        assert sorted((r["entropy"] for r in rows if r["step"] == step), reverse=True) == best
    short = [got.get(s, 0) for s in have if got.get(s, 0) < have[s]]  # steps that had more to give
    if short:
        assert max(got.values()) <= min(short) + 1, (got, have)
    keys = [(r["step"], -r["entropy"]) for r in rows]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("per_step", "limit"),
    [
        ({0: 10, 10: 10, 20: 10}, 25),  # few steps: 25 asked, 25 shown (HEAD showed 3)
        ({0: 10, 10: 10, 20: 10}, 5),
        ({0: 2, 10: 30, 20: 1, 30: 8}, 25),  # a step that runs out leaves its share to the others
        ({s: 4 for s in range(0, 1000, 10)}, 25),  # more steps than tokens asked: one from each part
        ({s: 4 for s in range(0, 1000, 10)}, 500),
        ({0: 3}, 500),
    ],
)
def test_spread_gives_the_tokens_asked_for_shared_over_the_steps(
    tmp_path: Path, per_step: dict[int, int], limit: int
) -> None:
    root = tmp_path / "store"
    _write(root, per_step)
    reader = Store(root)
    every = reader.top_tokens(RUN, limit=10_000, spread=False).to_pylist()
    assert len(every) == sum(per_step.values())
    rows = reader.top_tokens(RUN, limit=limit).to_pylist()
    _check_spread(rows, every, limit)
    if len(per_step) >= limit:  # one token from each of `limit` equal parts of the steps
        assert len({r["step"] for r in rows}) == limit


def test_spread_of_few_steps_is_even_and_follows_the_filters(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _write(root, {0: 10, 10: 10, 20: 10})
    reader = Store(root)
    rows = reader.top_tokens(RUN, limit=25).to_pylist()
    assert sorted(Counter(r["step"] for r in rows).values()) == [8, 8, 9], "25 of 3 steps: 8 or 9 of each"
    window = reader.top_tokens(RUN, (5, 25), limit=25).to_pylist()
    assert Counter(r["step"] for r in window) == {10: 10, 20: 10}, "every token of the two steps in the range"


def test_ties_across_many_ranks_read_the_same_on_both_readers(tmp_path: Path) -> None:
    """16 ranks with equal entropies: which tokens a limit keeps, and their order, go by step, rank, seq, pos."""
    root = tmp_path / "store"
    _write(root, {0: 3, 10: 3}, ranks=16, ties=True)
    tail = TailReader(root)
    tail.poll()
    for spread in (True, False):
        a = Store(root).top_tokens(RUN, limit=20, spread=spread).to_pylist()
        b = tail.top_tokens(RUN, limit=20, spread=spread).to_pylist()
        assert a == b
        keys = [(r["step"], r["rank"], r["seq"], r["pos"]) for r in a]
        assert keys == sorted(keys), "equal entropy: by step, rank, seq, pos"
    top = Store(root).top_tokens(RUN, limit=5, spread=False).to_pylist()
    assert [(r["step"], r["rank"], r["pos"]) for r in top] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1)]
