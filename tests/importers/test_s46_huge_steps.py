"""Steps of 2**53 and more: parsed as floats, two distinct ones (9007199254740993 and ...992) read as one, and one
row silently replaced the other. Such rows are skipped with a note; the rows around them are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import load_log

BIG = [2**53 + 1, 2**53, 2**60 + 7]


def _write(p: Path, steps: list[int]) -> None:
    if p.suffix == ".jsonl":
        p.write_text("".join(json.dumps({"step": s, "entropy": 0.5 + (s % 7) / 100}) + "\n" for s in steps))
    else:
        lines = [f"{s},{0.5 + (s % 7) / 100}" for s in steps]
        if p.name.startswith("ragged"):  # a row with an extra field (skipped): the line reader, not Arrow's
            lines.insert(0, "0,0.5,extra")
        p.write_text("step,entropy\n" + "\n".join(lines) + "\n")


@pytest.mark.parametrize("name", ["m.csv", "ragged.csv", "m.jsonl"])
def test_steps_past_2_53_are_skipped_not_merged(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    _write(p, [*range(1, 101), *BIG])
    (run,) = load_log(p)
    steps, values = run.series("entropy/mean")
    assert steps.tolist() == list(range(1, 101))
    assert values.tolist() == [0.5 + (s % 7) / 100 for s in range(1, 101)]
    note = next(n for n in run.notes if "past 2**53" in n)
    assert "skipped 3 row(s)" in note and "first at line" in note


def test_the_step_just_below_2_53_is_kept(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    _write(p, [1, 2, 2**53 - 2, 2**53 - 1])
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == [1, 2, 2**53 - 2, 2**53 - 1]
    assert not any("past 2**53" in n for n in run.notes), run.notes


def test_a_log_of_huge_steps_only_is_refused_in_one_line(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    _write(p, [2**53 + 2 * i for i in range(1, 20)])
    with pytest.raises(ImportFormatError) as err:
        load_log(p)
    msg = str(err.value)
    assert "\n" not in msg and "m.csv line 2" in msg and "2**53" in msg, msg
