"""Compressed logs (gzip, bzip2, xz) and UTF-16 ones read as the plain file would be; a truncated stream keeps its
complete rows."""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import lzma
import tempfile
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import load_log

PACK = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path, monkeypatch):
    """Temporary copies go under tmp_path/t, so the test can see that none is left behind."""
    (tmp_path / "t").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "t"))
    yield
    assert not list((tmp_path / "t").iterdir())


def _csv(n: int = 50) -> bytes:
    rows = "".join(f"{5 * i},{1.3 * 0.97**i:.6f},{0.1 + 0.01 * i:.4f}\n" for i in range(n))
    return ("step,entropy_avg,reward_avg\n" + rows).encode()


def _same(a, b) -> None:
    assert a.mapping == b.mapping and sorted(a.scalars) == sorted(b.scalars)
    for name in a.scalars:
        assert np.array_equal(a.scalars[name][0], b.scalars[name][0])
        assert np.array_equal(a.scalars[name][1], b.scalars[name][1], equal_nan=True)


@pytest.mark.parametrize("suffix", sorted(PACK))
def test_a_compressed_csv_jsonl_and_trainer_state_read_as_the_plain_file(tmp_path, logs, suffix) -> None:
    pack = PACK[suffix]
    plain = tmp_path / "metrics.csv"
    plain.write_bytes(_csv())
    packed = tmp_path / f"metrics.csv{suffix}"
    packed.write_bytes(pack(_csv()))
    (a,), (b,) = load_log(plain), load_log(packed)
    _same(a, b)
    assert b.name == "metrics" and b.source == str(packed) and b.fmt == "csv"
    jl = tmp_path / f"log.jsonl{suffix}"
    jl.write_bytes(
        pack(b"".join(json.dumps({"step": i, "entropy": 1.0 - 0.01 * i}).encode() + b"\n" for i in range(30)))
    )
    (j,) = load_log(jl)
    assert j.name == "log" and j.series(M.ENTROPY_MEAN)[0].tolist() == list(range(30))
    state = logs.write_trainer_state(
        tmp_path / "grpo-run", [logs.trl_entry(i, 1.0 - 0.01 * i, 0.1) for i in range(1, 9)], 8
    )
    gz_state = state.with_name(f"trainer_state.json{suffix}")
    gz_state.write_bytes(pack(state.read_bytes()))
    (t,), (u,) = load_log(state), load_log(gz_state)
    _same(t, u)
    assert u.name == "grpo-run" and u.fmt == "trl" and u.meta["trainer_state_file"] == str(gz_state)


def test_a_truncated_stream_keeps_its_complete_rows(tmp_path) -> None:
    """An archiver killed mid-write: the rows before the damage are imported (a half-written row is not), and a note
    says how much was read; a stream with no complete line is one clear error."""
    data = _csv(2000)
    full = gzip.compress(data)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(full[: len(full) // 2])
    (run,) = load_log(cut)
    steps, ent = run.series(M.ENTROPY_MEAN)
    complete = data[: data.rfind(b"\n", 0, len(data))]  # upper bound: what a full read would give
    rows = [r.split(b",") for r in complete.splitlines()[1:]]
    assert 0 < len(steps) < 2000
    assert steps.tolist() == [int(r[0]) for r in rows[: len(steps)]]
    assert ent.tolist() == [float(r[1]) for r in rows[: len(steps)]]  # the last row read is whole, not cut short
    (note,) = [n for n in run.notes if "ends early" in n]
    assert note.startswith(f"the gzip stream of {cut} ends early") and "bytes of complete lines" in note
    stub = tmp_path / "stub.csv.gz"
    stub.write_bytes(full[:20])
    with pytest.raises(ImportFormatError, match="holds no complete line"):
        load_log(stub)


def test_errors_name_the_compressed_file_not_the_copy(tmp_path) -> None:
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(b"step,entropy\n1,0.5\n2,0.4,9\n"))
    with pytest.raises(ImportFormatError) as e:
        load_log(bad)
    assert str(e.value).startswith(f"{bad} line 3: 3 fields") and "entropy-watch-import" not in str(e.value)


def test_no_room_to_decompress_is_said_so_not_read_as_damage(tmp_path, monkeypatch) -> None:
    import builtins
    import errno

    packed = tmp_path / "m.csv.gz"
    packed.write_bytes(gzip.compress(_csv()))
    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def fake_open(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        return Full(f) if "entropy-watch-import-" in str(file) and "w" in mode else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(ImportFormatError, match="No space left on device.*TMPDIR"):
        load_log(packed)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_export_with_its_byte_order_mark_reads_as_the_utf8_file(tmp_path: Path, encoding: str) -> None:
    """A spreadsheet's "Unicode text" export is UTF-16 with a BOM, tab-separated; it was refused as binary."""
    text = "step\tentropy\treward\n" + "".join(f"{i}\t{1 - i / 50:.3f}\t0.5\n" for i in range(30))
    plain = tmp_path / "plain" / "m.csv"
    plain.parent.mkdir()
    plain.write_text(text)
    wide = tmp_path / "wide" / "m.csv"
    wide.parent.mkdir()
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    wide.write_bytes(bom + text.encode(encoding))
    (want,) = load_log(plain)
    (got,) = load_log(wide)
    assert got.name == want.name and got.source == str(wide)
    for name in ("entropy/mean", "reward/mean"):
        assert [a.tolist() for a in got.series(name)] == [a.tolist() for a in want.series(name)]
