"""verl's ``ew_repo_r`` policy loss without verl: REPO-R's advantages reach the base loss, ζ follows its controller
(the registration against verl's real registry is in tests/integrations/test_verl.py, skipped without verl)."""

from __future__ import annotations

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
    # surprisal mean (1 + 2) / 2 = 1.5 < target 5: zeta doubles for the next call
    assert metrics[M.CONTROL_ENTROPY] == pytest.approx(1.5) and ctl.zeta == pytest.approx(0.2)
    _, metrics = loss_fn(new, new, adv, torch.ones(1, 2))
    assert metrics[M.CONTROL_ZETA] == pytest.approx(0.2) and ctl.zeta == pytest.approx(0.4)
