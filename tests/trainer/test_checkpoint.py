"""Checkpoints survive a kill at any point of their two-rename swap: ``--resume`` finds the newest complete one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from entropy_watch.trainer.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from entropy_watch.trainer.config import preset


@pytest.fixture(scope="module")
def policy():
    from entropy_watch.trainer.model import build_model
    from entropy_watch.trainer.tokenizer import build_tokenizer

    cfg = preset("tiny")
    tok = build_tokenizer(cfg.task.scripts, cfg.task.plus_signs)
    return build_model(cfg.model, len(tok), tok.eos_token_id, seed=0), tok


def _two_saves(ckpt: Path, policy) -> None:
    model, tok = policy
    save_checkpoint(ckpt, model, tok, {"iteration": 50})
    save_checkpoint(ckpt, model, tok, {"iteration": 100})


@pytest.mark.parametrize(
    ("tmp_written", "expect"),
    [
        (True, 150),  # .latest.old (100) + a complete .latest.tmp (150): the newer one wins
        (False, 100),  # .latest.old only: it is put back
    ],
)
def test_a_kill_between_the_renames_leaves_a_checkpoint_to_resume(tmp_path: Path, policy, tmp_written, expect):
    ckpt = tmp_path / "_checkpoints"
    _two_saves(ckpt, policy)
    latest, tmp, old = ckpt / "latest", ckpt / ".latest.tmp", ckpt / ".latest.old"
    # what a kill leaves between `latest.rename(old)` and `tmp.rename(latest)` of a third save
    if tmp_written:
        shutil.copytree(latest, tmp)
        torch.save({"iteration": 150, "model": {}}, tmp / "state.pt")
    latest.rename(old)
    assert latest_checkpoint(ckpt) == latest
    assert load_checkpoint(ckpt)["iteration"] == expect


def test_saving_after_a_cut_swap_keeps_the_newest(tmp_path: Path, policy) -> None:
    ckpt = tmp_path / "_checkpoints"
    _two_saves(ckpt, policy)
    (ckpt / "latest").rename(ckpt / ".latest.old")  # killed right after moving the last one aside, tmp not written
    model, tok = policy
    save_checkpoint(ckpt, model, tok, {"iteration": 150})
    assert load_checkpoint(ckpt)["iteration"] == 150
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest"]


def test_no_checkpoint_is_none(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "_checkpoints") is None


def test_a_full_disk_mid_save_is_one_clear_error_and_keeps_the_previous_checkpoint(
    tmp_path: Path, policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing ``state.pt`` surfaced as "internal error (SafetensorError/OSError) ... report it" and left
    a partial ``.latest.tmp`` taking the space; now: CheckpointError naming the cause, the partial folder removed,
    the step-50 checkpoint intact for --resume."""
    import errno

    from entropy_watch.errors import EntropyWatchError
    from entropy_watch.trainer import checkpoint

    ckpt = tmp_path / "_checkpoints"
    model, tok = policy
    save_checkpoint(ckpt, model, tok, {"iteration": 50})

    def full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(EntropyWatchError, match=r"checkpoint of step 100 .*No space left on device.*--resume") as e:
        save_checkpoint(ckpt, model, tok, {"iteration": 100})
    assert len(str(e.value).splitlines()) == 1
    monkeypatch.undo()
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest"]
    assert load_checkpoint(ckpt)["iteration"] == 50


def test_an_unwritable_checkpoint_folder_is_one_clear_error(tmp_path: Path, policy) -> None:
    from entropy_watch.errors import EntropyWatchError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    model, tok = policy
    with pytest.raises(EntropyWatchError, match=r"could not write the checkpoint of step 1 .*no earlier checkpoint"):
        save_checkpoint(blocker / "_checkpoints", model, tok, {"iteration": 1})


def test_a_policy_that_cannot_be_written_is_one_clear_error(tmp_path: Path, policy, monkeypatch) -> None:
    """compare's SFT stage saves its policy outside a checkpoint: safetensors' error on a full disk printed
    "internal error (SafetensorError) ... report it"; now one CheckpointError line naming the folder."""
    from entropy_watch.errors import EntropyWatchError
    from entropy_watch.trainer import sft
    from entropy_watch.trainer.checkpoint import save_policy_or_say

    class SafetensorError(Exception):  # safetensors' own error type, which shares no base with OSError
        pass

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    model, tok = policy
    monkeypatch.setattr(sft, "save_policy", full)
    with pytest.raises(EntropyWatchError, match=r"could not write the policy to .*No space left on device") as e:
        save_policy_or_say(model, tok, tmp_path / "run=sft-s0" / "policy")
    assert len(str(e.value).splitlines()) == 1
