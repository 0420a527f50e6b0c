"""UTF-16 logs inside gzip/bzip2/xz (a spreadsheet's "Unicode text" export, archived): read as the plain UTF-16 file
is, not refused as "binary content"."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import load_log

from ..real_runs import REAL

RASBT = REAL / "rasbt__reasoning-from-scratch__ch07-7_3-tracking.csv"


def _text() -> str:
    if RASBT.exists():
        return RASBT.read_text()
    return "step,entropy_avg,reward_avg\n" + "".join(f"{i},{1 - i / 100:.3f},{i / 100:.2f}\n" for i in range(1, 60))


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_compressed_utf16_reads_like_the_plain_file(tmp_path: Path, suffix: str, encoding: str) -> None:
    text = _text()
    raw = text.encode(encoding)
    if encoding == "utf-16-be":
        raw = b"\xfe\xff" + raw  # what a big-endian writer puts first
    plain = tmp_path / "plain" / "m.csv"
    plain.parent.mkdir()
    plain.write_bytes(raw)
    packed = tmp_path / "packed" / f"m.csv{suffix}"
    packed.parent.mkdir()
    packed.write_bytes(COMPRESSORS[suffix](raw))
    (want,) = load_log(plain)
    (got,) = load_log(packed)
    assert got.name == want.name == "m"
    assert got.source == str(packed)
    for name in ("entropy/mean", "reward/mean"):
        assert got.series(name)[0].tolist() == want.series(name)[0].tolist()
        assert got.series(name)[1].tolist() == want.series(name)[1].tolist()
    assert len(got.series("entropy/mean")[0]) > 10


def test_a_compressed_utf16_stream_cut_short_keeps_its_complete_lines(tmp_path: Path) -> None:
    rows = "step,entropy\n" + "".join(f"{i},{1 - i / 1000:.4f}\n" for i in range(1, 2001))
    whole = gzip.compress(rows.encode("utf-16"))
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(whole[: len(whole) * 2 // 3])
    (run,) = load_log(p)
    steps = run.series("entropy/mean")[0]
    assert 100 < len(steps) < 2000 and steps.tolist() == list(range(1, len(steps) + 1))
    assert any("ends early" in n for n in run.notes), run.notes


def test_compressed_binary_is_still_refused_in_one_line(tmp_path: Path) -> None:
    p = tmp_path / "x.csv.gz"
    p.write_bytes(gzip.compress(bytes(range(256)) * 50))
    with pytest.raises(ImportFormatError) as err:
        load_log(p)
    assert "\n" not in str(err.value) and "x.csv.gz" in str(err.value)
