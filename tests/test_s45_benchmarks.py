"""Benchmarks that must run from a fresh clone: without the real logs beside the repository, and without TRL."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import each other by name, as when run from benchmarks/
    spec = importlib.util.spec_from_file_location(f"s45_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_bench_detectors_without_real_logs_says_so_and_scores_the_synthetic_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = _load("bench_detectors", monkeypatch)
    argv = ["bench_detectors.py", "--tools", "ours", "--densities", "40", "--per-kind", "1", "--no-timing"]
    monkeypatch.setattr(sys, "argv", [*argv, "--kinds", "healthy", "--real", str(tmp_path / "absent")])
    mod.main()
    out = capsys.readouterr().out
    assert f"real runs (labels.json) not found in {tmp_path / 'absent'}" in out
    assert "Synthetic, heldout seeds, 40 points x 1 runs" in out
    # no peer ran: nothing is claimed against peers (it read "ours ahead of or level with every peer")
    assert "SUMMARY: ours alone in this run" in out and "every peer" not in out


def test_bench_invariance_without_real_logs_skips_part_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mod = _load("bench_invariance", monkeypatch)
    monkeypatch.setattr(mod, "HEALTHY_KINDS", ("healthy",))
    monkeypatch.setattr(mod, "COLLAPSE_KINDS", ("steady_collapse", "fast_collapse", "solved"))
    argv = ["bench_invariance.py", "--points", "40", "--per-kind", "1", "--tools", "ours"]
    monkeypatch.setattr(sys, "argv", [*argv, "--real", str(tmp_path / "absent")])
    mod.main()
    out = capsys.readouterr().out
    assert "part C skipped" in out and "\nA. entropy x c" in out and "\nC. " not in out


def test_bench_entropy_a_missing_peer_loses_only_its_own_row(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    mod = _load("bench_entropy", monkeypatch)
    real = mod._method

    def method(name: str):
        if name == "trl":
            raise ImportError("No module named 'trl'")
        return real(name)

    monkeypatch.setattr(mod, "_method", method)
    got = mod.measure_time(["ours", "trl", "floor"], 4, 64, "fp32", "cpu", repeats=1)
    assert set(got["times"]) == {"ours", "floor"}
    assert "trl" in got["failed_methods"]
