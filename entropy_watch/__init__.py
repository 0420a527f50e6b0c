"""entropy_watch: watch RL post-training of language models for entropy collapse and explosion.

Tiers (STYLE.md): this package and its core subpackages (store, importers, analysis, cli) import with numpy,
pyarrow, duckdb, scipy and typer only. ``entropy_watch.hooks`` and ``entropy_watch.trainer`` need torch;
``entropy_watch.app`` needs streamlit. Nothing is read or connected at import time.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
