"""``train`` on a full or unwritable store fails at once, before its SFT warm-up, leaving nothing; a checkpoint that a
full disk cuts short says so in words, not in torch's C++ assertion.

The full disk is real, at the OS level, and needs no privileges: a subprocess lowers its own ``RLIMIT_FSIZE`` (a write
past it fails with ``EFBIG``, as one fails with ``ENOSPC`` on a full disk).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

resource = pytest.importorskip("resource")  # POSIX only
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")

LIMITED = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing


    def full_disk(limit):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    """
)

CHECK_START = LIMITED + textwrap.dedent(
    """
    from entropy_watch.errors import StoreUnwritable
    from entropy_watch.trainer.config import preset
    from entropy_watch.trainer.loop import check_start

    cfg = preset("tiny")
    full_disk(1)
    for store in sys.argv[1:]:
        try:
            check_start(cfg, store=store)
            print("STARTED")
        except StoreUnwritable as exc:
            print("REFUSED", exc)
    """
)

SAVE = LIMITED + textwrap.dedent(
    """
    import os
    from pathlib import Path
    from entropy_watch.trainer.checkpoint import CheckpointError, save_checkpoint
    from entropy_watch.trainer.config import preset
    from entropy_watch.trainer.model import build_model
    from entropy_watch.trainer.tokenizer import build_tokenizer

    cfg = preset("tiny")
    tok = build_tokenizer(cfg.task.scripts, cfg.task.plus_signs)
    model = build_model(cfg.model, len(tok), tok.eos_token_id, seed=0)
    policy_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # the policy (safetensors) fits; state.pt, the weights again plus a padding entry, does not
    full_disk(int(policy_bytes * 1.3))
    try:
        save_checkpoint(Path(sys.argv[1]), model, tok, {"iteration": 7, "pad": b"x" * policy_bytes})
        print("SAVED")
    except CheckpointError as exc:
        print("ERROR", exc)
    """
)


def _run(script: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_check_start_refuses_a_full_store_and_leaves_nothing(tmp_path: Path) -> None:
    """``train`` ran the whole SFT warm-up (35 s for the tiny preset) before it failed to write its first row."""
    made, new = tmp_path / "made", tmp_path / "new"  # a store folder that exists, and one train would create
    made.mkdir()
    out = _run(CHECK_START, str(made), str(new)).splitlines()
    assert len(out) == 2, out
    for line, store in zip(out, (made, new), strict=True):
        assert line.startswith(f"REFUSED cannot write to store {store} ("), line
        assert "--store" in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["made"]


def test_check_start_probe_leaves_nothing_on_a_writable_store(tmp_path: Path) -> None:
    from entropy_watch.trainer.config import preset
    from entropy_watch.trainer.loop import check_start

    check_start(preset("tiny"), store=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_a_full_disk_cuts_short_is_said_in_words(tmp_path: Path) -> None:
    out = _run(SAVE, str(tmp_path / "ckpt"))
    assert out.startswith("ERROR could not write the checkpoint of step 7"), out
    assert "inline_container" not in out and "enforce fail" not in out and "unexpected pos" not in out
    assert "disk is full" in out
    assert not (tmp_path / "ckpt" / ".latest.tmp").exists()
