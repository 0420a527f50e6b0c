"""The report is written whole or not at all: a write that fails part-way (a full disk, a file-size limit) leaves the
earlier report as it was and no partial file beside it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    from entropy_watch.analysis import RunSeries, analyze
    from entropy_watch.report import build_report

    steps = np.arange(120)
    series = RunSeries.from_arrays("r", steps, 1.2 * np.exp(-steps / 40.0) + 0.02)
    result = analyze(series)
    out = sys.argv[1]
    if sys.argv[2] == "limited":  # writes past 64 kB fail with EFBIG, as on a full disk (the report is megabytes)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
    try:
        build_report(series, result, out)
    except OSError as e:
        print("failed:", e.errno)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_failed_write_keeps_the_earlier_report(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    out = tmp_path / "r.html"
    run = [sys.executable, "-c", SCRIPT, str(out)]
    subprocess.run([*run, "free"], check=True, timeout=300)
    before = out.read_bytes()
    assert len(before) > 64_000
    res = subprocess.run([*run, "limited"], check=True, timeout=300, capture_output=True, text=True)
    assert res.stdout.startswith("failed:"), res.stdout + res.stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_a_report_without_an_analysis_result_is_a_type_error(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    import numpy as np

    from entropy_watch.analysis import RunSeries
    from entropy_watch.report import build_report

    series = RunSeries.from_arrays("r", np.arange(10), np.ones(10))
    with pytest.raises(TypeError, match="needs analyze\\(series\\)'s result"):
        build_report(series, None, tmp_path / "r.html")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
