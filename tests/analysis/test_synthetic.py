"""The synthetic generator: seeded, labelled with true onset and floor, noise fitted to real logs, stored."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.synthetic import (
    ALIASES,
    COLLAPSE_KINDS,
    FLOOR,
    KINDS,
    LABELS,
    SUITE_KINDS,
    NoiseFit,
    fit_noise,
    generate,
    write_to_store,
)

BEFORE_DECELERATING = "cd80b2f42b5c1584cb26a0574345e465873a95c8"  # synthetic.py's last change before the kind came


def test_seeded_and_labelled_at_every_density() -> None:
    a, b = generate("fast_collapse", 7), generate("fast_collapse", 7)
    assert np.array_equal(a.entropy, b.entropy) and not np.array_equal(a.entropy, generate("fast_collapse", 8).entropy)
    for n in (40, 100, 400):
        for kind in KINDS:
            r = generate(kind, 0, n)
            assert r.label == LABELS[kind] and r.steps.shape == r.entropy.shape == r.reward.shape == (n,)
            assert np.isfinite(r.entropy).all() and (r.entropy >= 0).all()
            assert ((r.reward >= 0) & (r.reward <= 1)).all()
    for kind in COLLAPSE_KINDS:
        r = generate(kind, 1, 400)
        assert r.label == "collapse" and r.onset_step is not None
        assert r.floor_step is None or r.floor_step > r.onset_step
        assert r.clean[-1] < 0.33 * r.clean[0]
    assert generate("fast_collapse", 2, 400).floor_step is not None
    e = generate("explosion", 0, 400)
    assert e.label == "explosion" and e.floor_step is not None and e.clean[e.floor_step] >= 3 * e.h0
    assert generate("lr_kink", 0).events and generate("solved", 0).reward[-50:].mean() > 0.97
    nu = generate("near_uniform", 0, 100)
    assert nu.vocab_size and nu.h0 > 0.8 * np.log(nu.vocab_size)
    assert generate("healthy", 0).vocab_size is None  # a CSV-like run states no vocabulary


def test_old_names_are_aliases_with_quiet_noise() -> None:
    r = generate("collapse_exp", 1, 300)
    assert r.kind == ALIASES["collapse_exp"] == "fast_collapse" and r.params["noise_source"] == "demo"


def test_noise_fit_recovers_ar1_parameters() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros(4000)
    for t in range(1, x.size):
        x[t] = 0.5 * x[t - 1] + rng.normal(0, 0.2 * np.sqrt(1 - 0.25))
    trend = np.log(0.4) - np.arange(4000) / 8000  # a slow decline does not count as noise
    fit = fit_noise(np.exp(trend + x))
    assert fit is not None and abs(fit.sigma - 0.2) < 0.03 and abs(fit.phi - 0.5) < 0.08
    run = generate("healthy", 3, 4000, noise=NoiseFit(0.2, 0.5, 0.0))
    again = fit_noise(run.entropy)
    assert again is not None and abs(again.sigma - 0.2) < 0.04
    assert fit_noise(np.full(10, 0.3)) is None


def test_bad_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown synthetic kind"):
        generate("nope")


def test_write_to_store_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from entropy_watch.analysis import RunSeries
    from entropy_watch.store import Store

    sr = write_to_store(tmp_path, "demo", "lr_kink", seed=3, n_steps=200)
    s = RunSeries.from_reader(Store(tmp_path), "demo")
    assert np.allclose(s.entropy, sr.entropy) and s.hist is not None and s.hist[1].shape[0] == 200
    assert ("start" in {k for _, k in s.events}) and s.change_steps() == [sr.params["kink_step"]]
    assert s.meta["planned_steps"] == 200 and "reward/mean" in s.scalars


def test_near_uniform_noise_vanishes_at_ln_v() -> None:
    # the entropy over V tokens cannot pass ln V and a near-uniform policy's batches all read close to it: the noise
    # acts on logit(H / ln V), the fitted log-noise far from ln V (none of the first points pinned at ln V by a clip)
    noise = NoiseFit(sigma=0.4, phi=0.0, outliers=0.0, source="test", n_points=400)
    for seed in range(5):
        r = generate("near_uniform", seed, 400, noise=noise)
        ln_v = float(np.log(r.vocab_size))
        u = r.clean / ln_v
        assert np.all(r.entropy < ln_v) and np.all(r.entropy > 0)
        dev = np.log(r.entropy / r.clean)
        assert np.std(dev[:20]) < 0.5 * noise.sigma  # near ln V (u 0.85-0.98): (1 - u)·σ, not σ
        z = np.log(r.entropy / (ln_v - r.entropy)) - np.log(u / (1 - u))  # the noise drawn, in logit units
        assert 0.6 * noise.sigma < np.std(z) < 1.4 * noise.sigma


def test_decelerating_collapse_slows_down_and_crosses_the_floor() -> None:
    shapes = set()
    for n in (40, 100, 400):
        for seed in range(20):
            r = generate("decelerating_collapse", seed, n)
            again = generate("decelerating_collapse", seed, n)
            assert np.array_equal(r.entropy, again.entropy) and np.array_equal(r.reward, again.reward)
            assert r.label == "collapse" and r.onset_step is not None and 3 <= r.onset_step <= 0.2 * n
            assert r.floor_step is not None and 0.4 * n <= r.floor_step <= 0.95 * n + 1
            assert r.clean[r.floor_step] <= FLOOR(r.h0) < r.clean[r.floor_step - 1]
            seg = np.arange(r.onset_step, r.floor_step + 1)
            assert np.all(np.diff(r.clean[seg]) < 0)  # falling all the way ...
            half = seg.size // 2  # ... ever more slowly: the log-slope of the second half a fraction of the first's
            s1, s2 = (np.polyfit(x, np.log(r.clean[x]), 1)[0] for x in (seg[:half], seg[half:]))
            assert s1 < 0 and 0.15 < s2 / s1 < 0.7
            assert np.ptp(r.reward[r.onset_step :] - np.mean(r.reward[r.onset_step :])) < 0.3  # a plateau and noise
            shapes.add(r.params["shape"])
    assert shapes == {"power", "asymptote"}
    assert "decelerating_collapse" not in SUITE_KINDS and KINDS[-1] == "decelerating_collapse"


def _module_at(commit: str):  # type: ignore[no-untyped-def]
    """entropy_watch/synthetic.py as it was at ``commit``, imported under another name (None without git or the
    commit: a shallow clone, an exported tree)."""
    root = Path(__file__).resolve().parents[2]
    try:
        src = subprocess.run(["git", "-C", str(root), "show", f"{commit}:entropy_watch/synthetic.py"],
                             capture_output=True, text=True, check=True, timeout=30).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    spec = importlib.util.spec_from_loader("synthetic_before", loader=None)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    try:
        exec(compile(src, f"{commit[:7]}:synthetic.py", "exec"), mod.__dict__)
    finally:
        del sys.modules[spec.name]
    return mod


def test_adding_a_kind_leaves_every_earlier_kind_unchanged() -> None:
    # the rng is seeded by KINDS.index(kind): a kind appended at the end must not move any earlier kind's runs (the
    # benchmarks' held-out numbers are those runs)
    before = _module_at(BEFORE_DECELERATING)
    if before is None:
        pytest.skip(f"git or commit {BEFORE_DECELERATING[:7]} not available")
    assert KINDS[: len(before.KINDS)] == before.KINDS
    for kind in before.KINDS:
        for n in (40, 100, 400):
            for seed in (0, 1, 50_000):
                a, b = before.generate(kind, seed, n), generate(kind, seed, n)
                for name in ("steps", "entropy", "reward", "clean"):
                    assert np.array_equal(getattr(a, name), getattr(b, name)), (kind, n, seed, name)
                assert (a.onset_step, a.floor_step, a.events, a.params) == (b.onset_step, b.floor_step, b.events,
                                                                               b.params)  # fmt: skip
