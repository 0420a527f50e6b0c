"""A decay forecast with a chosen ETA, made at step :data:`AT` (:func:`decay_at`), for the tests of how an ETA is
written (the verdict's sentence, a notification, the app's ETA box)."""

from __future__ import annotations

from entropy_watch.analysis.forecast import Forecast

AT = 120


def decay_at(eta_median: float, eta_lo: float = 40.0, eta_hi: float = float("inf")) -> Forecast:
    """A decay forecast made at step AT from a log-linear fit (no bootstrap draws: the chart draws the fit); ETAs in
    steps after AT."""
    return Forecast(index=23, step=AT, direction="decay", window_start_step=5, n_points=20, period=1,
                    slope_log_per_point=-1e-9, mk_p=0.01, trend=True, lost=0.7, gates=True, model="log_linear",
                    params={"a": -3.2, "b": -1e-9}, floor=0.02, horizon_steps=1000.0, p_cross=0.4,
                    eta_median=eta_median, eta_lo=eta_lo, eta_hi=eta_hi, level_start=0.14, level_now=0.042,
                    positive=False)  # fmt: skip
