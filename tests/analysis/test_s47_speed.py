"""The analysis made faster without changing an answer (session 47, p13): each faster computation against the naive
one it replaced, bit for bit — ``trend.median`` against ``np.median``, :func:`guards.reward_fell` with the running
reward range against its pass over every earlier point, a whole analysis with the fast paths against one with the
old computations patched back — and numpy's BLAS on one thread during an analysis, restored after it."""

from __future__ import annotations

import dataclasses
import json
import threading
import warnings

import numpy as np
import pytest

from entropy_watch.analysis import Analyzer, DetectorConfig, analyze, blas
from entropy_watch.analysis.guards import explosion, reward_fell, reward_seen
from entropy_watch.analysis.hygiene import prepare
from entropy_watch.analysis.trend import median, theil_sen
from entropy_watch.synthetic import generate

from ._series import series


def _same(a: object, b: object) -> bool:
    """Equal bit for bit and of the same type (-0.0 is not 0.0; NaN is NaN)."""
    return type(a) is type(b) and np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_median_is_numpys_bit_for_bit() -> None:
    """Signed zeros (np.mean sums from 0.0: a -0.0 median reads 0.0), NaN anywhere, ±inf, ties, odd and even
    sizes, integers (taken as floats), strided views, lists; n-D and empty go to np.median itself."""
    rng = np.random.default_rng(0)
    cases: list[object] = [[-0.0], [-0.0, -0.0], [0.0, -0.0], [-0.0, 0.0, 1.0], [np.inf, -np.inf], [1, 2], [3, 1, 2]]
    for trial in range(3000):
        n = int(rng.integers(1, 40))
        kind = trial % 6
        if kind == 0:
            x = rng.normal(size=n)
        elif kind == 1:
            x = rng.choice([0.0, -0.0, 1.0, -1.0], size=n)
        elif kind == 2:
            x = rng.normal(size=n)
            x[rng.integers(0, n)] = np.nan
        elif kind == 3:
            x = rng.choice([np.inf, -np.inf, -0.0, 0.0, 2.0], size=n)
        elif kind == 4:
            x = rng.integers(-5, 5, size=n)
        else:
            x = rng.normal(size=2 * n)[::2]
        cases.append(x)
    cases += [np.zeros((3, 4)), np.arange(6.0).reshape(2, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.median of inf and -inf warns
        for x in cases:
            assert _same(median(x), np.median(x)), x
        assert _same(median(np.zeros(0)), np.median(np.zeros(0)))


def test_theil_sen_matches_the_pairwise_definition() -> None:
    """The line from every pair's slope, the finite points only (no copies when all are finite)."""
    rng = np.random.default_rng(1)
    for n in (2, 5, 40, 121):
        x = np.sort(rng.choice(np.arange(3 * n, dtype=np.float64), size=n, replace=False))
        y = rng.normal(size=n)
        for bad in (None, 0):
            if bad is not None:
                y = y.copy()
                y[bad] = np.nan
            ok = np.isfinite(y)
            xs, ys = x[ok], y[ok]
            i, j = np.triu_indices(xs.size, k=1)
            slope = float(np.median((ys[j] - ys[i]) / (xs[j] - xs[i]))) if xs.size > 1 else float("nan")
            icpt = float(np.median(ys - slope * xs)) if xs.size > 1 else float("nan")
            got = theil_sen(x, y)
            assert _same(got[0], slope) and _same(got[1], icpt), (n, bad)


def test_pairs_are_triu_indices_in_their_order() -> None:
    """The pairs of n points taken from a larger set's are np.triu_indices(n, 1), element for element."""
    from entropy_watch.analysis.trend import PAIRS_BASE, _pairs

    for n in [*range(0, 60), 199, 200, PAIRS_BASE - 1, PAIRS_BASE, PAIRS_BASE + 1, 300]:
        i, j = _pairs(n)
        ri, rj = np.triu_indices(n, k=1)
        assert i.dtype == ri.dtype and np.array_equal(i, ri) and np.array_equal(j, rj), n


def test_mann_kendall_counts_ties_as_np_unique() -> None:
    """The tie correction from sorted runs of equal values, as np.unique's counts gave it (signed zeros equal)."""
    import math

    from entropy_watch.analysis.trend import mann_kendall

    rng = np.random.default_rng(4)
    for trial in range(400):
        n = int(rng.integers(0, 60))
        y = rng.choice([0.0, -0.0, 1.0, 2.5, -1.0], size=n) if trial % 2 else np.round(rng.normal(size=n), 1)
        if trial % 7 == 0 and n:
            y[0] = np.nan
        f = y[np.isfinite(y)]
        m = f.size
        if m < 4:
            assert mann_kendall(y) == (0.0, 1.0)
            continue
        i, j = np.triu_indices(m, k=1)
        s = float(np.sign(f[j] - f[i]).sum())
        _, counts = np.unique(f, return_counts=True)
        ties = counts[counts > 1]
        var = (m * (m - 1) * (2 * m + 5) - float((ties * (ties - 1) * (2 * ties + 5)).sum())) / 18.0
        z = 0.0 if var <= 0 or s == 0 else (s - math.copysign(1.0, s)) / math.sqrt(var)
        want = (0.0, 1.0) if var <= 0 else (z, math.erfc(abs(z) / math.sqrt(2.0)))
        assert mann_kendall(y) == want, y


def test_reward_fell_from_the_running_range_is_the_pass_over_every_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """The explosion rule asks at every held point; the running lowest/largest reward answers as the prefix's
    nanmin/nanmax did, rewards negative, above the ceiling, NaN-led, or absent."""
    cfg = DetectorConfig()
    rng = np.random.default_rng(2)
    h = np.exp(np.linspace(0.0, 1.5, 120)) * np.exp(rng.normal(0, 0.05, 120))
    base = np.r_[np.linspace(0.2, 0.7, 60), np.linspace(0.7, 0.1, 60)] + rng.normal(0, 0.03, 120)
    rewards = [base, base - 0.5, 3 * base, np.r_[np.full(5, np.nan), base[5:]], base * 0.0 - 0.0, None]
    for r in rewards:
        prep = prepare(series(h, reward=r), cfg)
        seen = reward_seen(prep)
        assert (seen is None) == (r is None)
        for i in range(12, 120, 3):
            for start in (i - 8, i - 2, 11):
                got, naive = reward_fell(prep, i, start, cfg, seen), reward_fell(prep, i, start, cfg)
                assert all(_same(a, b) for a, b in zip(got, naive, strict=True)), (i, start, got, naive)
        fast = [a.to_dict() for a in explosion(prep, cfg)]
        with monkeypatch.context() as m:
            m.setattr("entropy_watch.analysis.guards.reward_seen", lambda prep: None)
            assert repr([a.to_dict() for a in explosion(prep, cfg)]) == repr(fast)


def _dump(res: object) -> str:
    """Everything an analysis says, floats exact (repr), arrays by their bytes."""

    def conv(o: object) -> object:
        if isinstance(o, np.ndarray):
            return [o.dtype.str, list(o.shape), o.tobytes().hex()]
        if isinstance(o, np.generic):
            return conv(o.item())
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {f.name: conv(getattr(o, f.name)) for f in dataclasses.fields(o)}
        if isinstance(o, dict):
            return {str(k): conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        if isinstance(o, float):
            return repr(o)
        return o

    return json.dumps(conv(res), sort_keys=True)


NAIVE_MEDIAN = ("trend", "hygiene", "guards", "logfits", "forecast", "corroborate")


@pytest.mark.parametrize("kind", ["decelerating_collapse", "explosion", "solved"])
def test_an_analysis_says_the_same_as_with_the_old_computations(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole analysis (alerts, notes, forecasts with their draws, prepared arrays, verdict) with the fast paths
    and with np.median, the per-point reward range and numpy's own BLAS threads patched back: the same bytes."""
    import importlib

    s = generate(kind, seed=3, n_steps=260).to_series()
    fast = _dump(analyze(s))
    with monkeypatch.context() as m:
        for name in NAIVE_MEDIAN:
            m.setattr(importlib.import_module(f"entropy_watch.analysis.{name}"), "median", np.median)
        m.setattr("entropy_watch.analysis.guards.reward_seen", lambda prep: None)
        m.setattr(blas, "_calls", None)
        naive = _dump(analyze(s))
    assert fast == naive


class _FakeBlas:
    """A BLAS thread count that records what it was set to."""

    def __init__(self, threads: int) -> None:
        self.threads, self.history = threads, [threads]

    def get(self) -> int:
        return self.threads

    def put(self, n: int) -> None:
        self.threads = n
        self.history.append(n)


def test_an_analysis_runs_numpys_blas_on_one_thread_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread inside Analyzer.analyze (the live verdict too), the count restored after it — after an error as
    well, and only when the last of nested or concurrent analyses ends."""
    fake = _FakeBlas(8)
    monkeypatch.setattr(blas, "_calls", (fake.get, fake.put))
    inside: list[int] = []
    real = Analyzer._analyze

    def spy(self: Analyzer, *args: object) -> object:
        inside.append(fake.threads)
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Analyzer, "_analyze", spy)
    s = generate("steady_collapse", seed=1, n_steps=120).to_series()
    analyze(s)
    Analyzer().verdict(s)
    assert inside == [1, 1] and fake.threads == 8
    with pytest.raises(TypeError):
        Analyzer().analyze("not a series")  # type: ignore[arg-type]
    with pytest.raises(ZeroDivisionError), blas.single_threaded():
        1 / 0  # noqa: B018
    assert fake.threads == 8
    with blas.single_threaded():
        with blas.single_threaded():
            assert fake.threads == 1
        assert fake.threads == 1
    assert fake.threads == 8
    barrier = threading.Barrier(4)

    def worker() -> None:
        with blas.single_threaded():
            barrier.wait(timeout=10)
            assert fake.threads == 1

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert fake.threads == 8 and fake.history[-1] == 8


def test_blas_lookup_never_stops_an_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OpenBLAS found (MKL, Accelerate) or a lookup that fails: the analysis runs as it would."""

    def broken() -> None:
        raise OSError("no such library")

    monkeypatch.setattr(blas, "_calls", False)
    monkeypatch.setattr(blas, "_lookup", broken)
    with blas.single_threaded():
        pass
    assert blas._calls is None
    s = generate("healthy", seed=2, n_steps=80).to_series()
    assert analyze(s).verdict is not None
