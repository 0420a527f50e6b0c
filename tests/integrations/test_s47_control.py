"""``attach(trainer, control=...)`` audited on real TRL (CPU, offline, 2-3 steps each): REPO-R's Ã is what TRL's loss
reads under the loss types and batch layouts users run; a control the trainer cannot start is refused before a run
exists; the loss forward reads nothing back from the device and counts a bf16 batch's tokens exactly."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store

from ..host_reads import HostReads

pytestmark = pytest.mark.slow


def _reference(adv: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor, zeta: float) -> torch.Tensor:
    """REPO-R written out (ALGORITHMS.md): Ã = A − ζ·|A|·L, L = clamp(logp + H, −20), Ã keeps the sign of A."""
    a = adv.unsqueeze(-1).expand_as(logp) if adv.dim() == 1 else adv
    L = (logp + entropy).clamp(min=-20.0)
    out = a - zeta * a.abs() * L
    return torch.where(a > 0, out.clamp(min=0.0), torch.where(a < 0, out.clamp(max=0.0), torch.zeros_like(out)))


@pytest.mark.parametrize(
    "config",
    [
        dict(loss_type="dapo", gradient_accumulation_steps=2, scale_rewards="batch"),
        dict(loss_type="dr_grpo", importance_sampling_level="sequence", epsilon_high=None, scale_rewards="none"),
    ],
    ids=["dapo-accum2", "dr_grpo-sequence"],
)
def test_repo_r_advantages_are_what_trl_loss_reads(tiny_trl, tmp_path, monkeypatch, config: dict[str, Any]) -> None:
    """A spy inside GRPOTrainer._compute_loss sees, after TRL read them, the advantages of every micro-batch: each is
    Ã from TRL's own advantages, the loss forward's log-probs and entropies and the ζ in force at that step; the
    buffered batch keeps TRL's advantages for its second pass (num_iterations=2)."""
    from trl import GRPOTrainer

    from entropy_watch.hooks.control import ControlConfig
    from entropy_watch.hooks.trl import attach

    trainer = tiny_trl.build_trainer(str(tmp_path / "out"), max_steps=3, **config)
    seen: list[dict[str, Any]] = []
    forward = trainer._get_per_token_logps_and_entropies  # TRL's own: wrapped by attach below
    loss_forward: dict[str, torch.Tensor] = {}

    def spy_forward(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        if out[1] is not None:
            loss_forward.update(logp=out[0].detach().clone(), entropy=out[1].detach().clone())
        return out

    trainer._get_per_token_logps_and_entropies = spy_forward
    original = GRPOTrainer._compute_loss

    def spy_loss(self: Any, model: Any, inputs: Any) -> Any:
        given, zeta = inputs["advantages"].clone(), handle.control.controller.zeta
        out = original(self, model, inputs)
        seen.append(dict(given=given, used=inputs["advantages"].clone(), zeta=zeta, **loss_forward))
        return out

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", spy_loss)  # the class's: attach still sees TRL's loss
    top = math.log(trainer.model.config.vocab_size) - 1e-3  # above every step's entropy (ln V itself is refused)
    control = ControlConfig("repo-r", zeta0=0.01, zeta_min=0.01, zeta_max=0.5, target=top, every=1)  # ζ doubles
    handle = attach(trainer, run="spy", store=tmp_path / "store", strict=True, flush_secs=0.05, control=control)
    buffered: list[Any] = []
    prepare = trainer._prepare_inputs
    trainer._prepare_inputs = lambda batch: buffered.append(prepare(batch)) or buffered[-1]
    trainer.train()
    handle.close()
    accum = config.get("gradient_accumulation_steps", 1)
    assert len(seen) == 3 * accum and handle.watch.errors == 0
    assert sorted({s["zeta"] for s in seen}) == [0.01, 0.02, 0.04]  # the lever moved between steps
    for s in seen:
        assert s["used"].shape == s["logp"].shape
        torch.testing.assert_close(s["used"], _reference(s["given"], s["logp"], s["entropy"], s["zeta"]))
    assert all(b["advantages"].dim() == 1 for b in buffered)  # TRL's (B,) advantages left in its buffer
    zeta = Store(tmp_path / "store").series("spy", M.CONTROL_ZETA)
    assert zeta[0].tolist() == [1, 2, 3] and zeta[1].tolist() == [0.02, 0.04, 0.08]


def test_adapo_start_outside_its_bounds_is_refused_before_a_run_exists(tiny_trl, tmp_path) -> None:
    """epsilon=0.1 with epsilon_high unset: TRL's epsilon_high is 0.1, below ADAPO's eps_min 0.2. attach refuses in
    one line and leaves no run behind (it left one marked running)."""
    from entropy_watch.hooks.control import ControlError
    from entropy_watch.hooks.trl import attach

    trainer = tiny_trl.build_trainer(str(tmp_path / "out"), max_steps=1, epsilon=0.1, epsilon_high=None)
    with pytest.raises(ControlError, match=r"epsilon_high=0\.1 outside") as info:
        attach(trainer, run="refused", store=tmp_path / "store", control="adapo")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "store").exists() or not list(Store(tmp_path / "store").runs())
    assert "compute_loss" not in trainer.__dict__ and trainer.epsilon_high == pytest.approx(0.1)


def test_loss_forward_reads_nothing_back_and_counts_bf16_tokens_exactly() -> None:
    """The control's wraps around a bf16 loss forward of 1,001 tokens (two micro-batches of one step): no host read
    inside the loss (it read the entropy sum and token count back twice per micro-batch, each a wait for the device
    on a GPU), and the step's entropy is the mean of the bf16 entropies over all 2,002 tokens (the bf16 token count
    rounded 1,001 to 1,000 and the bf16 sum to 3 digits)."""
    from entropy_watch.hooks.control import ControlConfig, EntropyController, TrlControl

    logged: list[tuple[int, dict[str, float]]] = []
    watch = SimpleNamespace(
        failure=lambda where, exc: pytest.fail(f"{where}: {exc}"), log_dict=lambda s, d: logged.append((s, d))
    )
    trainer = SimpleNamespace(model=SimpleNamespace(training=True), args=SimpleNamespace(), epsilon_high=0.28)
    ctl = TrlControl(trainer, watch, EntropyController(ControlConfig("repo-r", target=5.0)), every=1)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        entropy = (torch.rand(1, 1001, generator=gen) * 3 + 0.5).to(torch.bfloat16)
        logp = -torch.rand(1, 1001, generator=gen).to(torch.bfloat16)
        inputs = {"completion_mask": torch.ones(1, 1001, dtype=torch.long), "advantages": torch.tensor([1.0])}
        batches.append((entropy, logp, inputs))
    for entropy, logp, inputs in batches:
        out = (logp, entropy, None)  # what TRL's loss forward returns
        mode = HostReads()
        with mode:
            ctl.compute_loss(lambda model, inp, out=out: ctl.loss_forward(lambda: out), None, inputs)
        assert mode.reads == 0
    ctl.step_end(1)
    want = sum(e.double().sum().item() for e, _, _ in batches) / 2002
    (step, out), = logged  # fmt: skip
    assert step == 1 and out[M.CONTROL_ENTROPY] == pytest.approx(want, rel=1e-6)


def test_repo_r_on_a_bf16_loss_forward_still_moves_the_advantages() -> None:
    """A loss forward in bf16 (the model's dtype: TRL before its float32 fused LM head): at REPO-R's starting
    zeta = 1e-3, Ã = A − ζ·|A|·L is A shifted by ~1e-3, below bf16's rounding step at A ≈ 1 (2^-7): computed in bf16,
    Ã equalled A and REPO-R did nothing until ζ had grown. Ã is computed in float32 from the bf16 inputs."""
    from entropy_watch.hooks.control import ControlConfig, EntropyController

    ctl = EntropyController(ControlConfig("repo-r"))  # zeta0 = 1e-3
    gen = torch.Generator().manual_seed(1)
    logp = (-torch.rand(4, 16, generator=gen) * 4).to(torch.bfloat16)
    entropy = (torch.rand(4, 16, generator=gen) * 2).to(torch.bfloat16)
    adv = torch.tensor([1.0, -1.0, 0.5, 0.0])
    got = ctl.advantages(adv, logp, entropy)
    want = _reference(adv, logp.float(), entropy.float(), 1e-3)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)
    assert not torch.equal(got, adv.unsqueeze(-1).expand_as(got))
