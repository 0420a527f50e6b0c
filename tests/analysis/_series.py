"""Constructed series shared by the analysis tests (plain numpy, seeded)."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import Alert, Analyzer, RunSeries


def noisy(clean: np.ndarray, cv: float = 0.05, seed: int = 0) -> np.ndarray:
    """``clean`` times i.i.d. log-normal noise of relative size ``cv``."""
    rng = np.random.default_rng(seed)
    return clean * np.exp(rng.normal(0.0, cv, clean.size))


def series(h: np.ndarray, reward: np.ndarray | None = None, **kwargs: object) -> RunSeries:
    return RunSeries.from_arrays("t", np.arange(h.size), h, reward=reward, **kwargs)  # type: ignore[arg-type]


def healthy(n: int = 400, h0: float = 1.0, plateau: float = 0.5, tau: float = 60.0, seed: int = 0) -> np.ndarray:
    t = np.arange(n, dtype=float)
    return noisy(h0 * (plateau + (1 - plateau) * np.exp(-t / tau)), seed=seed)


def collapsing(n: int = 400, h0: float = 1.0, onset: int = 150, tau: float = 60.0, seed: int = 0) -> np.ndarray:
    t = np.arange(n, dtype=float)
    base = h0 * (0.5 + 0.5 * np.exp(-t / 60.0))
    return noisy(base * np.exp(-np.clip(t - onset, 0, None) / tau), seed=seed)


def polled(s: RunSeries, first: int = 0) -> list[Alert]:
    """The alerts a reader polling ``s`` at every logged step from index ``first`` on receives, checking that each
    arrives at its own step (when it happens, not found points later)."""
    live, got = Analyzer(), []
    for end in s.steps[first:].tolist():
        new = live.update(s.prefix(end))
        assert all(a.step == end for a in new), (end, [a.step for a in new])
        got += new
    return got
