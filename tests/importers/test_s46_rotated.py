"""A JSON-lines log rotated under its writer (logrotate's ``copytruncate``: copied, then truncated while the trainer
goes on writing): it starts with the end of a cut record, or with a hole of zero bytes as long as what it held when
the writer kept its offset. Both were read as a CSV and refused; ``import`` and ``watch`` read on after them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from entropy_watch.importers import detect_format, load_log
from entropy_watch.importers.follow import LogReader


def _lines(n: int, verl: bool = False) -> list[str]:
    if verl:
        return [json.dumps({"step": i, "data": {"actor/entropy": 1 - i / 1000, "critic/score/mean": 0.5}}) + "\n"
                for i in range(1, n + 1)]  # fmt: skip
    return [json.dumps({"step": i, "entropy": 1 - i / 1000, "reward": 0.5}) + "\n" for i in range(1, n + 1)]


@pytest.mark.parametrize("verl", [False, True])
@pytest.mark.parametrize("hole", [False, True])
def test_a_log_starting_mid_record_reads_on_from_the_next_line(tmp_path: Path, verl: bool, hole: bool) -> None:
    lines = _lines(200, verl)
    before = "".join(lines[:120]) + lines[120][:17]  # what the log held when it was truncated
    p = tmp_path / "m.jsonl"
    p.write_bytes((b"\0" * len(before) if hole else b"") + (lines[120][17:] + "".join(lines[121:])).encode())
    assert detect_format(p) == ("verl-jsonl" if verl else "jsonl")
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == list(range(122, 201))
    assert any("the end of a record whose start is not in the file" in n for n in run.notes), run.notes
    assert any("zero bytes" in n for n in run.notes) == hole


def test_a_hole_then_whole_records_loses_no_record(tmp_path: Path) -> None:
    """The writer was between records when the log was truncated: its first record follows the zeros on line 1."""
    lines = _lines(200)
    p = tmp_path / "m.jsonl"
    p.write_bytes(b"\0" * 300_000 + "".join(lines[120:]).encode())  # a hole longer than the bytes sniffed
    assert detect_format(p) == "jsonl"
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == list(range(121, 201))
    assert any("starts with 300,000 zero bytes" in n for n in run.notes), run.notes


def _bump(p: Path, seconds: int) -> None:
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


@pytest.mark.parametrize("append", [True, False])
def test_watch_reads_on_after_copytruncate(tmp_path: Path, append: bool) -> None:
    """``watch LOG`` followed a log to step 150; logrotate copied and truncated it while the trainer was mid-record.
    The follower stayed at step 150 for good (every poll: "3 fields but the header has 2"); it reads on."""
    p = tmp_path / "m.jsonl"
    lines = _lines(300)
    errors: list[str] = []
    notes: list[str] = []
    reader = LogReader([p], on_error=lambda _, m: errors.append(m), on_note=lambda _, n: notes.append(n))
    with open(p, "a" if append else "w") as fh:
        fh.write("".join(lines[:150]) + lines[150][:20])
        fh.flush()
        reader.poll()
        assert reader.versions()["m"][1] == 150
        os.truncate(p, 0)  # copytruncate; an appending writer goes on at the new end, another at its old offset
        fh.write(lines[150][20:] + "".join(lines[151:170]))
        fh.flush()
        _bump(p, 1)
        reader.poll()
        assert reader.versions()["m"][1] == 170, errors
        fh.write("".join(lines[170:200]))
        fh.flush()
        _bump(p, 2)
        reader.poll()
    assert not errors
    assert reader.series_many("m", ["entropy/mean"])["entropy/mean"][0].tolist() == list(range(152, 201))
    assert any("the end of a record whose start is not in the file" in n for n in notes), notes


def test_a_csv_is_still_a_csv(tmp_path: Path) -> None:
    """Only lines that are JSON objects after the first make the first a cut record: a CSV stays a CSV."""
    p = tmp_path / "m.csv"
    p.write_text("step,entropy\n1,0.5\n2,0.4\n3,0.3\n")
    assert detect_format(p) == "csv"
    p.write_text('step,config\n1,"{""lr"": 1}"\n2,"{""lr"": 2}"\n')  # JSON in a quoted cell is no JSON line
    assert detect_format(p) == "csv"
