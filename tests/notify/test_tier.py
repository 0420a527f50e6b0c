"""The notifier is core tier: importing it (as ``entropy-watch watch --notify`` does) loads neither torch nor
streamlit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_notify_imports_without_torch() -> None:
    code = "import entropy_watch.notify, sys; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    loaded = set(out.stdout.split())
    assert "torch" not in loaded and "streamlit" not in loaded and "entropy_watch.notify.delivery" in loaded
