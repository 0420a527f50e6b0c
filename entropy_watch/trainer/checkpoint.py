"""Checkpoints: the policy as a ``save_pretrained`` folder plus ``state.pt`` with everything needed to resume.

Layout: ``ROOT/run=<run>/_checkpoints/latest/{policy/, state.pt}`` (the ``_`` keeps it out of Spark's partition
discovery: it is not table data). A new checkpoint is written next to the old one and swapped in with renames, so a
crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from entropy_watch.errors import EntropyWatchError, StoreUnwritable


class CheckpointError(EntropyWatchError, FileNotFoundError):
    """A checkpoint or policy directory that is missing or unreadable."""


def save_checkpoint(ckpt_dir: Path, model: torch.nn.Module, tokenizer: Any, state: dict[str, Any]) -> Path:
    """Write ``ckpt_dir/latest`` atomically (tmp folder + rename); ``state`` gets the model weights added.

    The swap is two renames (``latest`` -> ``.latest.old``, ``.latest.tmp`` -> ``latest``); a process killed between
    them leaves no ``latest``, which :func:`latest_checkpoint` repairs before anything reads or writes one.
    A write that fails (disk full, read-only or vanished folder) removes the partial ``.latest.tmp`` and raises
    :class:`CheckpointError` naming the folder, the cause and what is still there; the previous ``latest`` is untouched.
    """
    from entropy_watch.trainer.sft import save_policy

    tmp, latest, old = ckpt_dir / ".latest.tmp", ckpt_dir / "latest", ckpt_dir / ".latest.old"
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        latest_checkpoint(ckpt_dir)  # a swap a kill cut short: finish it before .latest.tmp is reused
        shutil.rmtree(tmp, ignore_errors=True)
        save_policy(model, tokenizer, tmp / "policy")
        torch.save({**state, "model": model.state_dict()}, tmp / "state.pt")
    except Exception as e:  # noqa: BLE001 - only a failed write is translated (write_failed)
        if not write_failed(e):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint only takes space
        kept = (
            "the previous checkpoint is intact: free space and rerun with --resume to continue from it"
            if latest.exists()
            else "the run has no earlier checkpoint: free space or pick a writable --store and start over"
        )
        raise CheckpointError(
            f"could not write the checkpoint of step {state.get('iteration', '?')} to {ckpt_dir} "
            f"({_cause(e)}{_free_space(ckpt_dir)}); {kept}"
        ) from e
    shutil.rmtree(old, ignore_errors=True)
    if latest.exists():
        latest.rename(old)
    tmp.rename(latest)
    shutil.rmtree(old, ignore_errors=True)
    return latest


def write_failed(e: BaseException) -> bool:
    """Whether ``e`` is how saving a policy or state fails on a full, read-only or vanished disk: an ``OSError``,
    torch's ``RuntimeError``, safetensors' ``SafetensorError`` (they share no base class)."""
    return isinstance(e, OSError | RuntimeError) or type(e).__name__ == "SafetensorError"


def save_policy_or_say(model: torch.nn.Module, tokenizer: Any, path: Path) -> Path:
    """:func:`~entropy_watch.trainer.sft.save_policy`, a failed write raised as one :class:`CheckpointError` line
    naming the folder, the cause and the space left (the SFT stage of ``compare`` printed an internal error)."""
    from entropy_watch.trainer.sft import save_policy

    try:
        return save_policy(model, tokenizer, path)
    except Exception as e:  # noqa: BLE001 - only a failed write is translated (write_failed)
        if not write_failed(e):
            raise
        raise CheckpointError(
            f"could not write the policy to {path} ({_cause(e)}{_free_space(path)}); free space or pick a "
            "writable --store"
        ) from e


def _cause(e: BaseException) -> str:
    """A failed save's cause in words. torch's own text for a write cut short is its C++ assertion
    (``[enforce fail at inline_container.cc:672] . unexpected pos 1664 vs 1558``, ``PytorchStreamWriter failed
    writing file data/0: file write failed``), which tells a user nothing; an OS error says its reason."""
    text = " ".join(str(e).split())
    if isinstance(e, RuntimeError) and any(k in text for k in ("inline_container", "unexpected pos", "StreamWriter")):
        return "the file could not be written in full: a write failed, usually because the disk is full"
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else str(e.strerror)
    return f"{type(e).__name__}: {text[:300]}"


PROBE_BYTES = 4096  # one filesystem block: a new file's first block is what a full disk refuses


def check_writable(folder: Path, *, store: Path | None = None) -> None:
    """Raise :class:`~entropy_watch.errors.StoreUnwritable` unless a file can be written in ``folder`` (or, when it
    does not exist yet, in the nearest existing folder above it, where it would be created): one block written,
    flushed to disk and removed, so nothing is left behind. A full or read-only store otherwise let ``train`` run its
    whole SFT warm-up (35 s for the tiny preset, far longer on a GPU) before it failed to write the first row. The
    probe's name is a store temporary's (``.<name>.<pid>.<n>.tmp``), which :func:`~.atomic.clean_stale_tmp` removes
    should the process die between its creation and removal. ``store``: the root the message names (else ``folder``)."""
    folder = Path(folder)
    here = next((f for f in (folder, *folder.parents) if f.is_dir()), None)
    if here is None:
        return
    probe = here / f".ew-write-probe.{os.getpid()}.0.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            block = memoryview(b"\0" * PROBE_BYTES)
            while block:  # a short write is how a file-size limit answers first; the next write then fails
                block = block[os.write(fd, block) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise StoreUnwritable(
            f"cannot write to store {store or folder} ({e.strerror or e}{_free_space(here)}); free space or fix the "
            "permissions, or pass --store (or set ENTROPY_WATCH_DIR) to a writable folder"
        ) from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def _free_space(path: Path) -> str:
    """``", N MiB free there"`` for the nearest existing folder above ``path`` (torch's own ENOSPC message does not
    say so), or ``""`` when even that cannot be read."""
    for folder in (path, *path.parents):
        if folder.is_dir():
            try:
                return f"; {shutil.disk_usage(folder).free / 2**20:.1f} MiB free there"
            except OSError:
                return ""
    return ""


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """``ckpt_dir/latest`` when the run has a checkpoint, else None; a swap cut short by a kill is completed first.

    Without ``latest`` but with ``.latest.old``, the kill came between the two renames of :func:`save_checkpoint`:
    ``.latest.tmp`` is then complete (it is renamed only after it is written in full) and newer, so it becomes
    ``latest``; otherwise (a tmp missing) the old one is put back.
    """
    ckpt_dir = Path(ckpt_dir)
    latest, tmp, old = ckpt_dir / "latest", ckpt_dir / ".latest.tmp", ckpt_dir / ".latest.old"
    if not latest.exists() and old.exists():
        (tmp if (tmp / "state.pt").exists() else old).rename(latest)
    return latest if latest.exists() else None


def load_checkpoint(ckpt_dir: Path) -> dict[str, Any]:
    """The resumable state of ``ckpt_dir/latest``; :class:`CheckpointError` if the run has none."""
    found = latest_checkpoint(ckpt_dir)
    path = (found or Path(ckpt_dir) / "latest") / "state.pt"
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; train the run first (or drop --resume)")
    return torch.load(path, map_location="cpu", weights_only=False)


def find_policy(path: str | Path) -> Path:
    """The folder :func:`load_policy` would load from ``path`` (a policy folder, a checkpoint folder with ``policy/`` or
    ``latest/policy/`` inside, a run's folder, any local HF causal LM saved with ``save_pretrained``), found without
    loading it; :class:`CheckpointError` when none holds a model."""
    p = Path(path)
    ckpts = [p / name / "latest" / "policy" for name in ("_checkpoints", "checkpoints")]  # current, older stores
    for cand in (p, p / "policy", p / "latest" / "policy", *ckpts):
        if (cand / "config.json").exists():
            return cand
    raise CheckpointError(f"no model at {p} (expected config.json from save_pretrained, or a checkpoint folder)")


def load_policy(path: str | Path) -> tuple[torch.nn.Module, Any]:
    """Model and tokenizer from a policy folder, a checkpoint folder (``policy/`` or ``latest/policy/`` inside)
    or any local HF causal LM saved with ``save_pretrained`` (:func:`find_policy`)."""
    from transformers.utils import logging as hf_logging

    from entropy_watch.trainer.model import load_model
    from entropy_watch.trainer.tokenizer import load_tokenizer

    hf_logging.disable_progress_bar()
    cand = find_policy(path)
    return load_model(str(cand)), load_tokenizer(str(cand))
