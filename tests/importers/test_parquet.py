"""A metrics table saved as Parquet (a tracker's history pulled into a DataFrame and saved): read like a CSV."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import detect_format, load_log


def _history(n: int = 40) -> dict:
    steps = np.arange(0, 5 * n, 5)
    return {
        "_step": pa.array(steps, pa.int64()),
        "train/entropy": pa.array([0.9 * 0.98**i if i % 7 else None for i in range(n)], pa.float64()),
        "train/reward": pa.array(np.linspace(0.1, 0.6, n), pa.float32()),
        "optim": pa.array([{"lr": 1e-6, "grad_norm": float(i)} for i in range(n)]),
        "phase": pa.array(["rl"] * n).dictionary_encode(),
        "sample_lengths": pa.array([[1, 2, 3]] * n),
    }


def test_a_history_table_reads_like_a_csv(tmp_path) -> None:
    """Step and metric aliases, a null cell a gap, a struct column flattened to a/b, a category decoded, a list
    column left out with a note; the same series as the table written as CSV."""
    cols = _history()
    p = tmp_path / "history.parquet"
    pq.write_table(pa.table(cols), p)
    assert detect_format(p) == "parquet"
    (run,) = load_log(p)
    assert run.fmt == "parquet" and run.name == "history"
    assert run.mapping["step"] == "_step" and run.mapping[M.ENTROPY_MEAN] == "train/entropy"
    steps, ent = run.series(M.ENTROPY_MEAN)
    expect = [(5 * i, 0.9 * 0.98**i) for i in range(40) if i % 7]
    assert steps.tolist() == [s for s, _ in expect] and ent.tolist() == pytest.approx([h for _, h in expect])
    assert run.series("optim/grad_norm")[1].tolist() == pytest.approx(list(range(40)))
    assert "phase" not in run.scalars  # text, decoded and not numbers
    assert "left out 1 column(s) of lists, maps, bytes or dates: 'sample_lengths'" in run.notes
    csv = tmp_path / "history.csv"
    csv.write_text(
        "_step,train/entropy,train/reward\n"
        + "".join(
            f"{s},{'' if e is None else repr(e)},{repr(float(r))}\n"
            for s, e, r in zip(
                cols["_step"].to_pylist(),
                cols["train/entropy"].to_pylist(),
                cols["train/reward"].to_pylist(),
                strict=True,
            )
        )
    )
    (same,) = load_log(csv)
    for name in (M.ENTROPY_MEAN, M.REWARD_MEAN):
        assert np.array_equal(run.series(name)[0], same.series(name)[0])
        assert np.allclose(run.series(name)[1], same.series(name)[1], rtol=1e-12)


def test_nan_cells_and_a_chunked_file(tmp_path) -> None:
    """NaN stays a value (a logged divergence), written in several row groups it reads the same."""
    n = 30
    h = [0.8] * n
    h[20] = math.nan
    p = tmp_path / "h.parquet"
    pq.write_table(pa.table({"step": np.arange(n), "entropy": h}), p, row_group_size=7)
    (run,) = load_log(p)
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(n)) and math.isnan(ent[20]) and np.isfinite(np.delete(ent, 20)).all()


def test_bad_parquet_files_get_one_line(tmp_path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1" + b"\0" * 64)
    with pytest.raises(ImportFormatError, match="not a readable parquet file") as e:
        load_log(broken)
    assert "\n" not in str(e.value)
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"step": pa.array([], pa.int64()), "entropy": pa.array([], pa.float64())}), empty)
    with pytest.raises(ImportFormatError, match="no rows"):
        load_log(empty)
    lists = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"x": [[1.0]], "y": [b"z"]}), lists)
    with pytest.raises(ImportFormatError, match="no column of numbers or text"):
        load_log(lists)
    comp = tmp_path / "completions_00003.parquet"
    pq.write_table(pa.table({"step": [3], "prompt": ["p"], "completion": ["c"], "advantage": [0.5]}), comp)
    with pytest.raises(ImportFormatError, match="TRL completions file"):
        load_log(comp)
    text = tmp_path / "log.csv"
    text.write_text("step,entropy\n1,0.5\n")
    with pytest.raises(ImportFormatError, match="not a readable parquet file"):
        load_log(text, fmt="parquet")


def test_a_dataframe_index_is_read_as_pandas_saved_it(tmp_path) -> None:
    """``df.set_index("_step").to_parquet()`` of evenly spaced steps keeps the steps only in the pandas metadata (a
    RangeIndex): they are the steps, not the row numbers; the unnamed index of a filtered frame
    (``__index_level_0__``) is row labels, left out with a note, never a metric."""
    pd = pytest.importorskip("pandas")
    steps = np.arange(0, 200, 5)
    df = pd.DataFrame(
        {"_step": steps, "train/entropy": np.linspace(1.0, 0.2, 40), "train/reward": np.linspace(0, 1, 40)}
    )
    named = tmp_path / "named.parquet"
    df.set_index("_step").to_parquet(named)
    assert "_step" not in pq.read_schema(named).names  # where pandas keeps it
    (run,) = load_log(named)
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == steps.tolist()
    filtered = tmp_path / "filtered.parquet"
    keep = np.random.default_rng(0).random(40) > 0.3
    df[keep].to_parquet(filtered)
    assert "__index_level_0__" in pq.read_schema(filtered).names
    (run,) = load_log(filtered)
    assert "__index_level_0__" not in run.scalars and run.series(M.ENTROPY_MEAN)[0].tolist() == steps[keep].tolist()
    assert any("'__index_level_0__'" in n and "not a metric" in n for n in run.notes)
