"""The synthetic generator: seeded, labelled with true onset and floor, and written to a store."""

from __future__ import annotations

import numpy as np
import pytest

from entropy_watch.synthetic import COLLAPSE_KINDS, KINDS, generate, write_to_store


def test_seeded_and_labelled() -> None:
    a, b = generate("collapse_exp", 7), generate("collapse_exp", 7)
    assert np.array_equal(a.entropy, b.entropy) and not np.array_equal(a.entropy, generate("collapse_exp", 8).entropy)
    for kind in KINDS:
        r = generate(kind, 0, 300)
        assert r.steps.shape == r.entropy.shape == r.reward.shape == (300,)
        assert np.isfinite(r.entropy).all() and (r.entropy >= 0).all()
        assert ((r.reward >= 0) & (r.reward <= 1)).all()
    for kind in COLLAPSE_KINDS:
        r = generate(kind, 1, 600)
        assert r.label == "collapse" and r.onset_step is not None
        assert r.floor_step is None or r.floor_step > r.onset_step
        assert r.clean[-1] < 0.3 * r.clean[0]
    assert generate("healthy", 0).floor_step is None and generate("explosion", 0).label == "explosion"
    assert generate("lr_kink", 0).events and generate("benign", 0).reward[-50:].mean() > 0.95


def test_bad_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown synthetic kind"):
        generate("nope")


def test_write_to_store_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from entropy_watch.analysis import RunSeries
    from entropy_watch.store import Store

    sr = write_to_store(tmp_path, "demo", "lr_kink", seed=3, n_steps=200)
    s = RunSeries.from_reader(Store(tmp_path), "demo")
    assert np.allclose(s.entropy, sr.entropy) and s.hist is not None and s.hist[1].shape[0] == 200
    assert ("start" in {k for _, k in s.events}) and s.reset_steps() == [sr.params["kink_step"]]
    assert s.meta["planned_steps"] == 200 and "reward/mean" in s.scalars
