"""L2 cliffs: abrupt level shifts of log H, by two one-sided CUSUM charts on pre-whitened residuals (DETECTION §B.2
card 2, §B.5).

For each version i the local trend is a robust line through the previous ``cliff_ref_versions`` values (medians of
the two halves), so a steady decay is not "a shift". The one-step residual is standardised by the robust σ of the
window's detrended values and AR(1) pre-whitened with the window's lag-1 autocorrelation (autocorrelation shortens
CUSUM's in-control run length drastically). Page's CUSUM with reference k and decision interval h then signals a
sustained shift. A cliff is information ("check for a resume or a config change"); collapse and explosion are the
other layers' business. Cliffs within 5 versions of a known change point are explained by it and not reported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from entropy_watch.analysis.alert import Alert, fmt_nats, pct_change
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.hygiene import MAD_TO_SIGMA, Prepared

KNOWN_CHANGE_MARGIN = 5


@dataclass
class Scan:
    """Where a CUSUM scan stopped, so a growing live run resumes it instead of rescanning: the points scanned
    (``n``), their innovations, the charts' state, the alerts so far and the change points the scan assumed."""

    n: int = 0
    z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sp: float = 0.0
    sm: float = 0.0
    start_p: int = 0
    start_m: int = 0
    quiet_until: int = -1
    alerts: list[Alert] = field(default_factory=list)
    events: tuple[int, ...] = ()


def innovations(prep: Prepared, config: DetectorConfig, start: int = 0, chunk: int = 100_000) -> np.ndarray:
    """Standardised, pre-whitened one-step residuals of log H for points ``start``.. (shape (n − start,)); NaN where
    the window is incomplete. The reference line, noise and φ are fitted on the window of the R points before
    k(i) = max(R, i − i mod ``cliff_stride``) and extrapolated to i (a slow-moving reference need not be refitted
    at every point: this is what keeps a 4M-point log affordable); entry i uses points ≤ i only. In chunks."""
    y = np.where(prep.finite, prep.log_h, np.nan)
    n, R, st = y.size, config.cliff_ref_versions, config.cliff_stride
    z = np.full(n, np.nan)
    first = max(R, start)
    if n <= R or first >= n:  # z[R] needs y[R]: R + 1 points
        return z[start:]
    med = np.median if np.isfinite(y).all() else np.nanmedian  # nanmedian is many times slower
    view = sliding_window_view(y, R)  # view[k - R] = y[k-R : k], the reference window of fit point k
    half = R // 2
    c1, c2 = (half - 1) / 2.0, half + (R - half - 1) / 2.0
    pos = np.arange(R, dtype=np.float64)
    for lo in range(first, n, chunk):
        hi = min(n, lo + chunk)
        pts = np.arange(lo, hi)
        kk = np.maximum(R, pts - pts % st)
        fits, where = np.unique(kk, return_inverse=True)
        W = view[fits - R]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            m1 = med(W[:, :half], axis=1)
            m2 = med(W[:, half:], axis=1)
            slope = (m2 - m1) / (c2 - c1)
            D = W - (m1[:, None] + slope[:, None] * (pos[None, :] - c1))
            sigma = MAD_TO_SIGMA * med(np.abs(D - med(D, axis=1, keepdims=True)), axis=1)
            Dz = np.where(np.isfinite(D), D, 0.0)
            phi = np.clip((Dz[:, :-1] * Dz[:, 1:]).sum(1) / np.maximum((Dz * Dz).sum(1), 1e-300), 0.0, 0.95)
            m1, slope, sigma, phi = m1[where], slope[where], np.maximum(sigma[where], 1e-3), phi[where]
            ahead = (pts - kk).astype(np.float64)
            e_i = y[lo:hi] - (m1 + slope * (R - c1 + ahead))  # the line extrapolated to point i
            e_prev = y[lo - 1 : hi - 1] - (m1 + slope * (R - 1 - c1 + ahead))  # and to point i - 1
            # the extrapolated line is itself uncertain: two medians of `half` points, each with variance
            # (π/2)σ²/half, weighted (1 − d/Δ) and d/Δ at distance d from the first half's centre
            u = (R - c1 + ahead) / (c2 - c1)
            inflate = np.sqrt(1.0 + (np.pi / 2) / half * ((1 - u) ** 2 + u**2))
            z[lo:hi] = (e_i - phi * e_prev) / (sigma * np.sqrt(1.0 - phi**2) * inflate)
    return z[start:]


def _starts(prev: float, S: np.ndarray, i: int, upto: int, start: int) -> int:
    """Where the excursion that reaches point ``upto`` began: the last point u ≤ upto whose chart value before it
    (``prev`` for point i, S[u − i − 1] after) was 0, else ``start`` (it began before point i)."""
    zeros = np.flatnonzero(S[: upto - i] == 0.0)
    if zeros.size:
        return i + int(zeros[-1]) + 1
    return i if prev == 0.0 else start


def _cusum(
    z: np.ndarray, i: int, n: int, state: tuple, k: float, h: float, quiet: int, block: int = 8192
) -> tuple[list[tuple[int, bool, int]], tuple]:
    """Page's two one-sided CUSUM charts over points i..n−1 of ``z`` (NaN resets them), vectorised in blocks by the
    Lindley recursion's closed form S_t = D_t − min(0, min_{u≤t} D_u). Returns the signals (point, upward, onset)
    — after each the charts reset and stay quiet for ``quiet`` points — and the state to resume from."""
    sp, sm, start_p, start_m, quiet_until = state
    hits: list[tuple[int, bool, int]] = []
    valid = np.isfinite(z)
    idx = np.where(valid, np.arange(z.size), z.size)
    next_valid = np.minimum.accumulate(idx[::-1])[::-1]  # the first valid point at or after each point
    while i < n:
        if i < quiet_until or not valid[i]:  # a reset: the charts restart at the next valid point
            j = int(next_valid[min(max(i, quiet_until), n - 1)]) if max(i, quiet_until) < n else n
            if j >= n:
                sp = sm = 0.0
                start_p = start_m = n - 1
                break
            i = j
            sp = sm = 0.0
            start_p = start_m = i
        bad = np.flatnonzero(~valid[i : min(n, i + block)])
        r = i + (int(bad[0]) if bad.size else min(block, n - i))
        x = z[i:r]
        dp, dm = sp + np.cumsum(x - k), sm + np.cumsum(-x - k)
        Sp = dp - np.minimum(0.0, np.minimum.accumulate(dp))
        Sm = dm - np.minimum(0.0, np.minimum.accumulate(dm))
        cross = np.flatnonzero((Sp > h) | (Sm > h))
        if cross.size == 0:
            start_p, start_m = _starts(sp, Sp, i, r - 1, start_p), _starts(sm, Sm, i, r - 1, start_m)
            sp, sm = float(Sp[-1]), float(Sm[-1])
            i = r
            continue
        t = i + int(cross[0])
        up = bool(Sp[cross[0]] > h)
        onset = _starts(sp, Sp, i, t, start_p) if up else _starts(sm, Sm, i, t, start_m)
        hits.append((t, up, onset))
        sp = sm = 0.0
        quiet_until = t + quiet
        i = t + 1
    return hits, (sp, sm, start_p, start_m, quiet_until)


def detect(
    prep: Prepared, config: DetectorConfig, change_steps: list[int] | None = None, scan: Scan | None = None
) -> tuple[list[Alert], Scan]:
    """CUSUM cliffs over the prefix in ``prep`` (info alerts), and the scan's state. Pass the ``scan`` a previous call
    returned for a prefix of the same series (same change points) to resume it: the result is the same."""
    events = tuple(change_steps or [])
    n = len(prep)
    if scan is None or scan.events != events or scan.n > n:
        scan = Scan(events=events)
    z = np.concatenate([scan.z, innovations(prep, config, scan.n)])
    k, h = config.cusum_k, config.cusum_h
    at_event = np.searchsorted(prep.steps, np.asarray(events, dtype=np.int64))  # the point each event is logged at
    out = list(scan.alerts)
    zs = np.where(prep.armed & np.isfinite(z), z, np.nan)
    state = (scan.sp, scan.sm, scan.start_p, scan.start_m, scan.quiet_until)
    hits, state = _cusum(zs, scan.n, n, state, k, h, config.cliff_ref_versions // 2)
    for i, up, onset in hits:
        strong = np.flatnonzero((z[onset : i + 1] if up else -z[onset : i + 1]) >= h / 2)
        onset += int(strong[0]) if strong.size else 0  # the excursion's first clear step, not its noisy start
        # a known change explains a cliff within KNOWN_CHANGE_MARGIN points of its onset or its alert — if it was
        # logged by the alert's point: one logged later was not known when the alert was raised live, and would
        # take back post hoc an alert a reader already had (live and post hoc agree)
        known = at_event[at_event <= i]
        if (
            onset == 0
            or (np.abs(known - onset) <= KNOWN_CHANGE_MARGIN).any()
            or (i - known <= KNOWN_CHANGE_MARGIN).any()
        ):
            continue
        before = float(np.nanmedian(prep.h[max(0, onset - 10) : onset]))
        after = float(np.nanmedian(prep.h[onset : i + 1]))
        moved = np.log((after + config.log_eps_nats) / (before + config.log_eps_nats))
        if not abs(moved) >= config.cliff_min_log:
            continue  # statistically a shift, practically too small to mention
        if (moved > 0) != up:
            # a shift against the run's own trend, not a level anyone sees move: a decay levelling off toward 0
            # (innovations up, the level still lower: "entropy jumped ... 0.0056 -> 0.0039 nats (−31%)" on solved
            # tasks), a climb slowing near its ceiling ("dropped ... 5.23 -> 7.33 nats (+40%)")
            continue
        word = "jumped" if up else "dropped"
        out.append(
            Alert(
                step=int(prep.steps[i]),
                detector="cliff.cusum",
                kind="cliff",
                severity="info",
                message=(
                    f"entropy {word} at step {prep.steps[onset]}: median {fmt_nats(before)} -> {fmt_nats(after)} "
                    f"nats ({pct_change(before, after)}); no event logged there (resume, LR or config change?)"
                ),
                evidence={
                    "onset_step": int(prep.steps[onset]),
                    "direction": "up" if up else "down",
                    "median_before": before,
                    "median_after": after,
                    "cusum_k": k,
                    "cusum_h": h,
                    "window": config.cliff_ref_versions,
                },
            )
        )
    return out, Scan(n, z, *state, list(out), events)
