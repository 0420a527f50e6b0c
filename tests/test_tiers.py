"""Dependency tiers (STYLE.md): the core imports without torch and streamlit; `entropy-watch --help` too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CORE_MODULES = [
    "entropy_watch",
    "entropy_watch.metrics",
    "entropy_watch.histogram",
    "entropy_watch.recorder",
    "entropy_watch.store",
    "entropy_watch.importers",
    "entropy_watch.analysis",
    "entropy_watch.cli",
]


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return set(out.stdout.split())


def test_core_imports_without_torch_or_streamlit() -> None:
    loaded = _loaded_after("\n".join(f"import {m}" for m in CORE_MODULES))
    assert "torch" not in loaded
    assert "streamlit" not in loaded
    assert "plotly" not in loaded


def test_cli_help_imports_neither_torch_nor_streamlit() -> None:
    code = (
        "import sys\nfrom entropy_watch.cli import app\nimport typer.testing\n"
        "r = typer.testing.CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output"
    )
    loaded = _loaded_after(code)
    assert "torch" not in loaded and "streamlit" not in loaded


def test_console_script_and_module_entry_point() -> None:
    r = subprocess.run([sys.executable, "-m", "entropy_watch", "--version"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.startswith("entropy-watch ")
    exe = Path(sys.executable).with_name("entropy-watch")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage" in r.stdout


def test_import_hooks_from_repo_root_names_the_right_import() -> None:
    r = subprocess.run([sys.executable, "-c", "import hooks"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0
    assert "entropy_watch.hooks" in r.stderr


def test_py_typed_is_shipped() -> None:
    import entropy_watch

    assert (Path(entropy_watch.__file__).parent / "py.typed").exists()
