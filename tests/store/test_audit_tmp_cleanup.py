"""A restarted writer removes only its own kind of temporaries from its rank folders, never a compactor's.

Found by the store audit: ``RunWriter`` removed every ``.….tmp`` whose pid is not alive on its host from its rank
folders, including the ``.part-…tmp`` of a compaction running on another host (cron on a login node), whose rename then
failed with ``FileNotFoundError`` and aborted the whole ``entropy-watch compact``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from entropy_watch.store import RunWriter
from entropy_watch.store.layout import table_dir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_restarted_writer_keeps_a_compactors_temporary(tmp_path: Path) -> None:
    RunWriter(tmp_path, "r", rank=0).write("scalars", {"step": [0], "name": ["m"], "value": [1.0]})
    folder = table_dir(tmp_path, "r", "scalars", 0)
    pid = _dead_pid()  # on this host; a compactor on another host has a pid that means nothing here
    compactor_tmp = folder / f".part-1790000000000000000-{pid}-000003.parquet.tmp"
    writer_tmp = folder / f".seg-1790000000000000000-{pid}-000007.parquet.tmp"
    compactor_tmp.write_bytes(b"being written")
    writer_tmp.write_bytes(b"left by a killed writer")
    RunWriter(tmp_path, "r", rank=0)  # the restarted rank
    assert compactor_tmp.exists()
    assert not writer_tmp.exists()
