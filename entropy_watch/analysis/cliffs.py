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

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from entropy_watch.analysis.alert import Alert, fmt_nats, pct_change
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.hygiene import MAD_TO_SIGMA, Prepared

KNOWN_CHANGE_MARGIN = 5


def innovations(prep: Prepared, config: DetectorConfig) -> np.ndarray:
    """Standardised, pre-whitened one-step residuals of log H, shape (n,); NaN where the window is incomplete."""
    y = np.where(prep.finite, prep.log_h, np.nan)
    n, R = y.size, config.cliff_ref_versions
    z = np.full(n, np.nan)
    if n <= R + 1:
        return z
    W = sliding_window_view(y, R)[:-1]  # W[j] = y[j : j+R], the reference window of version i = j + R
    half = R // 2
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        m1 = np.nanmedian(W[:, :half], axis=1)
        m2 = np.nanmedian(W[:, half:], axis=1)
        c1, c2 = (half - 1) / 2.0, half + (R - half - 1) / 2.0
        slope = (m2 - m1) / (c2 - c1)
        pos = np.arange(R, dtype=np.float64)
        line = m1[:, None] + slope[:, None] * (pos[None, :] - c1)
        D = W - line
        sigma = MAD_TO_SIGMA * np.nanmedian(np.abs(D - np.nanmedian(D, axis=1, keepdims=True)), axis=1)
        Dz = np.where(np.isfinite(D), D, 0.0)
        phi = np.clip((Dz[:, :-1] * Dz[:, 1:]).sum(1) / np.maximum((Dz * Dz).sum(1), 1e-300), 0.0, 0.95)
        pred_i = m1 + slope * (R - c1)  # line extrapolated to version i
        pred_prev = m1 + slope * (R - 1 - c1)  # and to version i - 1 (last point of the window)
        e_i = y[R:] - pred_i
        e_prev = y[R - 1 : -1] - pred_prev
        sigma = np.maximum(sigma, 1e-3)
        z[R:] = (e_i - phi * e_prev) / (sigma * np.sqrt(1.0 - phi**2))
    return z


def detect(prep: Prepared, config: DetectorConfig, reset_steps: list[int] | None = None) -> list[Alert]:
    """CUSUM cliffs over the prefix in ``prep`` (info alerts)."""
    z = innovations(prep, config)
    k, h = config.cusum_k, config.cusum_h
    near_event = np.zeros(z.size, dtype=bool)
    for s in reset_steps or []:
        near_event |= np.abs(np.searchsorted(prep.steps, s) - np.arange(z.size)) <= KNOWN_CHANGE_MARGIN
    out: list[Alert] = []
    sp = sm = 0.0
    start_p = start_m = 0
    quiet_until = -1
    for i in range(z.size):
        zi = z[i]
        if not np.isfinite(zi) or not prep.armed[i] or i < quiet_until:
            sp = sm = 0.0
            start_p = start_m = i
            continue
        sp_new, sm_new = max(0.0, sp + zi - k), max(0.0, sm - zi - k)
        if sp == 0.0:
            start_p = i
        if sm == 0.0:
            start_m = i
        sp, sm = sp_new, sm_new
        if sp <= h and sm <= h:
            continue
        up = sp > h
        onset = start_p if up else start_m
        strong = np.flatnonzero((z[onset : i + 1] if up else -z[onset : i + 1]) >= h / 2)
        onset += int(strong[0]) if strong.size else 0  # the excursion's first clear step, not its noisy start
        sp = sm = 0.0
        quiet_until = i + config.cliff_ref_versions // 2
        if near_event[onset] or near_event[i] or onset == 0:
            continue
        before = float(np.nanmedian(prep.h[max(0, onset - 10) : onset]))
        after = float(np.nanmedian(prep.h[onset : i + 1]))
        if not abs(np.log((after + config.log_eps_nats) / (before + config.log_eps_nats))) >= config.cliff_min_log:
            continue  # statistically a shift, practically too small to mention
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
    return out
