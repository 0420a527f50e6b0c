"""What the commands print: data as data (never rich markup, control characters escaped), whole words on a pipe,
SQL errors as one line, compaction in words, and an empty store pointing at commands that exist."""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entropy_watch.cli import app
from entropy_watch.store import RunWriter

HOSTILE = st.text(alphabet=string.ascii_letters[:6] + "[]/()=#*_`<> '\x1b\x07\r\n\t\x7f\x9b\u202e", max_size=24)


def printable(s: str) -> str:
    """How a terminal must show ``s``: control and bidi-override characters as Python escapes, the rest as is."""
    return "".join(
        c.encode("unicode_escape").decode() if ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u202e" else c for c in s
    )


def _sql_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


@pytest.mark.parametrize("value", ["[/foo]", "[red]red[/red]", "[x](https://e.org)", "[/INST]", "[bold]"])
def test_sql_prints_markup_like_values_as_they_are(ew, store: Path, value: str) -> None:
    r = ew("--store", store, "sql", f"SELECT {_sql_literal(value)} AS {json.dumps(value)}")
    assert r.code == 0, r.err
    assert r.out.count(value) == 2  # header and cell


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE)
def test_sql_prints_any_string_as_data(ew, store: Path, value: str) -> None:
    r = ew("--store", store, "sql", f"SELECT 1 AS n, {_sql_literal(value)} AS v")
    assert r.code == 0, r.err
    assert printable(value) in r.out
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", r.out), r.out  # nothing that drives a terminal


def test_token_text_from_a_chat_template(ew, tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "llama")
    texts = ["[INST]", " Hi", "[/INST]", "[red]x[/red]", "\x1b[2J"]
    w.write("tokens", {"step": [1] * len(texts), "pos": list(range(len(texts))), "token_text": texts})
    w.close()
    r = ew("--store", tmp_path, "sql", "SELECT pos, token_text FROM tokens ORDER BY pos")
    assert r.code == 0, r.err
    for t in texts[:4]:
        assert t in r.out
    assert "\\x1b[2J" in r.out and "\x1b" not in r.out


def test_import_with_a_markup_like_column_name(ew, tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("step,[/x],[red]r[/red]\n1,0.5,0.1\n2,0.4,0.2\n")
    r = ew("--store", tmp_path / "s", "import", p, "--map", "entropy=[/x]", "--map", "reward=[red]r[/red]")
    assert r.code == 0, r.err
    assert "[/x]" in r.out and "[red]r[/red]" in r.out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=HOSTILE.filter(lambda s: s.strip() and s == s.strip() and not set(s) & set(",\r\n\"'=")))
def test_import_prints_any_column_name_as_data(ew, tmp_path_factory: pytest.TempPathFactory, column: str) -> None:
    d = tmp_path_factory.mktemp("imp")
    p = d / "m.csv"
    p.write_text(f"step,{column}\n1,0.5\n2,0.4\n", newline="")
    r = ew("--store", d / "s", "import", p, "--map", f"entropy={column}", "--run", "r")
    assert r.code == 0, r.err
    assert printable(column) in r.out


def test_progress_bar_description_is_data(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import sys

    import numpy as np

    from entropy_watch.analysis import RunSeries
    from entropy_watch.cli import alerts_cmds

    monkeypatch.setattr(alerts_cmds, "LONG_RUN", 1)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    steps = np.arange(60)
    series = RunSeries.from_arrays("[/x]", steps, 1.0 * 0.97**steps)
    res = alerts_cmds._progress_analyze(series, show=True)
    assert res is not None


def test_tables_on_a_pipe_keep_whole_words(ew, ew_proc, store: Path) -> None:
    word = "zero_variance_groups_" + "x" * 90
    query = f"SELECT '{word}' AS kind, repeat('many words ', 20) AS message"
    for r in (ew("--store", store, "sql", query), ew_proc("--store", store, "sql", query)):
        assert r.code == 0, r.err
        assert word in r.out and "many words " * 20 in r.out
    r = ew("--store", store, "alerts", "g")
    kinds = {a["kind"] for a in json.loads(ew("--store", store, "alerts", "g", "--json").out)[0]["alerts"]}
    assert kinds and all(re.search(rf"\b{k}\b", r.out) for k in kinds), r.out


def test_json_stays_the_machine_format(ew, store: Path) -> None:
    long = "y" * 300
    r = ew("--store", store, "sql", f"SELECT '{long}' AS v", "--json")
    assert json.loads(r.out) == [{"v": long}]
    assert {row["run"] for row in json.loads(ew("--store", store, "ls", "--json").out)} == {"g", "h", "sft-s0"}


@pytest.mark.parametrize("value", ["x\u009b31mRED", "a\u2028b", "\u202eevil", "z\u200bw", "\x7f", "e\u061c"])
def test_json_shows_terminal_controls_as_escapes(ew, store: Path, value: str) -> None:
    """json.dumps escapes only C0 controls: a C1 CSI (U+009B), a line separator or a bidi override in a value went
    to the terminal raw under --json. They print as \\uXXXX, the same JSON value."""
    r = ew("--store", store, "sql", "SELECT $$" + value + "$$ AS v", "--json")
    assert r.code == 0 and value not in r.out and json.loads(r.out) == [{"v": value}], r


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("SELECT * FROM scalar", ["scalar", "scalars"]),
        ("SELECT nocol FROM scalars", ["nocol"]),
        ("SELECT * FROM scalars WHERE", ["syntax"]),
    ],
)
def test_sql_errors_are_one_line(ew, store: Path, query: str, names: list[str]) -> None:
    r = ew("--store", store, "sql", query)
    assert r.code == 1 and r.out == ""
    assert r.err.startswith("error: ") and r.err.count("\n") == 1, r.err
    assert "internal error" not in r.err
    for n in names:
        assert n in r.err.lower(), r.err


def test_compact_says_what_it_did(ew, tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "many")
    for i in range(5):
        w.write("scalars", {"step": [i], "name": ["entropy/mean"], "value": [1.0 - 0.1 * i]})
    w.close()
    r = ew("--store", tmp_path, "compact", "--min-age", "0")
    assert r.code == 0, r.err
    assert "many: merged 5 segment files into 1 part file (5 rows)" in r.out, r.out
    assert "Report(" not in r.out
    again = ew("--store", tmp_path, "compact", "--min-age", "0")
    assert "many: nothing to merge" in again.out


def _commands() -> set[str]:
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _named_commands(text: str) -> set[str]:
    return set(re.findall(r"entropy-watch ([a-z][a-z-]*)", text))


def test_empty_store_messages_name_commands_that_exist(ew, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    outs = [ew("--store", empty, "ls"), ew("--store", empty, "alerts", "grpo-s0")]
    for r in outs:
        text = r.out + r.err
        named = _named_commands(text)
        assert named and named <= _commands(), text
        assert "make demo" in text and "entropy-watch import" in text


def test_readme_sql_example_runs_and_orders_its_rows(ew, tmp_path: Path) -> None:
    from entropy_watch.synthetic import write_to_store

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    queries = [ln.split('"')[1] for ln in readme.splitlines() if ln.startswith('entropy-watch sql "')]
    (query,) = [q for q in queries if q.upper().startswith("SELECT")]
    assert "ORDER BY" in query.upper()
    write_to_store(tmp_path, "grpo-s0", kind="healthy", seed=0, n_steps=120)
    r = ew("--store", tmp_path, "sql", query, "--json", "--limit", "1000")
    assert r.code == 0, r.err
    steps = [row["step"] for row in json.loads(r.out)]
    assert len(steps) == 120 and steps == sorted(steps)
    for other in (q for q in queries if q != query):  # every other example the README gives runs too
        r = ew("--store", tmp_path, "sql", other, "--json")
        assert r.code == 0 and json.loads(r.out), (other, r.err)


def test_a_reader_that_stops_early_keeps_the_exit_status(store: Path) -> None:
    """``alerts | head -1``: the rest of the output goes nowhere and the exit status is still the verdict's (rich's
    own broken-pipe handler exits 1, which a CI gate reads as "warning")."""
    fcntl = pytest.importorskip("fcntl")
    cmd = [sys.executable, "-m", "entropy_watch", "--store", str(store), "alerts", "g", "h", "g", "h", "g", "h"]
    env = {**os.environ, "COLUMNS": "80"}
    full = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert full.returncode == 2 and len(full.stdout) > 8192, (full.returncode, len(full.stdout))
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)  # a page: the output cannot fit in the pipe
    proc = subprocess.Popen(cmd, stdout=write_end, stderr=subprocess.PIPE, env=env)
    os.close(write_end)
    assert os.read(read_end, 100)  # the reader takes a line's worth and goes away
    os.close(read_end)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == full.returncode, err.decode()
    assert not err.strip(), err.decode()


def test_sql_tells_null_nan_and_text_apart(ew, store: Path) -> None:
    """A logged NaN entropy (the divergence the tool alerts on) printed as "N/A", like the text 'N/A'; NULL as
    Python's "None"."""
    r = ew("--store", store, "sql", "SELECT 'nan'::DOUBLE AS a, NULL AS b, 'inf'::DOUBLE AS c, 'N/A' AS d, 'None' AS e")
    (row,) = [line for line in r.out.splitlines() if "N/A" in line]
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["NaN", "NULL", "inf", "N/A", "None"], r.out


def test_sql_fetches_no_more_than_its_limit_and_says_when_it_cut(ew, store: Path) -> None:
    """``--limit 2`` over 300 million rows fetched them all (2.5 GB) and cut after; ``--json`` cut silently."""
    from entropy_watch.store import Store

    table = Store(store).sql("SELECT * FROM range(300000000)", limit=3)
    assert table.num_rows == 3
    r = ew("--store", store, "sql", "SELECT * FROM range(1000)", "--json", "--limit", "5")
    assert len(json.loads(r.out)) == 5 and "more than 5 rows: the first 5 shown" in r.err and r.code == 0
    r = ew("--store", store, "sql", "SELECT * FROM range(1000)", "--limit", "5")
    assert "more than 5 rows: the first 5 shown; raise --limit for more" in r.out
    r = ew("--store", store, "sql", "SELECT * FROM range(5)", "--json", "--limit", "5")
    assert len(json.loads(r.out)) == 5 and r.err == ""
