"""verl's ``actor/pg_clipfrac_lower`` is ``clip/dual_frac`` only under a loss whose "lower" is the dual-clip share.

The share of A<0 tokens whose loss verl's dual clip caps (ratio past ``clip_ratio_c``) is what ``vanilla`` logs under
that name. verl 0.9.1's other losses log other numbers there: ``geo_mean`` its clipped A<0 share, ``dppo_tv`` /
``dppo_kl`` the share above ``clip_ratio_c`` whatever the advantage, ``gspo``/``sapo``/``cispo`` 0. The alias table
mapped it to ``clip/dual_frac`` for every loss, in the verl tee and in imported verl logs alike. Now the tee records
it so only when the run's config names a dual-clip loss (``verl_config.logs_dual_clip``) and an imported log, which
names no loss, keeps it under verl's name with a note.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks.verl_config import DUAL_CLIP_LOSSES, DUAL_CLIP_SOURCE, logs_dual_clip

from ._verl_ray import ray_if_missing

B, L, CLIP_C = 16, 7, 3.0


def _run_config(mode: str | None) -> dict:
    """The config verl hands ``Tracking``, as ``run_config`` keeps it; ``None``: the actor has no ``policy_loss``."""
    actor: dict = {"clip_ratio": 0.2} if mode is None else {"policy_loss": {"loss_mode": mode}}
    return {"actor_rollout_ref": {"actor": actor}}


def _batch() -> tuple[torch.Tensor, ...]:
    """Ratios far past ``CLIP_C`` on both advantage signs, one advantage per row (none zero), a padded row."""
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(B, L, generator=g) * 3
    new = (old + 1.5 * torch.randn(B, L, generator=g)).clamp(max=-1e-3)
    adv = torch.randn(B, generator=g)
    adv = (adv + adv.sign() * 0.1)[:, None].expand(B, L).contiguous()
    mask = torch.ones(B, L)
    mask[3, 4:] = 0
    return old, new, adv, mask


def _dual_share(old: torch.Tensor, new: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor) -> float:
    """Ye et al.'s dual clip, computed here: A<0 tokens whose ratio (log clamped to ±20) exceeds ``clip_ratio_c``
    (``CLIP_C`` > 1 + clip_ratio_high, so PPO's own clip never binds there), a share of the response tokens."""
    ratio = torch.exp(torch.clamp(new - old, -20.0, 20.0))
    return float((((adv < 0) & (ratio > CLIP_C)).float() * mask).sum() / mask.sum())


@pytest.mark.slow
def test_the_table_holds_exactly_the_losses_whose_lower_is_the_dual_clip_share():
    """Each loss registered in the installed verl that logs ``actor/pg_clipfrac_lower``: its value on a batch where
    the others differ from the dual-clip share is that share iff :data:`DUAL_CLIP_LOSSES` names the loss."""
    with ray_if_missing():
        core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
        config_module = pytest.importorskip("verl.workers.config")
        from verl.workers.config.actor import PolicyLossConfig
    old, new, adv, mask = _batch()
    reference = _dual_share(old, new, adv, mask)
    assert 0.02 < reference < 0.5
    seen: dict[str, float] = {}
    for mode in sorted(m for m in core_algos.POLICY_LOSS_REGISTRY if not m.startswith("ew_")):
        policy_loss = {"loss_mode": mode, "dro_beta": 0.1}
        if mode == "bypass_mode":  # its ppo_clip runs vanilla on the rollout's log-probs (here: old)
            policy_loss["rollout_correction"] = {"loss_type": "ppo_clip"}
        cfg = config_module.ActorConfig(
            strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, clip_ratio=0.2, clip_ratio_low=0.2,
            clip_ratio_high=0.28, clip_ratio_c=CLIP_C, policy_loss=PolicyLossConfig(**policy_loss),
        )  # fmt: skip
        _, metrics = core_algos.get_policy_loss_fn(mode)(old, new, adv, mask, "token-mean", cfg)
        if DUAL_CLIP_SOURCE in metrics:
            seen[mode] = float(metrics[DUAL_CLIP_SOURCE])
    assert {"vanilla", "bypass_mode", "geo_mean", "gspo"} <= set(seen)  # verl 0.9.1 (0.9.x: dppo_* too)
    for mode, value in seen.items():
        is_dual = math.isclose(value, reference, rel_tol=1e-5, abs_tol=1e-7)
        assert is_dual == logs_dual_clip(_run_config(mode)), (mode, value, reference)
        assert logs_dual_clip(_run_config(f"ew_{mode}")) == is_dual  # ew_<mode> logs what <mode> logs
    assert logs_dual_clip(_run_config("ew_repo_r"))  # REPO-R's advantages through vanilla
    assert DUAL_CLIP_LOSSES == {m for m in seen if logs_dual_clip(_run_config(m))} | {
        f"ew_{m}" for m in seen if logs_dual_clip(_run_config(m))
    } | {"ew_repo_r"}


class FakeTracking:
    """``verl.utils.tracking.Tracking``'s signature: ``(project_name, experiment_name, default_backend, config)``."""

    def __init__(self, project_name, experiment_name, default_backend="console", config=None):
        self.logged = []

    def log(self, data, step, backend=None):
        self.logged.append((step, dict(data)))


@pytest.mark.parametrize(
    ("config", "dual"),
    [
        (_run_config("vanilla"), True),
        (_run_config("ew_vanilla"), True),
        (_run_config(None), True),  # verl's default loss (verl 0.4.0: its only one)
        (_run_config("geo_mean"), False),
        (_run_config("ew_dppo_tv"), False),
        (_run_config("gspo"), False),
        (None, False),  # no config: the loss is not known
    ],
)
def test_the_tee_records_dual_frac_only_under_a_dual_clip_loss(tmp_path, config, dual):
    from entropy_watch.hooks import verl as ew_verl
    from entropy_watch.hooks.watch import Watch
    from entropy_watch.store import Store

    w = Watch("verl-dual", store=str(tmp_path / "store"), strict=True, flush_secs=0.05, reduce=False)
    ew_verl.set_watch(w)
    try:

        class Tracking(FakeTracking):
            pass

        ew_verl.install_tracking_tee(Tracking)
        tr = Tracking("proj", "exp", "console", config)
        tr.log({"actor/entropy": 0.5, "actor/pg_clipfrac": 0.3, DUAL_CLIP_SOURCE: 0.01}, step=1)
        assert tr.logged == [(1, {"actor/entropy": 0.5, "actor/pg_clipfrac": 0.3, DUAL_CLIP_SOURCE: 0.01})]
        w.flush()
        store = Store(tmp_path / "store")
        assert store.series("verl-dual", DUAL_CLIP_SOURCE)[1].tolist() == [0.01]  # verl's own name: always
        assert store.series("verl-dual", M.CLIP_DUAL_FRAC)[1].tolist() == ([0.01] if dual else [])
        assert store.series("verl-dual", M.CLIP_REGION_FRAC)[1].tolist() == [0.3]
    finally:
        ew_verl.set_watch(None)
        w.close()


def test_an_imported_verl_log_keeps_it_under_verls_name_with_a_note(tmp_path):
    from entropy_watch.importers import load_log

    path = tmp_path / "exp.jsonl"
    rows = [{"step": s, "data": {"actor/entropy": 0.5, DUAL_CLIP_SOURCE: 0.01 * s}} for s in (1, 2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run,) = load_log(path)
    assert M.CLIP_DUAL_FRAC not in run.mapping
    assert run.series(DUAL_CLIP_SOURCE)[1].tolist() == pytest.approx([0.01, 0.02])
    (note,) = [n for n in run.notes if DUAL_CLIP_SOURCE in n]
    assert "loss_mode=vanilla" in note and f"--map clip/dual_frac={DUAL_CLIP_SOURCE}" in note
    (mapped,) = load_log(path, mapping={M.CLIP_DUAL_FRAC: DUAL_CLIP_SOURCE})  # what the note says to do
    assert mapped.series(M.CLIP_DUAL_FRAC)[1].tolist() == pytest.approx([0.01, 0.02])
