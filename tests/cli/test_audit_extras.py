"""Commands that need an optional dependency say which extra to install, in one line, never a traceback or an
"internal error": the reference trainer (``train``, ``compare``) without torch or transformers. Each case runs the
console script in a fresh process where the module is made unimportable (``sys.modules[name] = None``: ``import``
fails and ``importlib.util.find_spec`` finds nothing, as on a machine without it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BLOCKED_RUN = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from entropy_watch.cli import main
main(sys.argv[2:])
"""


def _run_without(modules: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, modules, *argv], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize(
    ("blocked", "named"),
    [
        ("torch", "torch is not installed"),
        ("transformers", "transformers is not installed"),
        ("torch,transformers", "torch and transformers are not installed"),
    ],  # fmt: skip
)
def test_the_trainer_without_its_extras_names_them(tmp_path: Path, command: str, blocked: str, named: str) -> None:
    r = _run_without(blocked, "--store", str(tmp_path / "store"), command, "--steps", "1")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and named in lines[0], lines[0]
    assert "pip install 'entropy-watch[torch,hf]'" in lines[0], lines[0]
    assert not (tmp_path / "store").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("blocked", "statement", "extra"),
    [
        ("torch", "from entropy_watch.hooks import Watch", "torch"),
        ("transformers", "from entropy_watch.hooks.trl import attach", "hf"),
        ("transformers", "from entropy_watch.hooks.hf import EntropyWatchCallback", "hf"),
    ],  # fmt: skip
)
def test_the_hooks_without_their_extras_name_them(blocked: str, statement: str, extra: str) -> None:
    """The import a README snippet starts with raises MissingExtra naming the extra (it was a bare
    ModuleNotFoundError of torch from deep inside hooks/watch.py)."""
    code = f"import sys\nsys.modules[{blocked!r}] = None\ntry:\n    {statement}\nexcept ImportError as e:\n"
    code += "    print(type(e).__name__, e)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("MissingExtra ") and f"pip install 'entropy-watch[{extra}]'" in r.stdout, r
