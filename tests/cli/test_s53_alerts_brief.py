"""``alerts --brief``: one line per run, its verdict's headline, for a store of many runs (the full listing printed
17 tables and their actions for ../shared/real_runs); the same exit status as the full listing."""

from __future__ import annotations

from pathlib import Path


def test_brief_prints_each_run_s_headline_once_with_the_same_exit_status(ew, store: Path) -> None:
    full = ew("--store", store, "alerts")
    brief = ew("--store", store, "alerts", "--brief")
    assert brief.code == full.code == 2, (brief.err, full.err)
    lines = brief.out.splitlines()
    assert [x.split(":")[0] for x in lines] == ["g", "h", "sft-s0"], lines
    for line in lines[:2]:  # each run's first line in the full listing, word for word
        assert line in full.out.splitlines(), line
    assert lines[0].startswith("g: critical collapse") and lines[1].startswith("h: ok"), lines
    assert "nothing to analyse" in lines[2]  # a run without entropy says so, as in the full listing
    assert "what to do" not in brief.out and "step" not in brief.out.split(":", 1)[0]


def test_brief_with_json_is_a_usage_error(ew, store: Path) -> None:
    r = ew("--store", store, "alerts", "--brief", "--json")
    assert r.code == 2 and "--brief" in r.err and r.out == "", r.err


def test_a_mistyped_run_name_is_told_the_closest_stored_one(ew, store: Path) -> None:
    """Among a large store's runs the listing shows the first 10 names: the typo's closest match comes first."""
    for cmd in (["show", "sft-s1"], ["alerts", "sft-s1"], ["watch", "--once", "sft-s1"], ["rm", "sft-s1", "--yes"]):
        r = ew("--store", store, *cmd)
        assert r.code in (1, 3) and "(did you mean 'sft-s0'? runs: g, h, sft-s0)" in r.err, (cmd, r.err)
    r = ew("--store", store, "watch", "sft-s1", "--iterations", "1", "--interval", "0.01")  # waited for, and said
    assert r.code == 0 and "is not in the store yet (did you mean 'sft-s0'? runs: g, h, sft-s0)" in r.err, r.err
    r = ew("--store", store, "show", "zzz")  # nothing close: the runs only, as before
    assert r.code == 1 and f"run 'zzz' not found in store {store} (runs: g, h, sft-s0)" in r.err, r.err


def test_a_run_without_alerts_prints_its_notes_on_their_own_lines(ew, tmp_path: Path) -> None:
    """They were put in parentheses on the green "no alerts" line: a caution (a controller at its cap, too few points
    to decide) read as part of the all-clear, parentheses nested in parentheses."""
    from entropy_watch import metrics as M
    from entropy_watch.hooks import Watch

    with Watch("short", store=tmp_path) as w:
        for s in range(3):
            w.log(s, **{M.ENTROPY_MEAN: 1.0})
    r = ew("--store", tmp_path, "alerts", "short")
    lines = r.out.splitlines()
    assert r.code == 0 and "short: no alerts" in lines, r.out
    notes = [x for x in lines if x.startswith("note: ")]
    assert notes and any("3 logged points" in x for x in notes), r.out
