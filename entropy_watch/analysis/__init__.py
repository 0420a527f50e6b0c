"""entropy_watch.analysis: the layered early-warning detector (DESIGN §6, DETECTION.md §B.5).

L0 hygiene.py (one point per version, log H, warm-up, resets, robust noise), L1 guards.py (non-finite, floor,
depletion, explosion), L2 cliffs.py (CUSUM on pre-whitened residuals), L3 forecast.py (decay fits, bootstrap ETA
to the floor — the primary detector), L4 corroborate.py (reward plateau, entropy–reward law, histogram drift,
covariance sign, zero-variance groups, clipping), L5 policy.py (persistence, severity, cooldown). run.py ties them
together; series.py reads runs; alert.py is the output.
"""

from __future__ import annotations

from entropy_watch.analysis.alert import ACTIONS, KINDS, SEVERITIES, Alert
from entropy_watch.analysis.config import DetectorConfig
from entropy_watch.analysis.run import AnalysisResult, Analyzer, analyze, analyze_run, analyze_series
from entropy_watch.analysis.series import RunSeries

__all__ = [
    "ACTIONS",
    "KINDS",
    "SEVERITIES",
    "Alert",
    "AnalysisResult",
    "Analyzer",
    "DetectorConfig",
    "RunSeries",
    "analyze",
    "analyze_run",
    "analyze_series",
]
