"""Malformed input: one clear ImportFormatError naming the file and the row, and the store left unchanged."""

from __future__ import annotations

import json
import os

import pytest

from entropy_watch.errors import ImportFormatError, InvalidRunName
from entropy_watch.importers import RunExists, import_log, load_log


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text)
    return p


BAD = {
    "empty": ("e.csv", "", r"e\.csv is empty"),
    "blank": ("b.jsonl", "\n\n", r"b\.jsonl is empty"),
    "header only": ("h.csv", "step,entropy\n", "header but no data rows"),
    "truncated json": ("t.json", '[{"step": 1, "entropy": 0.5}, {"step": 2, "ent', r"t\.json line 1: invalid JSON"),
    "bad jsonl lines only": (
        "j.jsonl",
        '{"step": 2,, }\n{"step": 1, "entropy": 1}\n[1, 2]\n',
        r"j\.jsonl line 1: invalid JSON",
    ),
    "jsonl not object": ("k.jsonl", '{"step": 1, "entropy": 1}\n[1, 2]\n', r"k\.jsonl line 2: expected a JSON object"),
    "text entropy": (
        "n.csv",
        "step,entropy\n1,0.5\n2,abc\n3,n/a\n4,-\n",
        r"n\.csv line 3: entropy column 'entropy' holds 'abc'; the column is mostly text",
    ),
    "non-numeric step": ("s.csv", "step,entropy\n1,0.5\nx,0.4\n", r"s\.csv line 3: step column 'step' holds 'x'"),
    "fractional step": ("f.csv", "step,entropy\n1.5,0.5\n", "not a non-negative integer"),
    "no entropy": (
        "r.csv",
        "step,reward,loss\n1,0.5,1\n",
        r"no entropy column found in .*r\.csv \(columns: reward, loss\); pass --map entropy=COLUMN",
    ),
    "long row": ("l.csv", "step,entropy\n1,0.5\n2,0.4,9\n", r"l\.csv line 3: 3 fields but the header has 2"),
    "binary": ("x.bin", b"\x00\x01\x02\xff\xfe" * 10, "not a text log"),
    "unknown": ("u.txt", "hello world\n", "cannot tell the format of .*u.txt; pass --format"),
    "truncated trainer_state": (
        "trainer_state.json",
        '{\n  "log_history": [\n    {"step": 1, "entropy": 0.5',
        "invalid JSON",
    ),
    "verl wrong shape": ("v.jsonl", '{"step": 1, "data": {"actor/entropy": 1}}\n{"step": 2, "entropy": 1}\n', None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_error_and_store_unchanged(tmp_path, case) -> None:
    name, text, pattern = BAD[case]
    path = _write(tmp_path, name, text)
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(ImportFormatError) as err:
        import_log(store, path, fmt="verl-jsonl" if case == "verl wrong shape" else None)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400
    if pattern:
        import re

        assert re.search(pattern, msg), msg
    else:
        assert "line 2" in msg
    assert os.listdir(store) == []


SKIPPED = {  # one bad row among good ones: skipped, counted, the first named; the rows around it are read
    "entropy text cell": ("n.csv", "step,entropy\n1,0.5\n2,abc\n3,0.4\n4,0.3\n", [1, 3, 4], "line 3: 'abc'"),
    "step text cell": ("s.csv", "step,entropy\n1,0.5\nx,0.4\n3,0.3\n4,0.2\n", [1, 3, 4], "line 3: step column"),
    "absurd step": ("a.csv", "step,entropy\n1,0.5\n2,0.4\n1e30,0.3\n4,0.2\n", [1, 2, 4], "line 4: step column"),
    "long row": ("l.csv", "step,entropy\n1,0.5\n2,0.4,9\n3,0.3\n", [1, 3], "line 3: 3 fields but the header has 2"),
    "quoted long row": ("q.csv", 'step,entropy\n1,"0.5"\n2,0.4,9\n3,0.3\n', [1, 3], "line 3: 3 fields"),
    "jsonl lines": (
        "j.jsonl",
        '{"step": 1, "entropy": 1}\n{"step": 2,, }\n{"step": 3, "entropy": 1}\n[1, 2]\n{"step": 4, "entropy": 0.9}\n',
        [1, 3, 4],
        "2 line(s) that could not be read (first at line 2: invalid JSON",
    ),
    "json list entry": (
        "l.json",
        '[{"step": 1, "entropy": 1}, 7, {"step": 3, "entropy": 0.9}]',
        [1, 3],
        "entry 2: expected a JSON object",
    ),
    "verl line": (
        "v.jsonl",
        '{"step": 1, "data": {"actor/entropy": 1}}\n{"step": 2, "entropy": 1}\n'
        '{"step": 3, "data": {"actor/entropy": 0.9}}\n',
        [1, 3],
        "line 2: expected verl's",
    ),
}


@pytest.mark.parametrize("case", sorted(SKIPPED))
def test_one_bad_row_never_blocks_the_rows_around_it(tmp_path, case) -> None:
    name, text, steps, said = SKIPPED[case]
    path = _write(tmp_path, name, text)
    (run,) = load_log(path, fmt="verl-jsonl" if case == "verl line" else None)
    assert run.series("entropy/mean")[0].tolist() == steps
    (note,) = [n for n in run.notes if "skipped" in n]
    assert said in note and "\n" not in note, run.notes
    from entropy_watch.store import Store

    store = tmp_path / "store"
    (name,) = import_log(store, path, fmt="verl-jsonl" if case == "verl line" else None)  # it imports, notes kept
    assert Store(store).series(name, "entropy/mean")[0].tolist() == steps
    assert any(said in n for n in Store(store).run_meta(name)["import_notes"])


def test_missing_path_and_bad_mapping(tmp_path) -> None:
    with pytest.raises(ImportFormatError, match="does not exist"):
        load_log(tmp_path / "nope.csv")
    p = _write(tmp_path, "m.csv", "step,entropy\n1,0.5\n")
    with pytest.raises(ImportFormatError, match=r"column 'ent' given for entropy/mean not found .*--map entropy="):
        load_log(p, mapping={"entropy": "ent"})
    with pytest.raises(ImportFormatError, match="unknown mapping key 'entropyy'"):
        load_log(p, mapping={"entropyy": "entropy"})
    with pytest.raises(ImportFormatError, match="unknown format 'xls'"):
        load_log(p, fmt="xls")
    with pytest.raises(InvalidRunName):
        load_log(p, run="../evil")


def test_existing_run_is_refused_then_replaced_atomically(tmp_path) -> None:
    from entropy_watch.store import Store

    store = tmp_path / "store"
    p = _write(tmp_path, "r.csv", "step,entropy\n1,0.5\n2,0.4\n")
    assert import_log(store, p) == ["r"]
    with pytest.raises(RunExists, match="pass --replace"):
        import_log(store, p)
    _write(tmp_path, "r.csv", "step,entropy\n1,0.9\n2,0.8\n3,0.7\n")
    assert import_log(store, p, replace=True) == ["r"]
    steps, values = Store(store).series("r", "entropy/mean")
    assert steps.tolist() == [1, 2, 3] and values.tolist() == [0.9, 0.8, 0.7]
    left = sorted(n for n in os.listdir(store) if n.startswith(("run=", ".")))
    assert left == ["run=r"]  # no staging or replaced folders left behind (root files like _common_metadata aside)


def test_failed_multi_run_publish_withdraws_everything(tmp_path, monkeypatch) -> None:
    from entropy_watch.importers import store_import

    store = tmp_path / "store"
    p = _write(tmp_path, "two.csv", "step,run_name,entropy\n1,a,0.9\n1,b,0.5\n")
    real = store_import.stage_run
    calls = []

    def flaky(staging, r):
        calls.append(r.name)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(staging, r)

    monkeypatch.setattr(store_import, "stage_run", flaky)
    with pytest.raises(OSError, match="disk full"):
        import_log(store, p)
    assert [n for n in os.listdir(store) if n.startswith(("run=", "."))] == []


def test_run_json_records_provenance(tmp_path) -> None:
    from entropy_watch.store import Store

    p = _write(tmp_path, "x.jsonl", '{"step": 0, "optim/entropy": 0.7, "env/all/reward/total": 0.1}\n')
    import_log(tmp_path / "s", p, run="tinker")
    meta = Store(tmp_path / "s").run_meta("tinker")
    info = Store(tmp_path / "s").runs()[0]
    assert info.state == "imported" and info.last_step == 0
    assert meta["source"] == str(p.resolve()) and meta["format"] == "jsonl"
    assert meta["column_mapping"]["entropy/mean"] == "optim/entropy" and meta["importer_version"]
    assert meta["entropy_definition"] and json.dumps(meta)


def test_a_reward_column_of_text_is_named_not_called_missing(tmp_path) -> None:
    """A reward written as "12%" was left out with "no reward column found; pass --map reward=COLUMN": the column is
    there, and the note says what is wrong with it."""
    from entropy_watch.importers import load_log

    p = tmp_path / "pct.csv"
    p.write_text("step,entropy,reward\n" + "".join(f"{i},{1 - i / 80},{i}%\n" for i in range(60)))
    (run,) = load_log(p)
    assert "reward column 'reward' is not numeric (first cell '0%' at line 2): left out" in " ".join(run.notes)
    assert not any("no reward column found" in n for n in run.notes)
