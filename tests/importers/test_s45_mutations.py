"""Damage that logs meet in the wild (session 45's mutation fuzzer over the real runs), each kept as a fixed case.

Every log here is built in code: the rows around the damage must read as they do in the undamaged log, and what was
skipped must be said in the notes; unreadable input fails with one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import load_log
from entropy_watch.importers.follow import LogReader

HEADER = "step,run_name,entropy,reward"
ROWS = [f"{s},grpo-a,{1 - s / 100:.2f},{s / 100:.2f}" for s in range(1, 21)]


def _write(tmp_path: Path, lines: list[str], name: str = "log.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("run_column", [True, False])
@pytest.mark.parametrize("ragged", [False, True], ids=["arrow-reader", "line-reader"])
def test_a_header_repeated_mid_file_is_skipped_with_a_note(tmp_path: Path, run_column: bool, ragged: bool) -> None:
    # two CSV logs joined with cat (a resumed run appended): the second header is no data row. With a run_name
    # column (a W&B export, Deep-GRPO's logs) it made a run of its own with no step and failed the whole import.
    lines = [HEADER, *ROWS[:10], HEADER, *ROWS[10:]]
    if ragged:  # a row with a field too many sends the file to the line-by-line reader
        lines.insert(3, "3,grpo-a,0.97,0.03,extra")
    if not run_column:
        lines = [ln.replace(",grpo-a", "").replace(",run_name", "") for ln in lines]
    clean = load_log(_write(tmp_path, [lines[0], *[r for r in lines[1:] if r != lines[0]]], "clean.csv"))[0]
    runs = load_log(_write(tmp_path, lines))
    assert len(runs) == 1
    steps, values = runs[0].series("entropy/mean")
    np.testing.assert_array_equal(steps, np.arange(1, 21))
    np.testing.assert_array_equal(values, clean.series("entropy/mean")[1])
    np.testing.assert_array_equal(runs[0].series("reward/mean")[1], clean.series("reward/mean")[1])
    where = 13 if ragged else 12
    assert f"skipped 1 row(s) that repeat the header (first at line {where}): logs joined one after another?" in (
        runs[0].notes
    )
    assert not any("step column" in n or "non-numeric" in n for n in runs[0].notes)


def test_rows_located_after_a_repeated_header_keep_their_line_numbers(tmp_path: Path) -> None:
    lines = [HEADER, *ROWS[:10], HEADER, ROWS[10], "x,grpo-a,0.5,0.5", *ROWS[11:]]
    run = load_log(_write(tmp_path, lines))[0]
    assert any("first at line 14: step column 'step' holds 'x'" in n for n in run.notes), run.notes


def test_a_file_of_repeated_headers_has_no_data_rows(tmp_path: Path) -> None:
    p = _write(tmp_path, [HEADER, HEADER, HEADER])
    with pytest.raises(ImportFormatError, match="has a header but no data rows"):
        load_log(p)


def test_a_first_line_of_a_million_cells_fails_at_once(tmp_path: Path) -> None:
    # a 10 MB line of numbers on top of a log (a dump pasted in, two files joined): taken for a CSV header, its
    # duplicate-name check counted each of its 10^6 cells over the whole line: hours, not one line of error. The
    # width check (importers/loader.py MAX_COLUMNS) now refuses such a line before any header is read.
    p = tmp_path / "log.jsonl"
    p.write_text(",".join(["0.1"] * 1_000_000) + "\n" + '{"step": 1, "entropy": 0.5}\n')
    with pytest.raises(ImportFormatError, match=r"its first line has 1,000,000 fields or more, over the 50,000"):
        load_log(p)


def _special(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / f"{kind}.csv"
    if kind == "loop":
        (tmp_path / "other.csv").symlink_to(p)
        p.symlink_to(tmp_path / "other.csv")
    elif kind == "fifo":
        os.mkfifo(p)
    else:
        p.symlink_to(tmp_path / "missing.csv")
    return p


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("loop", "is a symbolic link loop; point it at a log file"),
        ("fifo", "is a FIFO (named pipe), not a log file; save the log to a file and pass that"),
        ("dangling", "is a broken symbolic link (its target"),
    ],
)
def test_following_a_path_that_is_no_log_file_says_so_once(tmp_path: Path, kind: str, said: str) -> None:
    # watch --once on a link loop was an "internal error" (Path.resolve raised RuntimeError); on a FIFO or a link to
    # nothing it printed nothing and exited 0, as if the log held no alert. Nothing is opened: a FIFO never blocks.
    path = _special(tmp_path, kind)
    errors: list[tuple[str, str]] = []
    reader = LogReader([path], on_error=lambda p, m: errors.append((p, m)))
    reader.poll()
    reader.poll()
    assert errors == [(str(path), errors[0][1])] and said in errors[0][1]
    assert reader.versions() == {}


def test_a_csv_that_grows_while_read_line_by_line_is_read_as_it_was(tmp_path: Path) -> None:
    # import or alerts on a CSV a trainer is still writing: the line reader (a last line cut short sends the file
    # there) met the end of the file inside row 60 ("6"); the trainer then wrote the rest ("0,0.4,0.1"), which was
    # read as a row of step 0 after step 59: a restart that replaced every row of the run
    rows = [f"{s},{1 - s / 100:.2f},0.1" for s in range(1, 60)]
    rows[2] += ",extra"  # a ragged row: the line reader
    p = tmp_path / "live.csv"
    p.write_text("step,entropy,reward\n" + "".join(r + "\n" for r in rows) + "6")
    size, read = p.stat().st_size, [0]

    def progress(n: int) -> None:  # called per line read: the writer appends once the reader reached the end
        read[0] += n
        if read[0] == size:
            with open(p, "a") as f:
                f.write("0,0.40,0.1\n61,0.39,0.1\n")

    run = load_log(p, progress=progress)[0]
    steps, values = run.series("entropy/mean")
    np.testing.assert_array_equal(steps, [s for s in range(1, 60) if s != 3])
    np.testing.assert_allclose(values, [1 - s / 100 for s in range(1, 60) if s != 3])
    assert not run.events
    assert any("last line (61) is unfinished" in n for n in run.notes), run.notes


@pytest.mark.parametrize(
    ("name", "head", "cut"),
    [("m.csv", "step,entropy,reward\n", "61,0.5,0."), ("v.log", "", "step:61 - actor/entropy:0.")],
)
def test_a_followed_log_that_grows_after_its_line_end_was_checked_reads_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, head: str, cut: str
) -> None:
    # watch reads a log up to its last line end; one that ended in a line end was read from the file itself, and a
    # line the trainer began in between was read cut inside a number: entropy 0.0 at step 61, a collapse for a poll
    from entropy_watch.importers import loader

    line = "{},{:.4f},0.1\n" if name.endswith(".csv") else "step:{} - actor/entropy:{:.4f} - critic/score/mean:0.1\n"
    p = tmp_path / name
    p.write_text(head + "".join(line.format(s, 1 - s / 100) for s in range(1, 61)))
    checked = loader._unfinished_line

    def then_grows(path: Path, fmt: str | None) -> int | None:
        end = checked(path, fmt)
        with open(path, "a") as f:
            f.write(cut)
        return end

    monkeypatch.setattr(loader, "_unfinished_line", then_grows)
    run = load_log(p, whole_lines=True)[0]
    steps, values = run.series("entropy/mean")
    np.testing.assert_array_equal(steps, np.arange(1, 61))
    assert values.min() > 0.39
    assert run.source == str(p.resolve())


def test_a_followed_log_whose_one_line_is_unfinished_has_nothing_to_read_yet(tmp_path: Path) -> None:
    p = tmp_path / "v.log"
    p.write_text("step:1 - actor/entropy:0.99")  # 0.990099 being written
    with pytest.raises(ImportFormatError, match=r"v.log has no complete line yet \(still being written\?\)"):
        load_log(p, whole_lines=True)
    p.write_text("step:1 - actor/entropy:0.990099\n")
    assert load_log(p, whole_lines=True)[0].series("entropy/mean")[1].tolist() == [0.990099]


def test_a_jsonl_whose_first_line_is_longer_than_the_detection_head_is_read_as_jsonl(tmp_path: Path) -> None:
    # a first record with the run's config or sample completions (300 KB): cut by the 256 KiB head, it was no JSON,
    # so the log was taken for one JSON document and failed: "line 2: invalid JSON (Extra data); fix the file"
    p = tmp_path / "log.jsonl"
    rows = [json.dumps({"step": s, "entropy": 1 - s / 100}) for s in range(1, 30)]
    p.write_text(json.dumps({"step": 0, "config": {"notes": "x" * 300_000}}) + "\n\n" + "\n".join(rows) + "\n")
    run = load_log(p)[0]
    assert run.fmt == "jsonl"
    np.testing.assert_array_equal(run.series("entropy/mean")[0], np.arange(1, 30))
    doc = tmp_path / "rows.json"  # one JSON document on one line, as long: still a document
    doc.write_text(json.dumps({"rows": [{"step": s, "entropy": 0.5, "pad": "x" * 10_000} for s in range(1, 40)]}))
    assert load_log(doc)[0].fmt == "json"


@pytest.mark.parametrize("damage", ["nul", "edit"])
def test_a_damaged_first_line_of_a_jsonl_is_skipped_like_any_other_line(tmp_path: Path, damage: str) -> None:
    # a NUL byte or a hand edit in line 1 made the log "one JSON document", which failed whole ("line 1: invalid
    # JSON (Invalid control character at); fix the file"); the same damage in line 2 skips that line
    rows = [json.dumps({"step": s, "entropy": 1 - s / 100}) for s in range(1, 30)]
    rows[0] = rows[0][:5] + "\x00" + rows[0][5:] if damage == "nul" else rows[0].replace("}", ",,}")
    p = tmp_path / "log.jsonl"
    p.write_text("\n".join(rows) + "\n")
    run = load_log(p)[0]
    np.testing.assert_array_equal(run.series("entropy/mean")[0], np.arange(2, 30))
    skipped = "skipped 1 line(s) that could not be read (first at line 1: invalid JSON"
    assert any(n.startswith(skipped) for n in run.notes), run.notes
    one_row = tmp_path / "one.json"  # a document with one row on a line of its own stays a document
    one_row.write_text('{"rows": [\n{"step": 1, "entropy": 0.5}\n]}\n')
    assert load_log(one_row)[0].fmt == "json"


def test_a_verl_log_whose_first_step_is_damaged_is_still_read_as_verl(tmp_path: Path) -> None:
    # detection looked at line 1 alone: with "step": "abc" there the log was plain JSONL, its columns data/..., and
    # critic/score/mean was no reward ("no reward column found")
    data = [{"actor/entropy": 1 - s / 100, "critic/score/mean": 0.5} for s in range(30)]
    lines = [json.dumps({"step": s, "data": d}) for s, d in enumerate(data)]
    lines[0] = lines[0].replace('"step": 0', '"step": "abc"')
    p = tmp_path / "verl.jsonl"
    p.write_text("\n".join(lines) + "\n")
    run = load_log(p)[0]
    assert run.fmt == "verl-jsonl" and run.mapping["reward/mean"] == "critic/score/mean"
    np.testing.assert_array_equal(run.series("entropy/mean")[0], np.arange(1, 30))


def test_a_followed_log_that_ends_in_a_line_end_is_read_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No copy of the log at each poll when nothing was cut: a multi-GB log copied to a small $TMPDIR (a container's
    tmpfs) failed with "File too large"."""
    from entropy_watch.importers import loader

    p = tmp_path / "log.csv"
    p.write_text("step,entropy,reward\n" + "".join(f"{s},{1 - s / 100:.4f},0.1\n" for s in range(1, 61)))

    def no_copy(path: Path, size: int) -> None:
        raise AssertionError("copied a log that ends in a line end")

    monkeypatch.setattr(loader, "_head_copy", no_copy)
    steps, _ = load_log(p, whole_lines=True)[0].series("entropy/mean")
    np.testing.assert_array_equal(steps, np.arange(1, 61))
