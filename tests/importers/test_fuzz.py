"""Fuzzing the importers (the harness that found issue 11's crashes, kept so each class stays fixed).

Property: whatever the bytes, ``load_log`` returns well-formed runs (valid names, int64 steps ascending and unique,
float64 values of the same length) or raises ImportFormatError with one line naming the file, never another
exception. The Arrow reader and the line reader agree on every CSV the Arrow reader accepts. Derandomized with
modest example counts, so the default suite stays fast and deterministic.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import generic, import_log, load_log
from entropy_watch.store.layout import safe_run_name, validate_run_name

FUZZ = settings(
    max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

CELLS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "NA", "n/a", "null", "None", "nan", "-inf", "1_000", "٣", "1e400", "x", "0x10", "+.5"]),
    st.text(alphabet=string.printable, max_size=12),
)
NAMES = st.one_of(
    st.sampled_from(["step", "entropy", "reward", "actor/entropy", "Step", "run_name", "lr=1e-6 - actor/entropy"]),
    st.text(min_size=0, max_size=20),
    st.text(alphabet="=/\\.\x00\u202e é运 -,;\t\"'", max_size=8),
)


def _check(runs: list) -> None:
    for r in runs:
        assert validate_run_name(r.name) == r.name
        for name, (steps, values) in r.scalars.items():
            assert isinstance(name, str)
            assert steps.dtype == np.int64 and values.dtype == np.float64 and steps.shape == values.shape
            assert (steps >= 0).all() and (np.diff(steps) > 0).all()


def _load(content: str | bytes, suffix: str, fmt: str | None = None) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"fuzz{suffix}"
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        try:
            runs = load_log(p, fmt=fmt)
        except ImportFormatError as e:
            msg = str(e)
            assert "\n" not in msg and msg.strip(), msg
            return []
        _check(runs)
        return runs


@st.composite
def csv_text(draw: st.DrawFn) -> str:
    header = draw(st.lists(NAMES, min_size=0, max_size=4))
    if draw(st.booleans()):  # a recognisable log most of the time, so the parse goes past the header
        header = draw(st.permutations(["step", "entropy", *header[:2]]))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 1), max_size=12))
    sep = draw(st.sampled_from([",", "\t", ";"]))
    quote = draw(st.booleans())

    def cell(c: str) -> str:
        return '"' + c.replace('"', '""') + '"' if quote or sep in c or '"' in c or "\n" in c else c

    return "\n".join(sep.join(cell(c) for c in row) for row in [header, *rows]) + draw(st.sampled_from(["", "\n"]))


@FUZZ
@given(csv_text())
@example("step,entropy\n1,0.5\n9223372036854775808,0.4\n")  # issue 11: OverflowError escaped
@example("step,entropy,x\n1,0.5," + "y" * 200_000 + "\n")  # csv field limit escaped
@example("step,entropy," + "n" * 2**20 + "\n1,0.5,1\n")  # a megabyte column name
def test_any_csv_loads_or_fails_cleanly(text: str) -> None:
    _load(text, ".csv")


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_load_or_fail_cleanly(data: bytes) -> None:
    _load(data, ".csv")
    _load(data, ".jsonl", fmt="jsonl")


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=6),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(NAMES, inner, max_size=3)),
    max_leaves=8,
)


LOG_RECORDS = st.lists(
    st.fixed_dictionaries(
        {"step": st.one_of(st.integers(-(2**70), 2**70), JSON_VALUES), "entropy": JSON_VALUES},
        optional={"reward": JSON_VALUES, "actor": st.dictionaries(NAMES, JSON_VALUES, max_size=3)},
    ),
    max_size=10,
)


@FUZZ
@given(st.one_of(LOG_RECORDS, st.lists(st.dictionaries(NAMES, JSON_VALUES, max_size=5), max_size=10)), st.booleans())
@example([{"step": 1, "entropy": 0.5}, {"step": 2**64, "entropy": 0.4}], False)  # issue 11: OverflowError escaped
@example([{"step": 1, "entropy": 0.5}, {"step": 2**64, "entropy": 0.4}], True)
def test_any_jsonl_and_json_load_or_fail_cleanly(records: list[dict], as_list: bool) -> None:
    if as_list:
        _load(json.dumps(records), ".json", fmt="json")
    else:
        _load("".join(json.dumps(r) + "\n" for r in records), ".jsonl", fmt="jsonl")


@st.composite
def numeric_csv(draw: st.DrawFn) -> str:
    cols = ["step", "entropy", *draw(st.lists(st.sampled_from(["reward", "kl", "note", "x y"]), unique=True))]
    n = draw(st.integers(1, 15))
    steps = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    lines = [",".join(cols)]
    for s in steps:
        lines.append(",".join([str(s), *(draw(CELLS).replace(",", " ").replace('"', "") for _ in cols[1:])]))
    return "\n".join(lines) + "\n"


@FUZZ
@given(numeric_csv())
def test_arrow_and_line_readers_agree(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "agree.csv"
        p.write_text(text)
        outcomes = []
        for fast in (True, False):
            real = generic.read_csv_arrow
            if not fast:
                generic.read_csv_arrow = lambda *a: None  # type: ignore[assignment]
            try:
                runs = load_log(p, fmt="csv")
                outcomes.append(
                    (
                        "ok",
                        [
                            (r.name, r.notes, {k: (s.tolist(), v.tolist()) for k, (s, v) in r.scalars.items()})
                            for r in runs
                        ],
                    )
                )
            except ImportFormatError as e:
                outcomes.append(("error", str(e)))
            finally:
                generic.read_csv_arrow = real  # type: ignore[assignment]
        assert json.dumps(outcomes[0], default=str) == json.dumps(outcomes[1], default=str)


@FUZZ
@given(st.text(max_size=300))
def test_derived_run_names_always_pass_validation(text: str) -> None:
    name = safe_run_name(text)
    assert validate_run_name(name) == name
    assert len(name.encode("utf-8")) <= 200
    assert safe_run_name(name) == name, "a valid name is kept as it is"


@pytest.mark.parametrize(
    "stem", ["lr=1e-6", "a/b", "x" * 300, "é" * 120, ".hidden", "..", "\u202eevil", "=", " ", "-x", "--"]
)
def test_file_names_import_under_a_derived_name(tmp_path: Path, stem: str) -> None:
    safe = stem.replace("/", "_")
    p = tmp_path / f"{safe[:200]}.csv"
    p.write_text("step,entropy\n1,0.5\n2,0.4\n")
    (name,) = import_log(tmp_path / "s", p)
    assert validate_run_name(name) == name


def _binary_seeds() -> dict[str, bytes]:
    """A small valid file of each binary format, to damage: Parquet, gzip, a trackio and an MLflow SQLite file, a W&B
    offline run (the one wandb wrote for test_wandb_offline)."""
    import gzip
    import io
    import sqlite3

    import pyarrow as pa
    import pyarrow.parquet as pq

    out: dict[str, bytes] = {}
    buf = io.BytesIO()
    pq.write_table(pa.table({"step": list(range(12)), "entropy": [0.9**i for i in range(12)]}), buf)
    out[".parquet"] = buf.getvalue()
    out[".csv.gz"] = gzip.compress(b"step,entropy\n" + b"".join(b"%d,%f\n" % (i, 0.9**i) for i in range(12)))
    with tempfile.TemporaryDirectory() as tmp:
        for name, ddl, rows in (
            (
                "trackio",
                "CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id TEXT, timestamp TEXT, run_name TEXT, step INT, "
                "metrics TEXT)",
                [
                    f"INSERT INTO metrics VALUES ({i}, 'r', 't', 'run', {i}, '{{\"entropy\": {0.9**i}}}')"
                    for i in range(12)
                ],
            ),
            (
                "mlflow",
                "CREATE TABLE metrics (key TEXT, value FLOAT, timestamp INT, run_uuid TEXT, step INT, is_nan INT)",
                [
                    "CREATE TABLE runs (run_uuid TEXT, name TEXT, lifecycle_stage TEXT)",
                    "INSERT INTO runs VALUES ('u', 'run', 'active')",
                ]  # fmt: skip
                + [f"INSERT INTO metrics VALUES ('entropy', {0.9**i}, {i}, 'u', {i}, 0)" for i in range(12)],
            ),
        ):
            p = Path(tmp) / f"{name}.db"
            con = sqlite3.connect(p)
            for sql in (ddl, *rows):
                con.execute(sql)
            con.commit()
            con.close()
            out[f".{name}.db"] = p.read_bytes()
    out[".wandb"] = (Path(__file__).parent / "data" / "run-ewtest01.wandb").read_bytes()
    return out


BINARY_SEEDS = _binary_seeds()


@FUZZ
@given(
    st.sampled_from(sorted(BINARY_SEEDS)),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6),
    st.floats(0.05, 1.0),
)
def test_damaged_binary_logs_load_or_fail_cleanly(suffix: str, flips: list[tuple[float, int]], keep: float) -> None:
    """A Parquet, gzip, SQLite or W&B file with bytes overwritten and its tail cut: well-formed runs or one line."""
    data = bytearray(BINARY_SEEDS[suffix])
    for where, value in flips:
        data[int(where * len(data))] = value
    _load(bytes(data[: max(8, int(keep * len(data)))]), suffix)
