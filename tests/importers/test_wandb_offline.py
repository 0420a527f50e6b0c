"""W&B offline run files (``run-*.wandb``), read without W&B: a file wandb 0.31.0 wrote, and the framing's edges
(records split across 32 KiB blocks, a damaged record, a file cut short) on files framed here by a reference writer."""

from __future__ import annotations

import math
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import detect_format, load_log
from entropy_watch.importers import wandb_offline as W

REAL = Path(__file__).parent / "data" / "run-ewtest01.wandb"


def test_a_file_wandb_wrote(tmp_path) -> None:
    assert detect_format(REAL) == "wandb-offline"
    (run,) = load_log(REAL)
    assert run.name == "grpo-offline" and run.fmt == "wandb-offline"
    assert run.mapping["step"] == "_step" and run.mapping[M.ENTROPY_MEAN] == "train/entropy"
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == [*range(0, 80, 2), 80, 82]
    assert ent[:40].tolist() == pytest.approx([1.1 * 0.97**s for s in range(0, 80, 2)])
    assert math.isnan(ent[40]) and ent[41] == math.inf  # logged non-finite values stay values
    assert run.series(M.REWARD_MEAN)[1][-1] == 0.5
    assert run.series("train/kl")[1][1] == pytest.approx(0.01 * 1.02)  # a nested dict logged as train/kl
    assert "phase" not in run.scalars and not run.notes  # text is no metric
    # as W&B lays it out: <project>/wandb/offline-run-*/ and a latest-run link to it; the run is read once
    wb = tmp_path / "proj" / "wandb"
    (wb / "offline-run-20261203_145651-ewtest01").mkdir(parents=True)
    shutil.copy(REAL, wb / "offline-run-20261203_145651-ewtest01" / REAL.name)
    (wb / "latest-run").symlink_to("offline-run-20261203_145651-ewtest01")
    for target in (tmp_path / "proj", wb, wb / "latest-run"):
        assert detect_format(target) == "wandb-offline"
        (again,) = load_log(target)
        assert again.series(M.ENTROPY_MEAN)[0].tolist() == steps.tolist(), target


def _frame(payloads: list[bytes]) -> bytes:
    """The reference writer: LevelDB-style records in 32 KiB blocks, split FIRST/MIDDLE/LAST across them."""
    out = bytearray(W.HEADER)
    for p in payloads:
        first = True
        while True:
            room = 32768 - len(out) % 32768
            if room < 7:
                out += b"\0" * room
                continue
            chunk, p = p[: room - 7], p[room - 7 :]
            kind = (1 if not p else 2) if first else (4 if not p else 3)
            out += struct.pack("<IHB", zlib.crc32(bytes([kind]) + chunk), len(chunk), kind) + chunk
            first = False
            if not p:
                break
    return bytes(out)


def _history(step: int, pad: int = 0) -> bytes:
    rec = W.record_class()()
    rec.history.step.num = step
    for key, value in (("train/entropy", f"{1.0 - step / 1e4!r}"), ("pad", '"' + "x" * pad + '"')):
        it = rec.history.item.add()
        it.nested_key.append(key)
        it.value_json = value
    typed = rec.history.item.add()
    typed.key = "typed/number"
    typed.number = step / 2  # the typed oneof a newer W&B may write instead of value_json
    return rec.SerializeToString()


def _run(name: str) -> bytes:
    rec = W.record_class()()
    rec.run.run_id, rec.run.display_name = "abc123", name
    return rec.SerializeToString()


def test_records_across_blocks_damage_and_a_cut(tmp_path) -> None:
    payloads = [_run("framed")] + [_history(s, pad=70_000 if s == 1234 else 40) for s in range(2000)]  # one spans 3
    data = _frame(payloads)
    assert len(data) > 5 * 32768
    p = tmp_path / "run-abc123.wandb"
    p.write_bytes(data)
    (run,) = load_log(p)
    steps, ent = run.series(M.ENTROPY_MEAN)
    assert run.name == "framed" and steps.tolist() == list(range(2000))
    assert run.series("typed/number")[1].tolist() == [s / 2 for s in range(2000)]
    assert "pad" not in run.scalars and not [n for n in run.notes if "damaged" in n or "unfinished" in n]
    # one flipped byte in the third block: that block's records are lost, the others read, and a note says so
    bad = bytearray(data)
    bad[2 * 32768 + 1000] ^= 0xFF
    p.write_bytes(bytes(bad))
    (run,) = load_log(p)
    got = run.series(M.ENTROPY_MEAN)[0].tolist()
    assert 1500 < len(got) < 2000 and got[0] == 0 and got[-1] == 1999
    # (the record it hit, and the tail of one split across the block boundary that lost its head)
    assert any(re.search(r"skipped [12] damaged record\(s\)", n) for n in run.notes), run.notes
    # cut short mid-record (a killed writer): the records before the cut are read
    p.write_bytes(data[: len(data) * 2 // 3])
    (run,) = load_log(p)
    got = run.series(M.ENTROPY_MEAN)[0].tolist()
    assert got == list(range(len(got))) and 1000 < len(got) < 2000
    assert any("ends in an unfinished record" in n for n in run.notes)


def test_not_a_run_file_gets_one_line(tmp_path) -> None:
    other = tmp_path / "run-x.wandb"
    other.write_bytes(b":W&B\x00\x00\x09" + b"\0" * 40)  # another magic/version
    with pytest.raises(ImportFormatError, match="not a W&B run file"):
        load_log(other)
    empty = tmp_path / "run-y.wandb"
    empty.write_bytes(_frame([_run("nothing")]))
    with pytest.raises(ImportFormatError, match="hold no logged metrics"):
        load_log(empty)
    (tmp_path / "d").mkdir()
    with pytest.raises(ImportFormatError, match="W&B offline runs"):
        load_log(tmp_path / "d")


def test_a_run_resumed_offline_is_one_run(tmp_path) -> None:
    """``resume="allow"`` offline writes a second folder for the same run id: one run, the restart noted and
    recorded as an event where it happened (the later folder's rows win)."""
    for stamp in ("20261203_145651", "20261203_150000"):
        (d := tmp_path / "wandb" / f"offline-run-{stamp}-ewtest01").mkdir(parents=True)
        shutil.copy(REAL, d / REAL.name)
    (run,) = load_log(tmp_path / "wandb")
    assert run.name == "grpo-offline" and run.series(M.ENTROPY_MEAN)[0].tolist() == [*range(0, 80, 2), 80, 82]
    assert any("restart at offline-run-20261203_150000-ewtest01/run-ewtest01.wandb" in n for n in run.notes)
    assert [e["kind"] for e in run.events] == ["resume"]
