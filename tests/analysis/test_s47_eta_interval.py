"""An ETA interval never starts before the step it was forecast from. The interval is widened ``eta_spread``-fold
around its median in log(1 + ETA), which pushed an early end under 0 whenever the median sat far from it: a real 7B
GRPO log (its first 24 points) read "80% interval 119–never" at step 120, and a real explosion alert at step 462
read "80% interval 461–never"."""

from __future__ import annotations

import numpy as np

from entropy_watch.analysis import DetectorConfig
from entropy_watch.analysis.forecast import _quantiles, evaluate_rise
from entropy_watch.analysis.hygiene import prepare
from entropy_watch.analysis.outlook import from_forecast, step_text

from ._series import noisy, series


def test_the_widened_interval_starts_no_earlier_than_now() -> None:
    eta = np.array([5.0] * 30 + [5e11] * 40 + [np.inf] * 30)  # a far median: most draws never or nearly never
    lo, med, hi = _quantiles(eta, 0.8, 1.5)
    assert lo == 0.0 and abs(med - 5e11) < 1.0 and hi == np.inf
    plain = _quantiles(eta, 0.8, 1.0)  # not widened: the draws' own quantiles, untouched
    assert plain[0] == 5.0 and plain[1] == 5e11
    some_now = np.r_[np.zeros(20), np.linspace(1.0, 50.0, 80)]  # a fifth of the draws past the target already
    lo, med, hi = _quantiles(some_now, 0.8, 1.5)
    assert lo == 0.0 and 0.0 < med < hi  # the widening still moves the late end


def test_no_rise_forecast_quotes_an_interval_that_starts_before_its_step() -> None:
    """Noisy climbs forecast toward levels just ahead of them (some draws already there): every interval starts at
    the forecast's step or later, in the forecast and in the sentence the alert and the verdict quote."""
    cfg = DetectorConfig()
    t = np.arange(60, dtype=float)
    checked = 0
    for seed in range(3):
        prep = prepare(series(noisy(np.where(t < 30, 0.2, 0.2 * np.exp((t - 30) / 8.0)), 0.3, seed=seed)), cfg)
        for i in range(40, 60, 2):
            for target in (1.0, 2.0, 4.0):
                f = evaluate_rise(prep, i, cfg, target=target)
                if f is None or not np.isfinite(f.eta_median) or f.eta_median == 0:
                    continue
                checked += 1
                assert 0.0 <= f.eta_lo <= f.eta_median, (seed, i, target, f.eta_lo, f.eta_median)
                o = from_forecast(f, f"{target:g} nats", cfg.eta_interval, level=float(prep.smooth[i]))
                assert o.eta_lo_step is not None and o.eta_lo_step >= f.step
                assert f"interval {step_text(f.step - 1)}" not in o.text, o.text
    assert checked >= 30
