"""Run names seen from the command line: messages say what is wrong with the name, and names derived from file
names or W&B run names are names the store accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LOG = "step,entropy,reward\n" + "".join(f"{i},{1.0 - 0.004 * i:.4f},{0.1 + 0.002 * i:.4f}\n" for i in range(1, 61))


@pytest.mark.parametrize("name", ["é" * 200, "运" * 100, "a" * 201], ids=["400-bytes", "300-bytes", "201-ascii"])
def test_too_long_run_name_says_so(ew, tmp_path: Path, name: str, monkeypatch) -> None:
    p = tmp_path / "m.csv"
    p.write_text(LOG)
    for argv in (["show", name], ["alerts", name]):
        r = ew("--store", tmp_path / "s", *argv)
        assert r.code in (1, 3), (argv, r.err)
        assert "run name is too long" in r.err and "bytes" in r.err and r.err.count("\n") == 1, r.err
        assert "File name too long" not in r.err and "--store" not in r.err
    monkeypatch.setenv("COLUMNS", "400")  # the usage box wraps its message at the terminal's width
    r = ew("--store", tmp_path / "s", "import", p, "--run", name)  # an option's bad value: a usage error
    assert r.code == 2 and "Invalid value for '--run'" in r.err and "run name is too long" in r.err, r.err
    assert "File name too long" not in r.err
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").glob("run=*"))


def test_longest_accepted_name_fits_the_file_system(ew, tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text(LOG)
    name = "é" * 100  # 200 bytes in UTF-8: the limit
    r = ew("--store", tmp_path / "s", "import", p, "--run", name)
    assert r.code == 0, r.err
    assert ew("--store", tmp_path / "s", "show", name, "--json").code == 0


def test_file_name_with_equals_sign_imports_and_analyses(ew, tmp_path: Path) -> None:
    p = tmp_path / "lr=1e-6.csv"
    p.write_text(LOG)
    r = ew("--store", tmp_path / "s", "import", p, "--json")
    assert r.code == 0, r.err
    (row,) = json.loads(r.out)["runs"]
    assert "=" not in row["run"]
    assert ew("--store", tmp_path / "s", "show", row["run"], "--json").code == 0
    r = ew("--store", tmp_path / "s", "alerts", p, "--json")
    assert r.code in (0, 1, 2), r.err


def test_wandb_run_name_with_equals_sign(ew, tmp_path: Path) -> None:
    p = tmp_path / "wandb_export.csv"
    rows = "".join(f"{i},{1.0 - 0.004 * i:.4f},{0.1 + 0.002 * i:.4f}\n" for i in range(1, 61))
    p.write_text("Step,lr=3e-6 beta=0.04 - actor/entropy,lr=3e-6 beta=0.04 - critic/score/mean\n" + rows)
    r = ew("--store", tmp_path / "s", "import", p, "--json")
    assert r.code == 0, r.err
    (row,) = json.loads(r.out)["runs"]
    assert "=" not in row["run"]
    r = ew("--store", tmp_path / "s", "alerts", p, "--json")
    assert r.code in (0, 1, 2), r.err


def test_compare_refuses_a_store_that_already_holds_its_runs(ew, tmp_path: Path) -> None:
    """A second comparison in the same store appended its steps to the first one's runs (five rows at step 0 after
    five calls): it is refused before anything trains, naming the runs."""
    from entropy_watch.hooks import Watch

    store = tmp_path / "store"
    with Watch("grpo-s0", store=store) as w:
        w.log(0, x=1.0)
    r = ew("--store", store, "compare", "--algos", "grpo", "--steps", "1", "--no-precision-check")
    assert r.code == 1 and "runs grpo-s0 already exist in" in r.err and "another --store" in r.err, r.err
    assert not (store / "run=sft-s0").exists()
