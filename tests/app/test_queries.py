"""Server-side downsampling as the app reads it, and the ``entropy-watch app`` command line (no browser, no AppTest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.app.display import Window
from entropy_watch.store import RunWriter, TailReader
from entropy_watch.store.reads import ALL_STEPS


@pytest.fixture(scope="module")
def long_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("long") / "store"
    n = 5000
    h = np.random.default_rng(0).random(n)
    w = RunWriter(root, "long")
    for lo in range(0, n, 1000):
        s = np.arange(lo, lo + 1000)
        w.write("scalars", {"step": s.tolist(), "name": [M.ENTROPY_MEAN] * 1000, "value": h[lo : lo + 1000].tolist()})
        w.write("hist", {"step": np.repeat(s, 2).tolist(), "bin": [3, 7] * 1000, "count": [5, 1] * 1000})
    w.write("scalars", {"step": [10], "name": [M.ENTROPY_MEAN], "value": [99.0]})  # a re-logged step
    w.close()
    h[10] = 99.0  # the latest value of a repeated step wins
    return root, h


def test_traces_are_bucketed_to_at_most_max_points(long_store: tuple[Path, np.ndarray]) -> None:
    root, h = long_store
    with TailReader(root) as reader:
        reader.poll()
        tr = reader.downsampled("long", [M.ENTROPY_MEAN], Window().bounds(None), max_points=2000)[M.ENTROPY_MEAN]
        assert len(tr) <= 2000 and tr.width == 3
        np.testing.assert_allclose(tr.mean[:5], h[:15].reshape(5, 3).mean(1))
        np.testing.assert_allclose(tr.hi[3], h[9:12].max())  # the re-logged step 10 counted once, latest value
        raw = reader.downsampled("long", [M.ENTROPY_MEAN], (100, 199))[M.ENTROPY_MEAN]
        np.testing.assert_array_equal(raw.steps, np.arange(100, 200))
        np.testing.assert_allclose(raw.mean, h[100:200])


def test_heatmap_keeps_counts_with_at_most_max_cols(long_store: tuple[Path, np.ndarray]) -> None:
    root, _ = long_store
    with TailReader(root) as reader:
        reader.poll()
        hm = reader.heatmap("long", 65, ALL_STEPS, max_cols=1000)
    assert hm.counts.shape == (1000, 65) and hm.width == 5
    assert hm.counts[:, 3].sum() == 5 * 5000 and hm.counts[:, 7].sum() == 5000


def test_window_last_n() -> None:
    assert Window(last=100).bounds(999)[0] == 900
    assert Window(lo=5, hi=10).bounds(999) == (5, 10)


def test_app_command_binds_to_localhost_and_finds_the_installed_app(tmp_path: Path) -> None:
    from entropy_watch.cli.app_cmd import streamlit_command

    cmd = streamlit_command(tmp_path, "127.0.0.1", 8765, True)
    main = Path(cmd[cmd.index("run") + 1])
    assert (
        main.name == "main.py" and (main.parent / "home.py").is_file() and (main.parent / "views" / "run.py").is_file()
    )
    assert not (main.parent / "pages").exists(), "a pages/ folder would be served before home.py's page config"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and cmd[-2:] == ["--store", str(tmp_path)]
    out = subprocess.run([sys.executable, "-m", "entropy_watch", "app", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "127.0.0.1" in out.stdout


def test_app_reads_only_through_the_store_interface() -> None:
    """app/ (and the monitor under it) never imports duckdb, never names the store's private columns and never
    computes a forecast: it renders the verdict (issue 12)."""
    import ast

    repo = Path(__file__).resolve().parents[2]
    for path in [*(repo / "app").rglob("*.py"), repo / "entropy_watch" / "monitor.py"]:
        src = path.read_text()
        tree = ast.parse(src)
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[0] == "duckdb" for m in mods), path
        assert "analysis.forecast" not in mods and "entropy_watch.analysis.forecast" not in mods, path
        assert "_writer" not in src and "_seq" not in src, path
