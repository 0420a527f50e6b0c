"""One smoke test per algorithm: a few iterations from a short SFT policy change every parameter, write entropy
statistics and token rows to the store, and never trip a hook (``Watch(strict=True)``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store
from entropy_watch.trainer.checkpoint import load_policy
from entropy_watch.trainer.config import ALGOS
from entropy_watch.trainer.loop import train

from .conftest import small_config


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_algorithm_smoke(algo: str, sft_policy: Path, tmp_path: Path) -> None:
    cfg = small_config(algo, run=f"{algo}-smoke", iterations=2)
    before = {k: v.clone() for k, v in load_policy(sft_policy)[0].state_dict().items()}
    res = train(cfg, store=tmp_path, init=sft_policy, strict_hooks=True)
    assert res.hook_errors == 0
    after = load_policy(res.policy_dir)[0]
    unchanged = [n for n, p in after.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert not unchanged, f"{algo}: parameters not updated: {unchanged}"
    store = Store(tmp_path)
    steps, ent = store.series(cfg.run, M.ENTROPY_MEAN)
    assert list(steps) == [0, 1] and (ent > 0).all()
    assert store.table(cfg.run, "hist").num_rows > 0
    assert store.table(cfg.run, "tokens").num_rows > 0
    names = set(store.scalars(cfg.run).column("name").to_pylist())
    assert {M.REWARD_MEAN, M.LENGTH_MEAN, M.PRECISION_LOGP_GAP_MEAN, M.pass_at_k(4)} <= names
    assert M.HOOKS_ERRORS not in names or store.series(cfg.run, M.HOOKS_ERRORS)[1].max() == 0
    if cfg.algo_cfg.repo:
        assert M.CONTROL_ZETA in names
    if algo == "adapo":
        assert M.CONTROL_EPS_HIGH in names
    if algo == "no-upper-clip":  # the upper clip never binds, and no infinite eps_high is logged as a control
        assert M.CONTROL_EPS_HIGH not in names and store.series(cfg.run, M.CLIP_HIGH_FRAC)[1].max() == 0
    # control/* only from a controller: DAPO's fixed eps_high and plain GRPO's H_0 read as one (advice, `show`)
    control = {n for n in names if n.startswith("control/")}
    assert (M.CONTROL_TARGET in control) == bool(cfg.algo_cfg.controller), control
    assert (M.CONTROL_ENTROPY in control) == bool(cfg.algo_cfg.controller), control  # what it compared with it
    assert control <= {M.CONTROL_ZETA} or cfg.algo_cfg.controller, control
    a = cfg.algo_cfg  # a controller's lever is logged with its cap, as the hooks log it (advice's note reads it)
    caps = {M.CONTROL_ZETA_MAX: a.zeta_max} if a.controller == "zeta" else {}
    caps |= {M.CONTROL_EPS_MAX: a.adapo_eps_max} if a.controller == "adapo" else {}
    assert {n for n in control if n.endswith("_max")} == set(caps), control
    assert all(set(store.series(cfg.run, n)[1].tolist()) == {v} for n, v in caps.items()), caps


@pytest.mark.parametrize(
    "variant",
    ["kl", "seq-mean-token-mean", "bf16", "bf16-fp32head", "temperature"],
)
def test_optional_paths_smoke(variant: str, sft_policy: Path, tmp_path: Path) -> None:
    """The switches no named algorithm turns on: KL to the reference, the original GRPO aggregation, the bf16
    precision modes and a sampling temperature other than 1."""
    overrides = {"kl": {"kl_coef": 0.05}, "seq-mean-token-mean": {"aggregation": "seq-mean-token-mean"}}
    cfg = small_config("grpo", run=f"opt-{variant}", iterations=2, **overrides.get(variant, {}))
    if variant.startswith("bf16"):
        cfg.model.precision = variant
    if variant == "temperature":
        cfg.rl.temperature = 0.7
    cfg.checkpoint_every = 1
    res = train(cfg, store=tmp_path, init=sft_policy, strict_hooks=True)
    assert res.hook_errors == 0 and len(res.history) == 2
    for rec in res.history:
        assert all(v == v for v in rec.values()), rec  # no NaN anywhere
    if variant == "kl":  # the reference is part of the checkpoint, so resume restores it
        assert torch.load(res.policy_dir.parent / "state.pt", weights_only=False)["ref_model"] is not None
    store = Store(tmp_path)
    assert len(store.series(cfg.run, M.ENTROPY_MEAN)[0]) == 2
