"""Synthetic entropy runs with known ground truth, for tests, benchmarks and the demo (DETECTION.md §B.4, §B.6).

Each run is one value per policy version: a noiseless curve in nats times multiplicative AR(1) noise with rare
spikes, plus a reward that follows the entropy–reward law ``R = ceiling − a·(exp(H) − 1)`` (Cui et al. 2025,
arXiv:2505.22617) with noise. Kinds:

* healthy ``healthy`` (decay to a plateau at 30–70% of H0), ``healthy_slow`` (slow decline that plateaus late),
  ``cliff_recover`` (a one-off drop that recovers), ``sawtooth`` (several epochs per batch), ``ar_noise`` (strongly
  autocorrelated noise), ``lr_kink`` (an LR-schedule change, logged as an event), ``healthy_rise`` (rises 1.5–2.5×
  then settles) — label ``healthy``;
* ``collapse_exp``, ``collapse_linear``, ``collapse_step`` (step-then-decay) toward 0 after ``onset_step`` — label
  ``collapse``; ``explosion`` (exponential rise toward ln V) — label ``explosion``;
* ``benign`` — entropy collapses within a few dozen steps while reward goes to 1 (task solved) — label
  ``collapse-benign``.

``floor_step`` is where the noiseless curve crosses 0.1·H0 (collapse) or 3·H0 (explosion); None when it never does.
Usage: ``generate("collapse_exp", seed=3, n_steps=600)``; ``write_to_store(root, "demo", "collapse_exp")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HEALTHY_KINDS: tuple[str, ...] = (
    "healthy",
    "healthy_slow",
    "cliff_recover",
    "sawtooth",
    "ar_noise",
    "lr_kink",
    "healthy_rise",
)
COLLAPSE_KINDS: tuple[str, ...] = ("collapse_exp", "collapse_linear", "collapse_step")
KINDS: tuple[str, ...] = (*HEALTHY_KINDS, *COLLAPSE_KINDS, "explosion", "benign")
VOCAB_SIZE = 151_936  # Qwen-family vocabulary: ln V ≈ 11.9 nats


@dataclass
class SyntheticRun:
    """One synthetic run: ``steps`` (n,) int64, ``entropy`` (n,) nats, ``reward`` (n,) in [0, 1], ``clean`` (n,) the
    noiseless entropy; ``onset_step``/``floor_step`` the truth (None where not applicable)."""

    kind: str
    label: str
    seed: int
    steps: np.ndarray
    entropy: np.ndarray
    reward: np.ndarray
    clean: np.ndarray
    onset_step: int | None
    floor_step: int | None
    events: list[tuple[int, str]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_series(self, name: str | None = None) -> Any:
        """As an :class:`entropy_watch.analysis.RunSeries`."""
        from entropy_watch.analysis import RunSeries

        return RunSeries.from_arrays(
            name or f"{self.kind}-s{self.seed}",
            self.steps,
            self.entropy,
            reward=self.reward,
            events=list(self.events),
            meta={"vocab_size": VOCAB_SIZE},
        )


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    """Stationary AR(1) noise with marginal σ ``sigma``, shape (n,)."""
    e = rng.normal(0.0, sigma * np.sqrt(1.0 - phi**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sigma)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def _first(mask: np.ndarray, t: np.ndarray) -> int | None:
    return int(t[np.argmax(mask)]) if mask.any() else None


def generate(kind: str, seed: int = 0, n_steps: int = 600) -> SyntheticRun:
    """One seeded run of ``kind`` (see the module docstring) with ``n_steps`` versions (≥ 100)."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; expected one of {', '.join(KINDS)}")
    if n_steps < 100:
        raise ValueError(f"n_steps must be >= 100, got {n_steps}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    n = n_steps
    t = np.arange(n, dtype=np.float64)
    scale = n / 600.0
    h0 = float(rng.uniform(0.3, 1.5))
    plateau = float(rng.uniform(0.3, 0.7))
    tau = float(rng.uniform(30, 120)) * scale
    cv = float(rng.uniform(0.02, 0.15))
    phi = float(rng.uniform(0.0, 0.6))
    mult = plateau + (1 - plateau) * np.exp(-t / tau)
    onset: int | None = None
    events: list[tuple[int, str]] = []
    label = "healthy"
    ceiling = float(rng.uniform(0.6, 0.85))
    params: dict[str, Any] = {"h0": h0, "plateau": plateau, "tau": tau, "cv": cv, "phi": phi}

    if kind == "healthy_slow":
        tau = float(rng.uniform(150, 300)) * scale
        mult = plateau + (1 - plateau) * np.exp(-t / tau)
    elif kind == "cliff_recover":
        at = int(rng.uniform(0.3, 0.8) * n)
        depth, rec = float(rng.uniform(0.4, 0.6)), float(rng.uniform(5, 20))
        dip = np.where(t >= at, depth * np.exp(-(t - at) / rec), 0.0)
        mult = mult * (1 - dip)
        params.update(cliff_step=at, depth=depth)
    elif kind == "ar_noise":
        phi = float(rng.uniform(0.7, 0.9))
    elif kind == "lr_kink":
        at = int(rng.uniform(0.2, 0.6) * n)
        extra = float(rng.uniform(0.1, 0.25))
        mult = mult * (1 - extra * (1 - np.exp(-np.clip(t - at, 0, None) / 15.0)) * (t >= at))
        events.append((at, "lr_schedule"))
        params.update(kink_step=at)
    elif kind == "healthy_rise":
        rise, tr = float(rng.uniform(1.5, 2.5)), float(rng.uniform(40, 120)) * scale
        start = int(rng.uniform(0.1, 0.4) * n)
        mult = np.where(t < start, 1.0, 1 + (rise - 1) * (1 - np.exp(-(t - start) / tr)))
    elif kind in COLLAPSE_KINDS:
        label = "collapse"
        onset = int(rng.uniform(0.25, 0.55) * n)
        dt = np.clip(t - onset, 0, None)
        tc = float(rng.uniform(60, 150)) * scale
        if kind == "collapse_exp":
            extra = np.exp(-dt / tc)
        elif kind == "collapse_linear":
            dur = float(rng.uniform(150, 300)) * scale
            extra = np.clip(1 - 0.98 * dt / dur, 0.02, 1.0)
        else:
            drop = float(rng.uniform(0.3, 0.5))
            extra = np.where(t >= onset, (1 - drop) * np.exp(-dt / tc), 1.0)
        mult = mult * extra
        params.update(tau_collapse=tc)
    elif kind == "explosion":
        label = "explosion"
        onset = int(rng.uniform(0.3, 0.6) * n)
        te = float(rng.uniform(40, 100)) * scale
        mult = mult * np.exp(np.clip(t - onset, 0, None) / te)
        params.update(tau_explosion=te)
    elif kind == "benign":
        label = "collapse-benign"
        tb = float(rng.uniform(3, 15))
        mult = 0.002 + 0.998 * np.exp(-t / tb)
        ceiling = 1.0
        onset = 0

    if kind == "sawtooth" or (kind in COLLAPSE_KINDS and rng.uniform() < 0.25):
        period, amp = int(rng.integers(2, 7)), float(rng.uniform(0.05, 0.15))
        mult = mult * np.exp(-amp * ((t % period) / max(period - 1, 1) - 0.5) * 2)
        params.update(sawtooth_period=period, sawtooth_amp=amp)

    clean = np.minimum(h0 * mult, np.log(VOCAB_SIZE))
    noise = _ar1(rng, n, phi, cv)
    spikes = rng.uniform(size=n) < 0.01
    noise[spikes] += rng.normal(0, 4 * cv, spikes.sum())
    entropy = np.minimum(clean * np.exp(noise), np.log(VOCAB_SIZE))

    a = (ceiling - 0.2) / max(np.expm1(h0), 1e-6)
    reward = np.clip(ceiling - a * np.expm1(clean) + rng.normal(0, 0.03, n), 0.0, 1.0)
    if kind == "benign":
        reward = np.clip(1.0 - 0.8 * np.exp(-t / 5.0) + rng.normal(0, 0.01, n), 0.0, 1.0)

    steps = np.arange(n, dtype=np.int64)
    floor_step = None
    if label in ("collapse", "collapse-benign"):
        floor_step = _first(clean < 0.1 * h0, t)
    elif label == "explosion":
        floor_step = _first(clean > 3.0 * h0, t)
    return SyntheticRun(kind, label, seed, steps, entropy, reward, clean, onset, floor_step, events, params)


def _token_hist(rng: np.random.Generator, mean_h: float, edges: np.ndarray, n_tokens: int = 2000) -> np.ndarray:
    """Counts per bin of ``n_tokens`` token entropies whose mean is about ``mean_h``: a share of near-certain tokens
    (growing as the mean falls) and a log-normal bulk."""
    from entropy_watch.histogram import bin_index

    frac_low = float(np.clip(0.6 - 0.5 * mean_h, 0.05, 0.95))
    n_low = int(frac_low * n_tokens)
    low = rng.uniform(0, 0.01, n_low)
    bulk_mean = max(mean_h - low.sum() / n_tokens, 1e-4) / max(1 - frac_low, 1e-3)
    bulk = rng.lognormal(np.log(bulk_mean) - 0.5, 1.0, n_tokens - n_low)
    return np.bincount(bin_index(np.concatenate([low, bulk]), edges), minlength=len(edges)).astype(np.int64)


def write_to_store(
    root: str | Path, run: str, kind: str = "collapse_exp", seed: int = 0, n_steps: int = 600
) -> SyntheticRun:
    """Generate a run and write it to the store at ``root`` as ``run``: scalars (entropy, quantiles, reward,
    covariance drive, clip fractions, zero-variance groups), a per-step ``hist``, ``events`` and ``run.json``."""
    from entropy_watch import metrics as M
    from entropy_watch.histogram import entropy_bin_edges, quantiles_from_hist
    from entropy_watch.store import RunWriter

    sr = generate(kind, seed, n_steps)
    rng = np.random.default_rng([seed, 99])
    edges = entropy_bin_edges(VOCAB_SIZE)
    w = RunWriter(root, run)
    w.update_run_meta(
        framework="entropy_watch.synthetic",
        seed=seed,
        config={"kind": kind, "n_steps": n_steps, "planned_steps": n_steps, **sr.params},
        planned_steps=n_steps,
        vocab_size=VOCAB_SIZE,
        entropy_definition="full-vocabulary, policy pi_theta, temperature 1.0",
        hist_edges=edges.tolist(),
        synthetic={"kind": kind, "label": sr.label, "onset_step": sr.onset_step, "floor_step": sr.floor_step},
    )
    cols: dict[str, list[Any]] = {"step": [], "name": [], "value": [], "wall_time": []}
    hist: dict[str, list[Any]] = {"step": [], "bin": [], "count": []}
    dh = np.diff(sr.clean, prepend=sr.clean[0])
    h0 = float(sr.params["h0"])
    t0 = 1.7e9
    for i, s in enumerate(sr.steps.tolist()):
        counts = _token_hist(rng, float(sr.entropy[i]), edges)
        nz = np.flatnonzero(counts)
        hist["step"] += [s] * nz.size
        hist["bin"] += nz.tolist()
        hist["count"] += counts[nz].tolist()
        q = quantiles_from_hist(counts, edges, list(M.ENTROPY_QUANTILES.values()))
        vals = {
            M.ENTROPY_MEAN: float(sr.entropy[i]),
            M.REWARD_MEAN: float(sr.reward[i]),
            M.COV_PG_DRIVE: float(-dh[i] + rng.normal(0, 1e-3)),
            M.CLIP_HIGH_FRAC: float(abs(rng.normal(0.02, 0.005))),
            M.CLIP_LOW_FRAC: float(abs(rng.normal(0.015, 0.005))),
            M.ADV_FRAC_ZERO_GROUPS: float(np.clip(0.05 + 0.9 * (1 - sr.clean[i] / (0.25 * h0)), 0.05, 1.0)),
            M.ENTROPY_FRAC_LOW: float(counts[edges <= M.LOW_ENTROPY_NATS].sum() / counts.sum()),
            **{name: float(v) for name, v in zip(M.ENTROPY_QUANTILES, q, strict=True)},
        }
        for name, v in vals.items():
            cols["step"].append(s)
            cols["name"].append(name)
            cols["value"].append(v)
            cols["wall_time"].append(t0 + 10.0 * i)
    w.write("scalars", cols)
    w.write("hist", hist)
    ev = [(0, "start")] + [(s, k) for s, k in sr.events]
    w.write(
        "events",
        {
            "step": [s for s, _ in ev],
            "kind": [k for _, k in ev],
            "payload": ["{}" for _ in ev],
            "wall_time": [t0 + 10.0 * s for s, _ in ev],
        },
    )
    w.close()
    return sr
