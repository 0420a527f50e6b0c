"""``watch LOG`` on a log another tool is still writing: a last line cut inside a number, a log rewritten or rotated.

A block-buffered writer (Python's csv module, a redirected stdout) leaves a file ending mid-line for as long as its
buffer takes to fill: the follower must never read ``0.`` of ``0.4486`` as an entropy of 0, nor the ``0.5`` of
``0.52`` as the reward — ``alerts LOG`` on the finished file never sees those values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from entropy_watch import metrics as M
from entropy_watch.analysis import RunSeries, analyze
from entropy_watch.importers import load_log
from entropy_watch.importers.follow import LogReader
from entropy_watch.monitor import Monitor


def _csv_line(step: int) -> str:
    return f"{step},0.5000,{0.6 * 0.995**step:.6f}\n"  # the entropy last, as a hand-written logger may put it


def _console_line(step: int) -> str:
    return f"(TaskRunner pid=41) step:{step} - critic/score/mean:0.5 - actor/entropy:{0.6 * 0.995**step:.6f}\n"


WRITERS = {
    "metrics.csv": ("step,reward,entropy\n", _csv_line),
    "verl_console.log": ("(TaskRunner pid=41) TaskRunner hostname: node-1\n", _console_line),
}


def _cut(line: str) -> str:
    """``line`` cut two characters into its last number (``0.448632`` -> ``0.``), no line end."""
    sep = ":" if " - " in line else ","
    return line[: line.rindex(sep) + 3]


def _reader(path: Path, notes: list[tuple[str, str]] | None = None) -> LogReader:
    return LogReader([path], on_note=(lambda run, note: notes.append((run, note))) if notes is not None else None)


def _poll(reader: LogReader) -> None:
    reader._seen.clear()  # every poll re-reads: no wait for the file system's modification-time granularity
    reader.poll()


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_last_line_cut_inside_a_number_waits_for_its_line_end(tmp_path, name) -> None:
    head, line = WRITERS[name]
    path = tmp_path / name
    path.write_text(head + "".join(line(s) for s in range(1, 31)) + _cut(line(31)))
    reader = _reader(path)
    _poll(reader)
    (run,) = reader._runs.values()
    steps, values = run.series(M.ENTROPY_MEAN)
    assert steps[-1] == 30 and values[-1] == pytest.approx(0.6 * 0.995**30, abs=1e-6)  # never step 31 at 0.0
    with open(path, "a") as f:
        f.write(line(31)[len(_cut(line(31))) :])
    _poll(reader)
    (run,) = reader._runs.values()
    steps, values = run.series(M.ENTROPY_MEAN)
    assert steps[-1] == 31 and values[-1] == pytest.approx(0.6 * 0.995**31, abs=1e-6)
    assert run.source == os.path.abspath(path) == run.meta["source"]  # as a plain read records it


def test_a_cut_last_line_reads_as_a_plain_read_would_name_it(tmp_path) -> None:
    """What the follower reports names the log, never its temporary copy; the run is named after the log."""
    path = tmp_path / "grpo-s0.jsonl"
    path.write_text('{"step": 1, "entropy": 0.5}\n{"step": 2, "entr')
    notes: list[tuple[str, str]] = []
    reader = _reader(path, notes)
    _poll(reader)
    assert list(reader._runs) == ["grpo-s0"]
    assert all("entropy-watch-follow" not in note for _, note in notes)
    # a line mid-write is no news: one note per poll that caught one ("last line (2) is unfinished", then 3, 4...)
    assert not [note for _, note in notes if "last line" in note]


def test_live_alerts_are_the_alerts_of_the_finished_log(tmp_path) -> None:
    """A CSV written by a block-buffered writer, polled while its last line is cut in the entropy: the monitor's
    alerts are the ones ``alerts LOG`` gives on the finished file (before: a cut ``0.`` read as entropy 0 raised a
    cliff at every step)."""
    head, line = WRITERS["metrics.csv"]
    path = tmp_path / "metrics.csv"
    path.write_text(head + "".join(line(s) for s in range(1, 51)))
    reader = _reader(path)
    live: list[tuple[int, str]] = []
    monitor = Monitor(reader, on_new_alerts=lambda run, new, v: live.extend((a.step, a.kind) for a in new))
    for s in range(51, 57):
        with open(path, "a") as f:
            f.write(_cut(line(s)))
        reader._seen.clear()
        monitor.poll()
        with open(path, "a") as f:
            f.write(line(s)[len(_cut(line(s))) :])
    (run,) = load_log(path)
    post = [(a.step, a.kind) for a in analyze(RunSeries.from_imported(run)).alerts]
    assert not [a for a in live if a not in post]


def _rows(first: int, last: int) -> str:
    data = {"actor/entropy": 0.5, "critic/score/mean": 0.3}
    return "".join(json.dumps({"step": s, "data": data}) + "\n" for s in range(first, last + 1))


def _said(notes: list[tuple[str, str]]) -> list[str]:
    return [note for run, note in notes if run == "run" and "no longer in it" in note]


@pytest.mark.parametrize("how", ["truncated", "rotated"])
def test_a_log_rewritten_from_its_start_is_said(tmp_path, how) -> None:
    """verl's file logger opens its JSONL with "wb": a resumed run truncates the log; a rotated log is a new file.
    The points the follower saw before are gone from the log, and ``alerts LOG`` will not see them: a note says so,
    once the file is still smaller at its next change (a file rewritten in place is, for a moment, smaller too)."""
    path = tmp_path / "run.jsonl"
    path.write_text(_rows(1, 40))
    notes: list[tuple[str, str]] = []
    reader = _reader(path, notes)
    _poll(reader)
    if how == "rotated":
        os.replace(path, tmp_path / "run.jsonl.1")
    path.write_text(_rows(31, 40))  # the resumed trainer starts its log anew
    _poll(reader)
    (run,) = reader._runs.values()
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == list(range(31, 41))
    with open(path, "a") as f:
        f.write(_rows(41, 41))
    _poll(reader)
    assert len(_said(notes)) == 1 and "shrank from" in _said(notes)[0]
    with open(path, "a") as f:  # growing again is no rewrite
        f.write(_rows(42, 42))
    _poll(reader)
    assert len(_said(notes)) == 1


def test_a_log_rewritten_in_place_and_caught_mid_write_is_no_news(tmp_path) -> None:
    """A logger that saves the whole table at every step (``df.to_csv``) is, for a moment, a shorter file."""
    path = tmp_path / "run.jsonl"
    path.write_text(_rows(1, 40))
    notes: list[tuple[str, str]] = []
    reader = _reader(path, notes)
    _poll(reader)
    path.write_text(_rows(1, 12))  # caught mid-write
    _poll(reader)
    path.write_text(_rows(1, 41))  # written out
    _poll(reader)
    assert not _said(notes)
    assert reader._runs["run"].series(M.ENTROPY_MEAN)[0].tolist() == list(range(1, 42))


def test_a_whole_json_line_without_its_line_end_is_read_at_once(tmp_path) -> None:
    """A JSON line cut short is no JSON; a whole one without its line end yet (a writer that writes the line end
    first, or later) is read at once, not one poll late."""
    path = tmp_path / "run.jsonl"
    path.write_text(_rows(1, 9) + _rows(10, 10).rstrip("\n"))
    reader = _reader(path)
    _poll(reader)
    assert reader._runs["run"].series(M.ENTROPY_MEAN)[0].tolist() == list(range(1, 11))


def test_a_counting_note_is_told_once_while_the_log_grows(tmp_path) -> None:
    """Before: ``watch`` on a verl console log printed "ignored 1 console line(s)", "ignored 2 ...", ... at every
    poll, since the count grows with the log."""
    path = tmp_path / "verl.log"
    path.write_text("")
    notes: list[tuple[str, str]] = []
    reader = _reader(path, notes)
    for s in range(1, 8):
        with open(path, "a") as f:
            f.write(f"(WorkerDict pid=9) UserWarning {s}\n(TaskRunner pid=4) step:{s} - actor/entropy:0.5\n")
        _poll(reader)
    ignored = [note for _, note in notes if note.startswith("ignored")]
    assert ignored == ["ignored 1 console line(s) that are not metrics"]


def test_a_trl_console_log_cut_inside_an_entry_waits_for_its_line_end(tmp_path) -> None:
    """A Trainer's console log is a text log too: its last entry cut mid-dict (``{'loss': 0.01, 'entropy': 0.``)
    was read as a line that is no entry, counted in the "ignored console line(s)" note at every poll."""
    lines = [str({"loss": 0.01, "entropy": 0.6 - 0.01 * n, "reward": 0.3}) for n in range(12)]
    path = tmp_path / "nohup.out"
    path.write_text("\n".join(lines) + "\n" + "{'loss': 0.01, 'entropy': 0.")
    (run,) = load_log(path, fmt="trl-console", whole_lines=True)
    assert len(run.series(M.ENTROPY_MEAN)[0]) == 12
    assert not [n for n in run.notes if "ignored" in n], run.notes
