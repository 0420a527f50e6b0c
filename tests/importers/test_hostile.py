"""Hostile inputs found by probing (issue 11): each is one ImportFormatError naming the file (and line), never an
internal error, a hang or a store left with litter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import import_log, load_log
from entropy_watch.importers import staging as staging_mod
from entropy_watch.importers.base import orphaned, unordered


def _one_line(err: pytest.ExceptionInfo, *patterns: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 500, msg
    for p in patterns:
        assert re.search(p, msg), msg
    return msg


@pytest.mark.parametrize("step", ["9223372036854775808", "1e30", "-3", "inf", "nan", "2.5"])
def test_steps_outside_int64_name_the_line(tmp_path: Path, step: str) -> None:
    """One absurd step is skipped with a note naming its line; a file of them is the error naming the first."""
    p = tmp_path / "o.csv"
    p.write_text(f"step,entropy\n1,0.5\n2,0.4\n{step},0.3\n")
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == [1, 2]
    assert any("first at line 4: step column 'step' holds" in n for n in run.notes), run.notes
    p.write_text(f"step,entropy\n{step},0.5\n{step},0.4\n3,0.3\n")
    with pytest.raises(ImportFormatError) as err:
        load_log(p)
    _one_line(err, r"o\.csv line 2: step column 'step' holds", "non-negative integer below 2\\*\\*63")


def test_steps_outside_int64_name_the_line_in_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "o.jsonl"
    p.write_text('{"step": 1, "entropy": 0.5}\n\n{"step": 1e30, "entropy": 0.4}\n')
    with pytest.raises(ImportFormatError) as err:
        load_log(p)
    _one_line(err, r"o\.jsonl line 3: step column 'step'")


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_deeply_nested_json_is_refused_with_its_line(tmp_path: Path, fmt: str) -> None:
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    p = tmp_path / f"d.{fmt}"
    if fmt == "jsonl":
        p.write_text('{"step": 1, "entropy": 0.5}\n' + deep.replace('{"a":', '{"step": 2, "a":', 1) + "\n")
    else:
        p.write_text("[" + deep + "]")
    with pytest.raises(ImportFormatError) as err:
        load_log(p, fmt=fmt)
    _one_line(err, r"d\.jsonl? line [12]", "nested")


def test_moderately_nested_json_is_flattened(tmp_path: Path) -> None:
    p = tmp_path / "n.jsonl"
    nested = '{"step": %d, "actor": {"entropy": %s, "x": {"y": {"z": 1}}}}\n'
    p.write_text("".join(nested % (s, 1 - s / 10) for s in range(5)))
    (run,) = load_log(p)
    assert "actor/x/y/z" in run.scalars and run.series("entropy/mean")[0].tolist() == list(range(5))


def test_a_megabyte_column_name_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    p.write_text("step,entropy," + "x" * 2**20 + "\n1,0.5,1\n")
    with pytest.raises(ImportFormatError) as err:
        load_log(p)
    _one_line(err, r"w\.csv line 1: column 3 has a name of 1,048,576 characters")


def test_a_megabyte_field_in_the_data_is_read(tmp_path: Path) -> None:
    """The csv module's 128 KiB field limit used to escape as an internal error; a long text cell is just text."""
    p = tmp_path / "f.csv"
    p.write_text("step,entropy,note\n1,0.5," + "y" * 2**20 + "\n2,0.4,ok\n")
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == [1, 2]
    assert "note" in run.meta["text_columns"]


@pytest.mark.timeout(60)
def test_devices_and_fifos_are_refused_without_opening(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for path, what in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device")):
        for call in (lambda p: load_log(p), lambda p: import_log(tmp_path / "s", p), lambda p: load_log(p, fmt="csv")):
            with pytest.raises(ImportFormatError) as err:
                call(path)
            _one_line(err, re.escape(str(path)), what)


def test_links_that_lead_nowhere_say_so(tmp_path: Path) -> None:
    loop_a, loop_b, dangling = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "gone.csv"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    dangling.symlink_to(tmp_path / "never-written.csv")
    with pytest.raises(ImportFormatError) as err:
        load_log(loop_a)
    _one_line(err, "symbolic link loop")
    with pytest.raises(ImportFormatError) as err:
        load_log(dangling)
    _one_line(err, "broken symbolic link", "never-written.csv")
    with pytest.raises(ImportFormatError) as err:
        load_log(tmp_path / "missing.csv")
    _one_line(err, "missing.csv does not exist")


def test_file_and_wandb_names_with_equals_become_valid_run_names(tmp_path: Path) -> None:
    p = tmp_path / "lr=1e-6.csv"
    p.write_text("step,entropy\n1,0.5\n2,0.4\n")
    assert import_log(tmp_path / "s", p) == ["lr_1e-6"]
    w = tmp_path / "export.csv"
    w.write_text("Step,beta=0.04 - actor/entropy,beta=0.1 - actor/entropy\n1,0.5,0.6\n2,0.4,0.5\n")
    assert sorted(r.name for r in load_log(w)) == ["beta_0.04", "beta_0.1"]


def test_stale_staging_folders_are_cleaned_and_live_ones_kept(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    me = staging_mod.host_id()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        now = time.time_ns()
        folders = {
            "dead": root / f".staging-{me}-{dead.pid}-{now}",
            "live": root / f".staging-{me}-{alive.pid}-{now}",
            "other host, recent": root / f".staging-elsewhere-{dead.pid}-{now}",
            "other host, old": root / f".staging-elsewhere-{alive.pid}-{now - 2 * 3600 * 10**9}",
            "aside, run missing": root / f".replaced-grpo-s0-{me}-{dead.pid}-{now}",
        }
        for f in folders.values():
            (f / "run=x").mkdir(parents=True)
        (folders["aside, run missing"] / "run.json").write_text("{}")
        log = tmp_path / "m.csv"
        log.write_text("step,entropy\n1,0.5\n")
        import_log(root, log)
        left = {k for k, f in folders.items() if f.exists()}
        assert left == {"live", "other host, recent"}
        assert (root / "run=grpo-s0" / "run.json").exists(), "an old run moved aside is restored, not deleted"
        assert not [p for p in root.iterdir() if p.name.startswith(".staging-") and p not in folders.values()]
    finally:
        alive.kill()
        alive.wait()


def test_arrow_and_line_readers_agree_on_a_messy_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from entropy_watch.importers import columns

    p = tmp_path / "m.csv"
    p.write_text(
        'step,entropy,reward,note\n0, 1.0 ,NA,a\n1,nan,0.1,b\n2,-inf,"0.2",c\n\n3,1_000,,d\n4,0.5,x,\n5,٣,0.3,e\n'
    )
    fast = load_log(p)[0]
    monkeypatch.setattr(columns, "read_csv_arrow", lambda *a: None)
    from entropy_watch.importers import generic

    monkeypatch.setattr(generic, "read_csv_arrow", lambda *a: None)
    slow = load_log(p)[0]
    assert fast.notes == slow.notes and fast.meta.get("text_columns") == slow.meta.get("text_columns")
    assert fast.scalars.keys() == slow.scalars.keys()
    for k in fast.scalars:
        np.testing.assert_array_equal(fast.scalars[k][0], slow.scalars[k][0])
        np.testing.assert_array_equal(fast.scalars[k][1], slow.scalars[k][1])


@pytest.mark.parametrize("suffix", [".csv.gz", ".jsonl.bz2"])
def test_a_log_named_compressed_but_not_is_read_as_what_it_holds(tmp_path: Path, suffix: str) -> None:
    """Arrow decompresses a path by its extension: a plain log named ``.csv.gz``, or a gzip whose header is damaged
    (the fuzz found it: "OSError: zlib inflate failed"), escaped as an internal error. The bytes decide."""
    p = tmp_path / f"m{suffix}"
    if suffix == ".csv.gz":
        p.write_text("step,entropy\n1,0.5\n2,0.4\n3,0.3\n")
    else:
        p.write_text("".join(f'{{"step": {s}, "entropy": {1 - s / 10}}}\n' for s in range(4)))
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == ([1, 2, 3] if suffix == ".csv.gz" else [0, 1, 2, 3])
    import gzip

    damaged = bytearray(gzip.compress(b"step,entropy\n" + b"".join(b"%d,0.5\n" % s for s in range(200))))
    damaged[2] = 9  # the compression method: no longer gzip to the magic-byte check
    p = tmp_path / "d.csv.gz"
    p.write_bytes(bytes(damaged))
    with pytest.raises(ImportFormatError) as err:
        load_log(p)
    _one_line(err, r"d\.csv\.gz")


def _rows(n: int) -> list[str]:
    return [f"{i},{1 - i / 100:.4f},0.5" for i in range(1, n + 1)]


def test_a_quote_never_closed_skips_its_row_and_keeps_the_rest(tmp_path: Path) -> None:
    """csv's quoting lets one stray quote swallow every row after it into one cell: that row is skipped, the lines
    it swallowed are read as the rows they are, and the note names the line where the quote opened."""
    p = tmp_path / "q.csv"
    rows = _rows(59)
    rows.insert(30, '31,"0.7,0.5')
    p.write_text("step,entropy,reward\n" + "\n".join(rows) + "\n")
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == list(range(1, 60))
    assert any("quote that is never closed (first at line 32" in n for n in run.notes), run.notes
    p.write_text('step,entropy,reward\n1,0.5,0.1\n2,"0.4,0.2\n3,0.3,0.3\n4,0.3,0.3\n5,0.2,0.2\n')  # a short file
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == [1, 3, 4, 5]


def test_a_quoted_value_across_lines_is_still_one_value(tmp_path: Path) -> None:
    p = tmp_path / "n.csv"
    p.write_text('step,entropy,note\n1,0.5,"restarted\nfrom a checkpoint"\n2,0.4,x\n')
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == [1, 2] and not any("quote" in n for n in run.notes)


def test_one_step_out_of_line_is_skipped_not_read_as_a_restart(tmp_path: Path) -> None:
    """Among steps 30 and 31 a row saying step 10^15 is a corrupt cell: read as a restart it made the run end at step
    10^15 and retook the baselines after it."""
    p = tmp_path / "s.csv"
    rows = _rows(59)
    rows.insert(30, "1000000000000000,0.3,0.5")
    p.write_text("step,entropy,reward\n" + "\n".join(rows) + "\n")
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == list(range(1, 60)) and not run.events
    assert any("step 1000000000000000 between steps 30 and 31" in n for n in run.notes), run.notes
    p.write_text("step,entropy\n" + "\n".join(f"{s},0.5" for s in [*range(1, 11), *range(6, 13)]) + "\n")
    (run,) = load_log(p)  # a real restart climbs on from where it stepped back to
    assert [e["step"] for e in run.events] == [6] and run.series("entropy/mean")[0].tolist() == list(range(1, 13))


def test_a_last_step_far_past_every_other_is_skipped(tmp_path: Path) -> None:
    """A stray 10^18 on the last row (no next row to be out of line with) made the run end at step 10^18 and
    forecast its floor "by step 1,891,726,056,737,528,064". A last step within reach of the run's cadence is kept."""
    p = tmp_path / "s.csv"
    p.write_text("step,entropy,reward\n" + "\n".join([*_rows(59), "1000000000000000000,0.3,0.5"]) + "\n")
    (run,) = load_log(p)
    assert run.series("entropy/mean")[0].tolist() == list(range(1, 60)) and not run.events
    assert any("step 1000000000000000000 after step 59, the last, far past every step before it" in n
               for n in run.notes), run.notes  # fmt: skip
    for last in (60, 200, 1000):  # a final row at a later step (an evaluation at the end) is no typo
        p.write_text("step,entropy,reward\n" + "\n".join([*_rows(59), f"{last},0.3,0.5"]) + "\n")
        (run,) = load_log(p)
        assert run.series("entropy/mean")[0].tolist()[-1] == last


def test_a_step_logged_twice_says_which_value_was_kept(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("step,entropy\n1,0.5\n2,0.49\n2,0.3\n3,0.48\n")
    (run,) = load_log(p)
    assert run.series("entropy/mean")[1].tolist() == [0.5, 0.3, 0.48]
    assert any("steps logged twice: kept the last row's value in 'entropy' (1 steps)" in n for n in run.notes)


@pytest.mark.parametrize("where", ["only", "middle"])
def test_a_line_nested_100k_deep_neither_kills_the_process_nor_blocks_the_file(tmp_path: Path, where: str) -> None:
    """Arrow's JSON reader overflows its native stack on such a line (SIGSEGV: no exception to catch), so the file
    must go to the line reader, which skips the line with a note. Run in a child: a crash must fail, not kill, the
    suite."""
    deep = '{"step": 31, "entropy": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [deep] if where == "only" else [f'{{"step": {i}, "entropy": 0.5}}' for i in range(1, 60)]
    if where == "middle":
        lines.insert(30, deep)
    p = tmp_path / "deep.jsonl"
    p.write_text("\n".join(lines) + "\n")
    code = (
        "import sys\nfrom entropy_watch.importers import load_log\n"
        "try:\n    (run,) = load_log(sys.argv[1]); print(run.series('entropy/mean')[0].size, run.notes)\n"
        "except Exception as e:\n    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    if where == "only":
        assert out.stdout.startswith("ERR") and "deep.jsonl line 1: JSON nested too deeply" in out.stdout
    else:
        assert out.stdout.startswith("59 ") and "first at line 31: JSON nested too deeply" in out.stdout


def _orphaned_naive(s: list[int]) -> list[bool]:
    """Point j is replaced when some later point k steps back (s[k] < s[k-1]) to a step at or below s[j]."""
    return [any(s[k] < s[k - 1] and s[k] <= s[j] for k in range(j + 1, len(s))) for j in range(len(s))]


def test_orphaned_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        pieces = [np.arange(a, a + int(rng.integers(1, 12))) for a in rng.integers(0, 30, size=int(rng.integers(1, 4)))]
        s = np.concatenate(pieces).astype(np.int64)
        want = np.zeros(len(s), bool) if unordered(s) else np.array(_orphaned_naive(s.tolist()), bool)
        np.testing.assert_array_equal(orphaned(s), want, err_msg=str(s.tolist()))


def test_a_restart_that_stops_short_leaves_out_what_it_replaced(tmp_path: Path) -> None:
    """Steps 1-10, then a restart from step 5 that logs to 7 (crashed again, or still running): steps 8-10 of the
    first training are a trajectory the run no longer has. Kept, the run read 5-7 resumed then 8-10 from before
    (entropy back up to 0.6 after the resumed 0.2, and the run's end at step 10)."""
    p = tmp_path / "short.csv"
    first = [f"{s},{1.0 - 0.05 * s},0.1" for s in range(1, 11)]
    again = [f"{s},0.2,0.3" for s in range(5, 8)]
    p.write_text("step,entropy,reward\n" + "\n".join(first + again) + "\n")
    (run,) = load_log(p)
    steps, ent = run.series("entropy/mean")
    assert steps.tolist() == list(range(1, 8)) and ent[4:].tolist() == [0.2, 0.2, 0.2]
    assert run.series("reward/mean")[1][-1] == 0.3
    assert [(e["step"], e["payload"]["from_step"]) for e in run.events] == [(5, 10)]
    note = "6 row(s) logged before it at or past the step it went back to are left out, replaced by the resumed "
    assert any(note + "training (3 logged again, 3 at steps it did not log again)" in n for n in run.notes), run.notes
