"""``Watch`` against its run's metadata and repeated steps: a store that is full when the first ``log_tokens`` writes
the histogram bins into ``run.json`` loses nothing (the writer keeps the fields and writes them with a later segment),
and the warning about one step logged twice says what the store keeps: the last call, histogram included.

The full disk is real and needs no privileges: a subprocess lowers its own ``RLIMIT_FSIZE`` (writes then fail with
``EFBIG``, as with ``ENOSPC`` on a full disk), as tests/store/test_s46_full_disk.py does.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.histogram import entropy_bin_edges, n_bins
from entropy_watch.hooks import Watch
from entropy_watch.store import Store

resource = pytest.importorskip("resource")  # POSIX only

FULL_AT_FIRST_CALL = textwrap.dedent(
    """
    import logging, resource, signal, sys
    import torch
    from entropy_watch.hooks import Watch

    logging.basicConfig(level=logging.WARNING, format="LOG %(message)s")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    g = torch.Generator().manual_seed(0)
    w = Watch("m", store=sys.argv[1], flush_secs=3600, async_stats=False)  # no vocab_size: bins fixed at step 0
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))  # the disk is full from here
    got = w.log_tokens(0, logits=torch.randn(2, 3, 8, generator=g))
    print("STEP0", got.get("tokens/count"))
    w.flush()  # fails too: the rows are kept
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space returns
    w.log_tokens(1, logits=torch.randn(2, 3, 8, generator=g))
    w.close()
    """
)


def test_a_full_disk_at_the_first_log_tokens_keeps_the_step_and_the_bins(tmp_path: Path) -> None:
    """The first ``log_tokens`` writes ``hist_edges`` into ``run.json``; on a full disk that raised out of the call,
    and the step's statistics were dropped ("log_tokens failed")."""
    proc = subprocess.run(
        [sys.executable, "-c", FULL_AT_FIRST_CALL, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STEP0 6.0" in proc.stdout  # the call returned its statistics
    logs = [ln for ln in proc.stderr.splitlines() if ln.startswith("LOG ")]
    assert not [ln for ln in logs if "log_tokens failed" in ln], logs
    assert len([ln for ln in logs if "histogram bins" in ln and "kept" in ln]) == 1, logs
    store = Store(tmp_path)
    edges = entropy_bin_edges(8)
    meta = store.run_meta("m")
    assert meta["vocab_size"] == 8 and meta["hist_edges"] == pytest.approx(edges.tolist())
    assert store.series("m", M.ENTROPY_MEAN)[0].tolist() == [0, 1]
    steps, counts = store.hist_matrix("m", n_bins(edges))
    assert steps.tolist() == [0, 1] and counts.sum(1).tolist() == [6, 6]


def test_the_repeated_step_warning_says_the_last_call_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The warning said the step's histogram "adds up all calls"; the store keeps one write of a step per rank, the
    last, histogram included (tests/store/test_s46_recorder_repeat.py): it must say so. Background worker path."""
    V = 8
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        with Watch("micro", store=tmp_path, vocab_size=V, flush_secs=3600) as w:
            for B in (3, 2, 1):  # three micro-batches of step 0, of 3 x 4, 2 x 4 and 1 x 4 tokens
                w.log_tokens(0, entropy=torch.rand(B, 4))
            assert w.errors == 0
    (message,) = [r.getMessage() for r in caplog.records if "twice in a row" in r.getMessage()]
    assert "adds up" not in message and "histogram" in message and "last call" in message
    steps, counts = Store(tmp_path).hist_matrix("micro", n_bins(entropy_bin_edges(V)))
    assert steps.tolist() == [0] and counts.sum(1).tolist() == [4]  # the last micro-batch's tokens alone
