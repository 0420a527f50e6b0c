"""A compressed log that decompresses to more than its disk can spare stops before the disk fills.

The decompressed copy went to ``$TMPDIR`` until the disk was full: a 100 MB ``.gz`` of zeros (100 GB) filled it before
the import failed, and every other writer on that disk (a training run's checkpoints, the store's own recorder) met
a full disk meanwhile.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import pytest

from entropy_watch.errors import ImportFormatError
from entropy_watch.importers.loader import load_log

MIB = 1 << 20


def _bomb(path: Path, mib: int) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as fh:
        zeros = b"\0" * MIB
        for _ in range(mib):
            fh.write(zeros)
    return path


def _disk(monkeypatch: pytest.MonkeyPatch, tmp: Path, free: int, total: int = 100 << 30) -> list[int]:
    """A disk for the temporary copies under ``tmp`` with ``free`` bytes left before them; returns the sizes of the
    copy each look at the free space saw."""
    seen: list[int] = []

    def usage(where: str) -> object:
        used = sum(p.stat().st_size for p in Path(where).rglob("*") if p.is_file())
        seen.append(used)
        return shutil._ntuple_diskusage(total, total - free + used, free - used)  # type: ignore[attr-defined]

    monkeypatch.setattr(shutil, "disk_usage", usage)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return seen


def test_a_bomb_stops_before_the_disk_fills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _bomb(tmp_path / "metrics.csv.gz", 256)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    seen = _disk(monkeypatch, tmp, free=(1 << 30) + 100 * MIB)  # the 1 GiB kept free is reached past 100 MiB
    with pytest.raises(ImportFormatError) as err:
        load_log(bomb)
    message = str(err.value)
    assert "\n" not in message and str(bomb) in message and "would fill the disk" in message and "TMPDIR" in message
    assert seen and max(seen) <= 128 * MIB, "stopped at the first look past the reserve, not at the end"
    assert list(tmp.iterdir()) == [], "the partial copy is removed"


def test_a_small_log_still_imports_on_a_nearly_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = "".join(f"{i},{1.0 - 0.01 * i:.4f}\n" for i in range(50))
    packed = tmp_path / "m.csv.gz"
    packed.write_bytes(gzip.compress(("step,entropy\n" + rows).encode()))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    _disk(monkeypatch, tmp, free=10 * MIB)
    (run,) = load_log(packed)
    assert run.step_range == (0, 49)
