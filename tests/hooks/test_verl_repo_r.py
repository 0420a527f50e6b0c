"""verl's ``ew_repo_r`` policy loss without verl: REPO-R's advantages reach the base loss, ζ follows its controller
(the registration against verl's real registry is in tests/integrations/test_verl.py, skipped without verl)."""

from __future__ import annotations

import json

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks.control import ControlConfig, EntropyController
from entropy_watch.hooks.verl import repo_r_policy_loss


def test_repo_r_loss_feeds_rescaled_advantages_and_steps_zeta() -> None:
    seen = {}

    def vanilla(old, new, adv, mask, agg="token-mean", config=None, is_weights=None):  # verl's signature
        seen["adv"] = adv
        return (adv * mask).sum(), {"actor/pg_loss": 1.0}

    # raw centring: L = log pi; zeta 0.1. A>0: A(1 - 0.1 L) = 2*(1 + 0.1) = 2.2; A<0: A(1 + 0.1 L) = -1*0.8
    ctl = EntropyController(ControlConfig("repo-r", target=5.0, centering="raw", zeta0=0.1, zeta_max=0.5))
    loss_fn = repo_r_policy_loss(vanilla, ctl)
    new = torch.tensor([[-1.0, -2.0]])
    adv = torch.tensor([[2.0, -1.0]])
    loss, metrics = loss_fn(new, new, adv, torch.ones(1, 2))
    assert torch.allclose(seen["adv"], torch.tensor([[2.2, -0.8]]))
    assert metrics["actor/pg_loss"] == 1.0 and metrics[M.CONTROL_ZETA] == pytest.approx(0.1)  # the zeta applied
    assert metrics[M.CONTROL_ZETA_MAX] == 0.5  # the cap it runs under: run.json (the driver's) cannot state it
    # surprisal mean (1 + 2) / 2 = 1.5 < target 5: zeta doubles for the next call
    assert metrics[M.CONTROL_ENTROPY] == pytest.approx(1.5) and ctl.zeta == pytest.approx(0.2)
    _, metrics = loss_fn(new, new, adv, torch.ones(1, 2))
    assert metrics[M.CONTROL_ZETA] == pytest.approx(0.2) and ctl.zeta == pytest.approx(0.4)


class _Manager:
    """A stand-in for verl's ``FSDPCheckpointManager``: its save/load signatures, one rank."""

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank

    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
        import os

        os.makedirs(local_path, exist_ok=True)

    def load_checkpoint(self, local_path, hdfs_path=None, del_local_after_load=False):
        pass


def _loss_calls(loss_fn, n: int, start: int = 0) -> list[float]:
    """``n`` ``ew_repo_r`` calls on batches whose entropy falls (call ``start`` on): the ζ each applied."""

    def vanilla(old, new, adv, mask, agg="token-mean", config=None):
        return (adv * mask).sum(), {}

    out = []
    for i in range(start, start + n):
        g = torch.Generator().manual_seed(i)
        new = -torch.rand(4, 8, generator=g) * 2.0 * 0.9**i  # surprisal falls with i: the controller must push
        _, metrics = loss_fn(vanilla)(new, new, torch.randn(4, 8, generator=g), torch.ones(4, 8))
        out.append(metrics[M.CONTROL_ZETA])
    return out


def test_a_resumed_verl_repo_r_continues_its_controller(tmp_path, monkeypatch) -> None:
    """verl's ``resume_mode=auto`` restores the model from ``global_step_N``; the controller comes back with it (ζ
    and H_ref, per rank): the resumed calls apply the uninterrupted run's ζ exactly. Without it ζ restarts at 0
    and H_ref is taken from the fallen entropy after the resume."""
    from entropy_watch.hooks import verl as ew_verl

    monkeypatch.delenv("ENTROPY_WATCH_TARGET_ENTROPY", raising=False)
    monkeypatch.setitem(ew_verl._state, "repo", None)
    cls = _Manager
    assert ew_verl.install_checkpoint_state([cls]) == ["_Manager"]
    assert ew_verl.install_checkpoint_state([cls]) == ["_Manager"]  # twice: wrapped once
    uninterrupted = _loss_calls(ew_verl.repo_r_policy_loss, 20)

    monkeypatch.setitem(ew_verl._state, "repo", None)  # the first process
    first = _loss_calls(ew_verl.repo_r_policy_loss, 12)
    ckpt = tmp_path / "global_step_12" / "actor"
    cls(rank=0).save_checkpoint(str(ckpt), None, global_step=12)
    assert (ckpt / "entropy_watch_control_rank_0.json").is_file()
    monkeypatch.setitem(ew_verl._state, "repo", None)  # killed; a new worker process loads the checkpoint
    cls(rank=0).load_checkpoint(str(ckpt))
    resumed = _loss_calls(ew_verl.repo_r_policy_loss, 8, start=12)
    assert first + resumed == uninterrupted and max(uninterrupted) > 0
    assert ew_verl._state["repo"].h_ref is not None

    monkeypatch.setitem(ew_verl._state, "repo", None)  # more ranks than were saved: rank 0's state
    cls(rank=3).load_checkpoint(str(ckpt))
    assert ew_verl._state["repo"].state_dict() == json.loads((ckpt / "entropy_watch_control_rank_0.json").read_text())
    monkeypatch.setitem(ew_verl._state, "repo", None)  # a worker without a controller (ew_vanilla) writes nothing
    cls(rank=1).save_checkpoint(str(tmp_path / "other"))
    assert not list((tmp_path / "other").iterdir())


def test_a_checkpoint_state_that_cannot_be_read_never_stops_verl(tmp_path, monkeypatch, caplog) -> None:
    from entropy_watch.hooks import verl as ew_verl

    monkeypatch.setitem(ew_verl._state, "repo", None)
    monkeypatch.delenv("ENTROPY_WATCH_STRICT", raising=False)

    class Manager(_Manager):
        pass

    ew_verl.install_checkpoint_state([Manager])
    (tmp_path / "entropy_watch_control_rank_0.json").write_text("{not json")
    Manager().load_checkpoint(str(tmp_path))  # verl's own load went through; ours is reported, not raised
    assert ew_verl._state["repo"] is None
    assert any("verl.checkpoint" in r.getMessage() for r in caplog.records)


def test_checkpoint_state_wraps_every_checkpoint_manager_verl_has(monkeypatch) -> None:
    """Newer verl adds ``verl.utils.checkpoint.deepspeed_checkpoint_manager.DeepSpeedCheckpointManager`` (the
    DeepSpeed strategy), with FSDP's ``save_checkpoint``/``load_checkpoint`` signatures; a manager verl lacks (here
    Megatron's, which needs megatron.core) is skipped."""
    import sys
    import types

    from entropy_watch.hooks import verl as ew_verl

    found = {}
    prefix = "verl.utils.checkpoint."
    for module, name in ((f"{prefix}fsdp_checkpoint_manager", "FSDPCheckpointManager"),
                         (f"{prefix}deepspeed_checkpoint_manager", "DeepSpeedCheckpointManager")):  # fmt: skip
        found[name] = type(name, (_Manager,), {})
        monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(**{name: found[name]}))
    monkeypatch.setitem(sys.modules, f"{prefix}megatron_checkpoint_manager", None)  # import fails
    assert ew_verl.install_checkpoint_state() == ["FSDPCheckpointManager", "DeepSpeedCheckpointManager"]
    assert all(getattr(cls.save_checkpoint, "_ew_wrapped", False) for cls in found.values())
