"""A store that fills up, turns unwritable or vanishes under a run that writes it: training goes on, what was stored
stays readable, and the user is told what happened — when it starts, when it ends, and what was lost.

The full disk is real, at the OS level, and needs no privileges: a subprocess lowers its own ``RLIMIT_FSIZE`` (writes
then fail with ``EFBIG``, as they fail with ``ENOSPC`` on a full disk) and raises it back when space "returns". One
test mounts a small tmpfs and fills it for real; it runs only as root where mounting is allowed, and skips otherwise.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from entropy_watch.store import RunWriter, Store

resource = pytest.importorskip("resource")  # POSIX only

# Runs in a subprocess: MODE is "to-end" (the disk stays full until close) or "recovers" (space returns before it).
SCRIPT = textwrap.dedent(
    """
    import logging, resource, signal, sys
    from entropy_watch.recorder import Recorder
    from entropy_watch.store import RunWriter
    from entropy_watch.store.atomic import write_parquet_atomic
    import pyarrow as pa

    root, mode = sys.argv[1], sys.argv[2]
    logging.basicConfig(level=logging.WARNING, format="LOG %(message)s")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    rec = Recorder(RunWriter(root, "r"), flush_secs=3600, handle_sigterm=False)
    rec.scalars(0, {"x": 0.0})
    rec.flush()
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))  # the disk is full from here
    try:
        write_parquet_atomic(__import__("pathlib").Path(root) / "probe.parquet", pa.table({"a": [1, 2, 3]}))
    except OSError as exc:
        print("PROBE", exc.errno, exc.filename)
    for step in range(1, 6):
        rec.scalars(step, {"x": float(step)})
        rec.hist(step, [1, 2])
        rec.flush()  # a publishing round each step: one warning per table however many rounds fail
    if mode == "recovers":
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        rec.scalars(6, {"x": 6.0})
        rec.flush()
    rec.close()
    print("ERRORS", rec.errors)
    """
)


def _run(root: Path, mode: str) -> tuple[list[str], list[str]]:
    """Run SCRIPT; returns (its warnings, its other output lines)."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root), mode], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("LOG ")], [ln for ln in lines if not ln.startswith("LOG ")]


def _no_temporaries(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_a_disk_full_to_the_end_says_which_rows_are_lost(root: Path) -> None:
    warnings, out = _run(root, "to-end")
    failed = [w for w in warnings if "failed" in w]
    assert len([w for w in failed if "publishing scalars" in w]) == 1  # once, not once per round
    lost = [w for w in warnings if "not written" in w]
    assert len(lost) == 1, warnings
    assert re.search(r"\(scalars \d+, hist 10; steps 1-5\)", lost[0]) and "they are lost" in lost[0]  # + hooks/*
    assert "File too large" in lost[0]  # the cause
    steps, values = Store(root).series("r", "x")  # what was published before stays readable
    assert steps.tolist() == [0] and values.tolist() == [0.0]
    _no_temporaries(root)


def test_a_failed_write_names_its_file_and_leaves_no_temporary(root: Path) -> None:
    _, out = _run(root, "to-end")
    probe = next(ln for ln in out if ln.startswith("PROBE"))
    assert probe.split(" ", 2)[2] == str(root / "probe.parquet")  # errno 27 (EFBIG) alone named no file
    assert not (root / "probe.parquet").exists()
    _no_temporaries(root)


def test_when_space_returns_it_is_said_and_the_kept_rows_land_once(root: Path) -> None:
    warnings, _ = _run(root, "recovers")
    again = [w for w in warnings if "works again" in w]
    assert {w.split("publishing ")[1].split(" ")[0] for w in again} == {"scalars", "hist"}, warnings
    assert not [w for w in warnings if "not written" in w]
    store = Store(root)
    steps, values = store.series("r", "x")
    assert steps.tolist() == list(range(7)) and values.tolist() == [float(s) for s in range(7)]
    hsteps, counts = store.hist_matrix("r", 2)
    assert hsteps.tolist() == [1, 2, 3, 4, 5] and counts.tolist() == [[1, 2]] * 5
    _no_temporaries(root)


def test_a_store_deleted_mid_run_is_said_once_and_later_rows_are_stored(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = RunWriter(root, "r")  # what the recorder's thread calls (no thread here: rmtree races with none)
    with caplog.at_level(logging.WARNING, "entropy_watch"):
        w.write("scalars", {"step": [0], "name": ["x"], "value": [0.0], "wall_time": [1.0]})
        for step in (1, 2, 3):
            shutil.rmtree(root)  # deleted again and again: said once
            w.write("scalars", {"step": [step], "name": ["x"], "value": [float(step)], "wall_time": [1.0 + step]})
        w.write("events", {"step": [3], "kind": ["k"], "payload": ["{}"], "wall_time": [5.0]})  # a table's 1st write
        w.close()
    said = [r.getMessage() for r in caplog.records if "was deleted" in r.getMessage()]
    assert len(said) == 1 and "rows stored before are gone" in said[0]
    assert Store(root).series("r", "x")[0].tolist() == [3]


def test_a_publish_error_is_not_hidden_by_the_cleanup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a store turned read-only the temporary cannot be removed either; the write's own error is what is raised."""
    import pyarrow as pa

    from entropy_watch.store import atomic

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    def read_only(self: Path, missing_ok: bool = False) -> None:
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(atomic.pq, "write_table", full)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(OSError) as info:
        atomic.write_parquet_atomic(tmp_path / "seg.parquet", pa.table({"a": [1]}))
    assert info.value.errno == 28 and info.value.filename == str(tmp_path / "seg.parquet")


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 2 MiB tmpfs (root and a mount that is allowed only; skipped otherwise), unmounted after the test."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mount refused: {done.stderr.decode(errors='replace').strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def test_a_watch_loop_on_a_tmpfs_that_fills_up_and_frees(small_tmpfs: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch = pytest.importorskip("torch")
    from entropy_watch.hooks import Watch

    store, filler = small_tmpfs / "store", small_tmpfs / "filler"
    gen = torch.Generator().manual_seed(0)
    with caplog.at_level(logging.WARNING, "entropy_watch"):
        with Watch("fill", store=store, flush_secs=3600, async_stats=False, token_every=1) as watch:
            for step in range(12):
                if step == 4:  # the disk fills up
                    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
                    try:
                        while True:
                            os.write(fd, b"\0" * 65536)
                    except OSError:
                        pass
                    finally:
                        os.close(fd)
                if step == 8:
                    filler.unlink()  # space comes back
                watch.log_tokens(step, logits=torch.randn(4, 6, 16, generator=gen))
                watch.log(step, loss=float(step))
                watch.flush()  # a publishing round each step
    messages = [r.getMessage() for r in caplog.records]
    assert 1 <= len([m for m in messages if "failed" in m and "No space left" in m]) <= 5  # per table, not per step
    assert [m for m in messages if "works again" in m]
    steps, values = Store(store).series("fill", "loss")
    assert steps.tolist() == list(range(12)) and values.tolist() == [float(s) for s in range(12)]
    assert Store(store).hist_matrix("fill", 64)[0].tolist() == list(range(12))
    _no_temporaries(store)


def test_run_json_fields_a_full_disk_refused_are_written_once_space_returns(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Watch`` records a run's histogram bins in ``_run.json`` once, at its first ``log_tokens``: a disk full at that
    moment left the run without them for good (every later write of the run succeeded)."""
    from entropy_watch.errors import StoreUnwritable
    from entropy_watch.store import writer as writer_mod
    from entropy_watch.store.meta import local_document

    w = RunWriter(root, "r")
    real = writer_mod.write_json_atomic
    state = {"full": True}

    def disk(path, obj, **kwargs):
        if state["full"]:
            raise OSError(28, "No space left on device")
        return real(path, obj, **kwargs)

    monkeypatch.setattr(writer_mod, "write_json_atomic", disk)
    with pytest.raises(StoreUnwritable, match=r"_run\.json \(No space left on device\)"):
        w.update_run_meta(hist_edges=[0.0, 0.5, 1.0], vocab_size=8)
    w.write("scalars", {"step": [0], "name": ["x"], "value": [0.0], "wall_time": [1.0]})  # still full: kept
    assert "hist_edges" not in local_document(root, "r")
    state["full"] = False
    w.write("scalars", {"step": [1], "name": ["x"], "value": [1.0], "wall_time": [2.0]})
    meta = local_document(root, "r")
    assert meta["hist_edges"] == [0.0, 0.5, 1.0] and meta["vocab_size"] == 8
    w.update_run_meta(seed=3)  # written, nothing pending re-applied over it
    assert local_document(root, "r")["seed"] == 3 and w._meta_pending == {}


def test_each_outage_is_said_as_it_starts_and_ends_up_to_a_cap(
    root: Path, monkeypatch: pytest.MonkeyPatch, full_disk: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk that fills up again hours after it was freed was not said again (the warning was once per process),
    so the second outage went unseen until the run's end; a disk that flaps is not said every round."""
    from entropy_watch.recorder import OUTAGES_WARNED, Recorder

    rec = Recorder(RunWriter(root, "r"), flush_secs=3600, handle_sigterm=False)
    state = full_disk
    state["full"] = False
    rec.scalars(0, {"x": 0.0})
    rec.flush()
    step = 1
    with caplog.at_level(logging.WARNING, "entropy_watch"):
        for _ in range(OUTAGES_WARNED + 2):
            for full in (True, True, False):  # two failing rounds, then space comes back
                state["full"] = full
                rec.scalars(step, {"x": float(step)})
                rec.flush()
                step += 1
    rec.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "publishing scalars failed" in m]) == OUTAGES_WARNED
    back = [m for m in messages if "publishing scalars works again" in m]
    assert len(back) == OUTAGES_WARNED and "counted in hooks/errors only" in back[-1]
    assert Store(root).series("r", "x")[0].tolist() == list(range(step))
