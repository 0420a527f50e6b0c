"""Where the labelled real runs are: ``shared/real_runs`` beside the checkout (a CI clone elsewhere falls back to the
workplace's copy). Tests that read them skip, saying so, when neither is there."""

from __future__ import annotations

from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "real_runs"
if not REAL.is_dir():
    REAL = Path("/work/shared/real_runs")

BEST_STATIC = REAL / "Sunshine535__nips-grpo-dynamics__qwen25-7b-exp2-best_static_rho3.0_seed42.jsonl"
"""A real 7B GRPO log whose first 24 points forecast a floor crossing far past the run ("beyond step 12,000")."""
