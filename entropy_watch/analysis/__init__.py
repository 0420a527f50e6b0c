"""entropy_watch.analysis: the layered early-warning detector and the run's verdict (DESIGN §6, DETECTION.md §B.5).

L0 hygiene.py (one point per version, log H, H_ref from the first points, arming, resets, robust noise), L1 guards.py
(non-finite, explosion, transient spikes, near-uniform start) and collapse.py (floor, depletion, steady decline,
the forecast's early warning), L2 cliffs.py (CUSUM on pre-whitened residuals), L3 forecast.py (decay and rise fits,
bootstrap ETA), L4 corroborate.py (reward plateau and saturation, entropy–reward law, histogram drift, covariance
sign, zero-variance groups, clipping), L5 policy.py (persistence, context, cooldown). run.py ties them together;
series.py reads runs; alert.py, outlook.py and verdict.py are the output. Every surface renders :func:`verdict`.
"""

from __future__ import annotations

from entropy_watch.analysis.alert import ACTIONS, KINDS, SEVERITIES, Alert, alert_key
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.outlook import Outlook
from entropy_watch.analysis.run import AnalysisResult, Analyzer, analyze, analyze_run, analyze_series, verdict
from entropy_watch.analysis.series import RunSeries
from entropy_watch.analysis.verdict import HEALTH, Problem, Reference, Verdict

__all__ = [
    "ACTIONS",
    "HEALTH",
    "KINDS",
    "SEVERITIES",
    "Alert",
    "AnalysisResult",
    "Analyzer",
    "DetectorConfig",
    "Outlook",
    "Problem",
    "Reference",
    "RunSeries",
    "Verdict",
    "alert_key",
    "analyze",
    "analyze_run",
    "analyze_series",
    "verdict",
]
