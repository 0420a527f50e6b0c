"""``compact`` when only its caches cannot be refreshed, and ``report`` on a full disk: the file named, what to do.

The full disk is real, at the OS level, and needs no privileges: the command runs as a process whose
``RLIMIT_FSIZE`` is lowered (a write past it fails with ``EFBIG``, as one fails with ``ENOSPC`` on a full disk).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from entropy_watch.store import RunWriter, Store, manifest
from entropy_watch.synthetic import write_to_store

resource = pytest.importorskip("resource")  # POSIX only


def _full_disk(limit: int) -> Callable[[], None]:
    def limit_writes() -> None:  # in the child, before exec: SIG_IGN survives exec, the limit too
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return limit_writes


def _parts(root: Path) -> list[Path]:
    return sorted(root.glob("run=*/table=*/rank=*/part-*.parquet"))


def test_compact_exits_0_when_only_the_listing_cache_cannot_be_written(
    tmp_path: Path, ew: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge is the job: a ``_runs.parquet`` that could not be refreshed is one warning line, exit 0."""
    w = RunWriter(tmp_path, "g")
    for step in range(3):  # three segments to merge
        w.write("scalars", {"step": [step], "name": ["entropy/mean"], "value": [1.0], "wall_time": [float(step)]})
    w.close()

    def full(root: object, list_runs: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(manifest.path(tmp_path)))

    monkeypatch.setattr(manifest, "write", full)
    r = ew("--store", tmp_path, "compact", "--final", "--min-age", "0")
    assert r.code == 0, r.err  # type: ignore[attr-defined]
    assert _parts(tmp_path) and "merged" in r.out  # type: ignore[attr-defined]
    err = r.err.strip().splitlines()  # type: ignore[attr-defined]
    assert len(err) == 1 and err[0].startswith("warning: cannot write ") and "_runs.parquet" in err[0]
    assert "No space left on device" in err[0] and "compact" in err[0]
    assert (tmp_path / "_catalog.duckdb").exists()  # written before the cache


def test_a_listing_cache_of_other_rules_is_not_trusted(tmp_path: Path) -> None:
    """A ``_runs.parquet`` written under another version of the state rule (one that read a resumed run as failed)
    is ignored, however unchanged the run's folders: a cache that could not be rewritten is never trusted wrongly."""
    write_to_store(tmp_path, "g", kind="healthy", seed=1, n_steps=20)
    write_to_store(tmp_path, "h", kind="healthy", seed=2, n_steps=20)
    os.utime(tmp_path / "run=g", (1.0, 1.0))  # settled long ago
    os.utime(tmp_path / "run=h", (1.0, 1.0))
    for run in ("g", "h"):
        for sub in ("_status", "status"):
            if (tmp_path / f"run={run}" / sub).exists():
                os.utime(tmp_path / f"run={run}" / sub, (1.0, 1.0))
    assert manifest.write(tmp_path, Store(tmp_path).runs) == 2
    assert manifest.Manifest.load(tmp_path).get("g") is not None
    import pyarrow.parquet as pq

    table = pq.read_table(manifest.path(tmp_path))
    pq.write_table(table.replace_schema_metadata({}), manifest.path(tmp_path))  # as an older version wrote it
    assert manifest.Manifest.load(tmp_path).rows == {}


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_report_on_a_full_disk_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_to_store(store, "g", kind="collapse_exp", seed=1, n_steps=60)
    out = tmp_path / "rep.html"
    r = subprocess.run(
        [sys.executable, "-m", "entropy_watch", "--store", str(store), "report", "g", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_full_disk(64_000),  # the report is megabytes (plotly.js inlined)
    )
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(out) in lines[0] and "cannot write the report" in lines[0]
    assert "-o" in lines[0] and "Errno" not in lines[0]
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".rep")] == []
