"""Synthetic entropy runs with known ground truth, for tests, benchmarks and the demo (DETECTION.md §B.4, §B.6).

Each run is one value per logged point: a noiseless curve in nats times multiplicative AR(1) noise in log space with
rare heavy-tailed outliers, plus a reward. The noise (σ, φ and the outlier rate) is a :class:`NoiseFit` — by default
one drawn from :data:`REAL_NOISE`, which :func:`fit_noise` measured on the labelled real logs in
``shared/real_runs`` (``benchmarks/bench_detectors.py`` refits and prints them, and passes the fits of the runs
closest in density). Kinds (the shapes users' runs take; label in brackets):

* ``healthy`` [healthy] — entropy drops by up to half early and settles (fast or late), or rises 1.3–2.5× and holds,
  while reward improves or holds; a quarter of them with a sawtooth (several epochs per batch);
* ``spike`` [healthy] — a healthy run with one or two transient spikes (1–2 points at 3–10× the level);
* ``near_uniform`` [healthy] — a small-vocabulary policy that starts near ln V (V known) and falls to a healthy level;
  its noise acts on logit(H / ln V), which is the fitted log-noise far from ln V and vanishes at it: the entropy over
  V tokens cannot pass ln V, and near it every batch reads close to it (log-noise clipped at ln V instead put the
  first points exactly at ln V, so H_ref read ln V itself, above the curve, and a healthy fall read as a deeper loss);
* ``lr_kink`` [healthy] — a healthy run with an LR-schedule change (logged as an event) that lowers the level 10–25%;
* ``steady_collapse`` [collapse] — a steady exponential decline, from an onset in the first 30%, that has lost
  68–85% of H0 by the end, reward on a plateau (the "mild, steady" collapses of TRL logs);
* ``fast_collapse`` [collapse] — a healthy start, then from an onset at 30–60% a decay that crosses the floor 15–35%
  of the run later and keeps going;
* ``explosion`` [explosion] — a healthy start, then from an onset at 40–75% a rise past 3·H0 within 5–20% of the
  run, toward several nats, with the reward falling;
* ``solved`` [collapse-benign] — entropy collapses within the first 1–4% of the run while reward goes to 1, twice as
  fast (the task is solved, then the policy sharpens: the Tinker arithmetic shape);
* ``decelerating_collapse`` [collapse] — from an onset at 5–20% (3 points at least, so H_ref reads the calm level) a
  decline that falls fast and ever more slowly, yet crosses the floor at 40–95% of the run, reward on a plateau: half
  a power law ``lvl·(1 + t/τ)^(−α)`` with t_c/τ log-uniform in 1.5–50 (t_c: onset to floor; α = ln(lvl/floor) /
  ln(1 + t_c/τ), 0.4–2.3), half an exponential toward an asymptote at 70–95% of the floor. Matched to the real
  collapse logs by their deceleration, the log-slope of the decline's second half over its first's (Theil–Sen): 0.24,
  0.40 and 0.65 on the three real collapses that slow down (the fourth, Deep-GRPO gamma2.0, is log-linear), 0.2–0.65
  here from the onset to the floor. The real logs fit power laws with α 0.23–0.51 (τ 0.1–6% of the run) and
  asymptotes at 1.0–2.0× the floor: they reach the floor late or never within the run, and a steeper α is what a
  crossing within the run takes at that deceleration. Not in :data:`SUITE_KINDS` (``bench_detectors.py --kinds``).

Earlier kind names (``collapse_exp``, ``healthy_slow``, ``benign``, ...) are accepted as :data:`ALIASES`.

``onset_step`` is where the change begins; ``floor_step`` where the noiseless curve crosses the collapse floor
``DetectorConfig().floor(H0)`` (collapse) or 3·H0 (explosion), None when it never does. H0 is the noiseless start.
Usage: ``generate("fast_collapse", seed=3, n_steps=400)``; ``write_to_store(root, "demo", "fast_collapse")``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entropy_watch.analysis.config import DetectorConfig

HEALTHY_KINDS: tuple[str, ...] = ("healthy", "spike", "near_uniform", "lr_kink")
COLLAPSE_KINDS: tuple[str, ...] = ("steady_collapse", "fast_collapse")
KINDS: tuple[str, ...] = (*HEALTHY_KINDS, *COLLAPSE_KINDS, "explosion", "solved", "decelerating_collapse")
"""Every kind, in the order the rng seeds by (``KINDS.index``): a new kind goes at the end, or every later kind's
runs change."""
SUITE_KINDS: tuple[str, ...] = ("healthy", "steady_collapse", "fast_collapse", "explosion", "spike", "near_uniform",
                                "solved")  # fmt: skip
"""The benchmark suite: the seven shapes issue 10 names."""
LABELS: dict[str, str] = {
    **dict.fromkeys(HEALTHY_KINDS, "healthy"),
    **dict.fromkeys(COLLAPSE_KINDS, "collapse"),
    "explosion": "explosion",
    "solved": "collapse-benign",
    "decelerating_collapse": "collapse",
}
ALIASES: dict[str, str] = {
    "collapse_exp": "fast_collapse",
    "collapse_step": "fast_collapse",
    "collapse_linear": "steady_collapse",
    "healthy_slow": "healthy",
    "healthy_rise": "healthy",
    "sawtooth": "healthy",
    "ar_noise": "healthy",
    "cliff_recover": "spike",
    "benign": "solved",
}
"""Earlier kind names, still accepted (with :data:`DEMO_NOISE` unless noise is given)."""
VOCAB_SIZE = 151_936  # Qwen-family vocabulary: ln V ≈ 11.9 nats
FLOOR = DetectorConfig().floor  # the collapse floor the truth is scored against (the detector's default)
MIN_STEPS = 20


@dataclass(frozen=True)
class NoiseFit:
    """Noise of log H around its trend: marginal σ (log units), lag-1 autocorrelation φ, the rate of outliers
    (differences beyond 4 robust σ), and where it was measured (``source``, ``n_points``)."""

    sigma: float
    phi: float
    outliers: float
    source: str = ""
    n_points: int = 0


DEMO_NOISE = NoiseFit(0.06, 0.3, 0.0, "demo")
"""Quiet noise for demo and test stores (write_to_store), where the run's shape should be plain to see."""

REAL_NOISE: tuple[NoiseFit, ...] = (
    NoiseFit(0.42, 0.06, 0.061, "rasbt 7_3", 500),
    NoiseFit(0.34, 0.00, 0.012, "rasbt 7_4", 500),
    NoiseFit(0.29, 0.00, 0.000, "rasbt 7_5", 500),
    NoiseFit(0.42, 0.00, 0.044, "rasbt 7_6", 500),
    NoiseFit(0.24, 0.00, 0.000, "rasbt 7_6-conditional", 500),
    NoiseFit(0.28, 0.00, 0.004, "rasbt 7_6-v1", 500),
    NoiseFit(0.12, 0.15, 0.006, "Deep-GRPO gamma1.0", 3434),
    NoiseFit(0.12, 0.17, 0.005, "Deep-GRPO gamma2.0", 2958),
    NoiseFit(0.10, 0.31, 0.005, "Deep-GRPO TreeRL", 927),
    NoiseFit(0.24, 0.48, 0.000, "Sunshine rho0.50", 40),
    NoiseFit(0.09, 0.03, 0.105, "Sunshine rho0.30", 40),
    NoiseFit(0.10, 0.33, 0.050, "Sunshine adabalance", 40),
    NoiseFit(0.14, 0.00, 0.025, "Sunshine best_static", 40),
    NoiseFit(0.14, 0.03, 0.000, "Sunshine rho2.00", 40),
    NoiseFit(0.15, 0.10, 0.000, "Sunshine qwen35", 40),
)
"""fit_noise() on each labelled run in shared/real_runs (two runs too short in their working range are left out);
``generate`` draws one by the seed, the benchmark the ones closest in density (``noise_for``)."""


def fit_noise(entropy: np.ndarray, source: str = "") -> NoiseFit | None:
    """σ, φ and the outlier rate of log H around its trend, over the run's working range (finite, positive, between
    10% and 3× the median of its first 3 points, so a collapse or an explosion does not count as noise). The trend
    is a centered rolling median over max(7, n/20) points; σ is the robust (MAD) σ of the residuals, φ their lag-1
    autocorrelation (clipped at 3σ), outliers the share beyond 4σ. None when fewer than 15 points remain."""
    h = np.asarray(entropy, dtype=np.float64)
    h = h[np.isfinite(h) & (h > 0)]
    if h.size < 16:
        return None
    ref = float(np.median(h[:3]))
    y = np.log(h[(h > 0.1 * ref) & (h < 3 * ref)])
    if y.size < 15:
        return None
    w = max(7, (y.size // 20) | 1)
    padded = np.concatenate([np.full(w // 2, np.nan), y, np.full(w // 2, np.nan)])
    trend = np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, w), axis=1)
    r = y - trend
    sigma = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    if sigma <= 0:
        return None
    rc = np.clip(r, -3 * sigma, 3 * sigma)
    rc = rc - rc.mean()
    phi = float(np.clip(np.dot(rc[:-1], rc[1:]) / np.dot(rc, rc), 0.0, 0.9))
    return NoiseFit(sigma, phi, float(np.mean(np.abs(r) > 4 * sigma)), source, int(h.size))


@dataclass
class SyntheticRun:
    """One synthetic run: ``steps`` (n,) int64, ``entropy`` (n,) nats, ``reward`` (n,) in [0, 1], ``clean`` (n,) the
    noiseless entropy; ``onset_step``/``floor_step`` the truth (None where not applicable); ``vocab_size`` what the
    run states (None: unknown, like most CSV logs)."""

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
    vocab_size: int | None = None

    @property
    def h0(self) -> float:
        return float(self.clean[0])

    def to_series(self, name: str | None = None) -> Any:
        """As an :class:`entropy_watch.analysis.RunSeries`."""
        from entropy_watch.analysis import RunSeries

        return RunSeries.from_arrays(
            name or f"{self.kind}-s{self.seed}",
            self.steps,
            self.entropy,
            reward=self.reward,
            events=list(self.events),
            meta={"vocab_size": self.vocab_size} if self.vocab_size else {},
        )


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    """Stationary AR(1) noise with marginal σ ``sigma``, shape (n,)."""
    e = rng.normal(0.0, sigma * np.sqrt(1.0 - phi**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sigma)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def _first(mask: np.ndarray) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def _healthy_shape(rng: np.random.Generator, t: np.ndarray, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A healthy multiplier on H0 (n,): an early drop of up to half that settles (fast or late), or a rise."""
    shape = rng.choice(["settle", "settle", "late", "rise"])
    if shape == "rise":
        rise, start = float(rng.uniform(1.3, 2.5)), float(rng.uniform(0.1, 0.5)) * n
        tau = float(rng.uniform(0.03, 0.2)) * n
        mult = np.where(t < start, 1.0, 1 + (rise - 1) * (1 - np.exp(-(t - start) / tau)))
        return mult, {"shape": shape, "rise": rise}
    plateau = float(rng.uniform(0.5, 1.0))
    tau = float(rng.uniform(0.02, 0.2) if shape == "settle" else rng.uniform(0.3, 0.8)) * n
    return plateau + (1 - plateau) * np.exp(-t / tau), {"shape": shape, "plateau": plateau, "tau": tau}


def generate(kind: str, seed: int = 0, n_steps: int = 600, noise: NoiseFit | None = None) -> SyntheticRun:
    """One seeded run of ``kind`` (see the module docstring) with ``n_steps`` points (≥ 20). ``noise`` defaults to a
    fit drawn from :data:`REAL_NOISE` by the seed."""
    if kind in ALIASES:
        kind, noise = ALIASES[kind], noise or DEMO_NOISE
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; expected one of {', '.join(KINDS)}")
    for name, value in (("seed", seed), ("n_steps", n_steps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be a whole number (an int), got {value!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if n_steps < MIN_STEPS:
        raise ValueError(f"n_steps must be >= {MIN_STEPS}, got {n_steps}")
    if noise is not None and not isinstance(noise, NoiseFit):
        raise TypeError(f"noise must be a NoiseFit (fit_noise(), REAL_NOISE, DEMO_NOISE) or None, got {noise!r}")
    rng = np.random.default_rng([seed, KINDS.index(kind), n_steps])
    n = n_steps
    t = np.arange(n, dtype=np.float64)
    if noise is None:
        noise = REAL_NOISE[int(rng.integers(len(REAL_NOISE)))]
    h0 = float(np.exp(rng.uniform(np.log(0.08), np.log(2.0))))
    vocab: int | None = None
    onset: int | None = None
    events: list[tuple[int, str]] = []
    label = LABELS[kind]
    params: dict[str, Any] = {"h0": h0, "sigma": noise.sigma, "phi": noise.phi, "noise_source": noise.source}
    mult, p = _healthy_shape(rng, t, n)
    params.update(p)
    r0, ceiling = float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.6, 0.9))
    reward = ceiling - (ceiling - r0) * np.exp(-t / (float(rng.uniform(0.05, 0.3)) * n))
    spikes: list[tuple[int, int, float]] = []

    if kind == "spike":
        for _ in range(int(rng.integers(1, 3))):  # one or two, each 1-2 points, at least 5 points apart
            at = int(rng.uniform(0.2, 0.95) * n)
            if all(abs(at - a) >= 5 for a, _, _ in spikes):
                spikes.append((at, int(rng.integers(1, 3)), float(rng.uniform(3.0, 10.0))))
        params.update(spikes=spikes)
    elif kind == "near_uniform":
        vocab = int(rng.integers(16, 65))
        h0 = float(rng.uniform(0.85, 0.98)) * float(np.log(vocab))
        plateau, tau = float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.02, 0.2)) * n
        mult = plateau + (1 - plateau) * np.exp(-t / tau)
        params.update(h0=h0, vocab=vocab, plateau=plateau)
    elif kind == "lr_kink":
        at = int(rng.uniform(0.2, 0.6) * n)
        extra = float(rng.uniform(0.1, 0.25))
        mult = mult * (1 - extra * (1 - np.exp(-np.clip(t - at, 0, None) / max(0.03 * n, 2.0))) * (t >= at))
        events.append((at, "lr_schedule"))
        params.update(kink_step=at)
    elif kind == "steady_collapse":
        onset = int(rng.uniform(0.0, 0.3) * n)
        end_frac = float(rng.uniform(0.15, 0.32))
        lvl = float(mult[onset]) if onset else 1.0
        k = np.log(lvl / end_frac) / max(n - 1 - onset, 1)
        mult = np.where(t < onset, mult, lvl * np.exp(-k * (t - onset)))
        reward = np.where(t < onset, reward, reward[onset] + (ceiling - reward[onset]) * 0.3 * (t >= onset))
        params.update(end_frac=end_frac)
    elif kind == "fast_collapse":
        onset = int(rng.uniform(0.3, 0.6) * n)
        lvl = float(mult[onset])
        floor_frac = float(FLOOR(h0)) / h0
        span = float(rng.uniform(0.15, 0.35)) * n  # onset -> floor
        k = np.log(lvl / min(floor_frac, 0.9 * lvl)) / span
        mult = np.where(t < onset, mult, lvl * np.exp(-k * (t - onset)))
        reward = np.where(t < onset, reward, reward[onset])
        params.update(span=span)
    elif kind == "explosion":
        onset = int(rng.uniform(0.4, 0.75) * n)
        lvl = float(mult[onset])
        span = max(float(rng.uniform(0.05, 0.2)) * n, 2.0)  # onset -> 3·H0
        k = np.log(3.0 / lvl) / span
        mult = np.where(t < onset, mult, lvl * np.exp(k * (t - onset)))
        reward = np.where(t < onset, reward, reward[onset] * np.exp(-(t - onset) / max(span / 2, 1.0)))
        params.update(span=span)
    elif kind == "solved":
        tb = float(rng.uniform(0.01, 0.04)) * n
        mult = 0.002 + 0.998 * np.exp(-t / max(tb, 0.7))
        reward = np.clip(1.0 - (1.0 - r0) * np.exp(-2 * t / max(tb, 0.7)), 0, 1)  # solved first, then sharpened
        onset = 0
        params.update(tau=tb)
    elif kind == "decelerating_collapse":
        onset = max(3, int(rng.uniform(0.05, 0.2) * n))
        lvl = float(mult[onset])
        floor_frac = min(float(FLOOR(h0)) / h0, 0.9 * lvl)
        t_c = float(rng.uniform(0.4, 0.95)) * n - onset  # onset -> floor
        dt = np.clip(t - onset, 0.0, None)
        if rng.uniform() < 0.5:  # a power law: the log-slope falls as 1 / (τ + t)
            ratio = float(np.exp(rng.uniform(np.log(1.5), np.log(50.0))))  # t_c / τ
            alpha = float(np.log(lvl / floor_frac) / np.log1p(ratio))
            decline = lvl * (1.0 + dt * ratio / t_c) ** -alpha
            params.update(shape="power", alpha=alpha, tau=t_c / ratio)
        else:  # an exponential toward an asymptote under the floor: the log-slope falls as c / H rises to 1
            c = float(rng.uniform(0.7, 0.95)) * floor_frac
            k = float(np.log((lvl - c) / (floor_frac - c))) / t_c
            decline = c + (lvl - c) * np.exp(-k * dt)
            params.update(shape="asymptote", asymptote=c * h0, k=k)
        mult = np.where(t < onset, mult, decline)
        reward = np.where(t < onset, reward, reward[onset])
        params.update(span=t_c)

    if kind in ("healthy", "spike") and rng.uniform() < 0.25:
        period, amp = int(rng.integers(2, 7)), float(rng.uniform(0.05, 0.15))
        mult = mult * np.exp(-amp * ((t % period) / max(period - 1, 1) - 0.5) * 2)
        params.update(sawtooth_period=period, sawtooth_amp=amp)

    cap = float(np.log(vocab)) if vocab else 10.0
    clean = np.minimum(h0 * mult, cap)
    x = _ar1(rng, n, noise.phi, noise.sigma)
    out = rng.uniform(size=n) < noise.outliers
    x[out] += rng.normal(0, 4 * noise.sigma, int(out.sum()))
    for at, k_pts, height in spikes:
        x[at : at + k_pts] += np.log(height)
    if vocab:  # noise on logit(H / ln V): log-noise far from ln V, vanishing at it (see the module docstring)
        u = clean / cap
        entropy = cap / (1.0 + (1.0 - u) / u * np.exp(-x))
    else:
        entropy = np.minimum(clean * np.exp(x), cap)
    reward = np.clip(reward + rng.normal(0, 0.03 if kind != "solved" else 0.005, n), 0.0, 1.0)

    steps = np.arange(n, dtype=np.int64)
    floor_step = None
    if label in ("collapse", "collapse-benign"):
        floor_step = _first(clean <= FLOOR(h0))
    elif label == "explosion":
        floor_step = _first(clean >= 3.0 * h0)
    return SyntheticRun(kind, label, seed, steps, entropy, reward, clean, onset, floor_step, events, params, vocab)


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
    root: str | Path,
    run: str,
    kind: str = "fast_collapse",
    seed: int = 0,
    n_steps: int = 600,
    noise: NoiseFit | None = DEMO_NOISE,
) -> SyntheticRun:
    """Generate a run (with :data:`DEMO_NOISE` unless told otherwise) and write it to the store at ``root`` as
    ``run``: scalars (entropy, quantiles, reward, covariance drive, clip fractions, zero-variance groups), a per-step
    ``hist``, ``events`` and ``_run.json``."""
    from entropy_watch import metrics as M
    from entropy_watch.histogram import entropy_bin_edges, quantiles_from_hist
    from entropy_watch.store import RunWriter

    sr = generate(kind, seed, n_steps, noise)
    rng = np.random.default_rng([seed, 99])
    vocab = sr.vocab_size or VOCAB_SIZE
    edges = entropy_bin_edges(vocab)
    w = RunWriter(root, run)
    w.update_run_meta(
        framework="entropy_watch.synthetic",
        seed=seed,
        config={"kind": kind, "n_steps": n_steps, "planned_steps": n_steps, **sr.params},
        planned_steps=n_steps,
        vocab_size=vocab,
        entropy_definition="full-vocabulary, policy pi_theta, temperature 1.0",
        hist_edges=edges.tolist(),
        synthetic={"kind": kind, "label": sr.label, "onset_step": sr.onset_step, "floor_step": sr.floor_step},
    )
    cols: dict[str, list[Any]] = {"step": [], "name": [], "value": [], "wall_time": []}
    hist: dict[str, list[Any]] = {"step": [], "bin": [], "count": []}
    dh = np.diff(sr.clean, prepend=sr.clean[0])
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
            M.ADV_FRAC_ZERO_GROUPS: float(np.clip(0.05 + 0.9 * (1 - sr.clean[i] / (0.25 * sr.h0)), 0.05, 1.0)),
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
