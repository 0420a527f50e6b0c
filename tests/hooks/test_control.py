"""The controllers of ``attach(trainer, control=...)`` on hand-worked values, their refusals, and the TRL seam on a
stand-in trainer (real TRL: tests/integrations/test_trl_control.py)."""

from __future__ import annotations

import json
import math
import types

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks.control import (
    CALLBACK_NAME,
    STATE_KEY,
    ControlConfig,
    ControlError,
    EntropyController,
    TrlControl,
    check_trl,
    install_trl,
    resolve,
)


def _steps(ctl: EntropyController, entropies: list[float]) -> list[dict[str, float]]:
    """One optimizer step per entropy, each from two micro-batches of 10 tokens."""
    out = []
    for h in entropies:
        ctl.observe(h * 10, 10)
        ctl.observe(h * 10, 10)
        out.append(ctl.end_step())
    return out


def test_resolve_and_validation() -> None:
    assert resolve(None) is None
    assert resolve("adapo") == ControlConfig("adapo")
    assert resolve(ControlConfig("target", using="adapo")).lever == "adapo"
    assert ControlConfig("repo-r").lever == "repo-r" and ControlConfig("target").lever == "repo-r"
    bad = [lambda: resolve("entropy"), lambda: resolve(3), lambda: ControlConfig("target", band=(0.5, 0.4))]
    bad += [lambda: ControlConfig(zeta0=1.0), lambda: ControlConfig(using="clip"), lambda: ControlConfig(target=0)]
    for make in bad:
        with pytest.raises(ControlError):
            make()


def test_repo_r_controller_by_hand() -> None:
    # H_ref = median of the first 5 steps = median(1.0, 0.9, 1.1, 0.8, 1.2) = 1.0, known at step 5, which already
    # acts: 1.2 > 1.0 halves zeta to 5e-4 (steps 1-4 keep 1e-3). Then 1.0 = H_ref: unchanged; 0.5 < 1: doubles
    # (1e-3, 2e-3); 1.5 > 1: halves (1e-3).
    ctl = EntropyController(ControlConfig("repo-r", zeta_max=0.05))
    out = _steps(ctl, [1.0, 0.9, 1.1, 0.8, 1.2])
    assert [o[M.CONTROL_ZETA] for o in out] == pytest.approx([1e-3] * 4 + [5e-4])
    assert M.CONTROL_TARGET not in out[3] and out[4][M.CONTROL_TARGET] == 1.0 and ctl.h_ref == 1.0
    out = _steps(ctl, [1.0, 0.5, 0.5, 1.5])
    assert [o[M.CONTROL_ZETA] for o in out] == pytest.approx([5e-4, 1e-3, 2e-3, 1e-3])
    assert out[1][M.CONTROL_ENTROPY] == 0.5 and out[1][M.CONTROL_TARGET] == 1.0
    assert {o[M.CONTROL_ZETA_MAX] for o in out} == {0.05} and M.CONTROL_EPS_MAX not in out[0]  # the lever's cap
    assert ctl.end_step() == {}  # a step without tokens changes nothing


def test_fixed_target_acts_from_the_first_step() -> None:
    ctl = EntropyController(ControlConfig("repo-r", target=2.0))
    assert _steps(ctl, [1.0])[0][M.CONTROL_ZETA] == pytest.approx(2e-3)


def test_adapo_controller_by_hand() -> None:
    # eps from the trainer (0.28); target 1.0: below -> x1.25 (0.35, 0.4375), above -> /1.25 (0.35), capped at 1.0
    ctl = EntropyController(ControlConfig("adapo", target=1.0), eps_high=0.28)
    out = _steps(ctl, [0.5, 0.5, 1.5])
    assert [o[M.CONTROL_EPS_HIGH] for o in out] == pytest.approx([0.35, 0.4375, 0.35])
    assert M.CONTROL_ZETA not in out[0] and M.CONTROL_ZETA_MAX not in out[0] and out[0][M.CONTROL_EPS_MAX] == 1.0
    for _ in range(10):
        _steps(ctl, [0.1])
    assert ctl.eps_high == 1.0
    with pytest.raises(ControlError):  # the trainer's epsilon_high outside the bounds
        EntropyController(ControlConfig("adapo"), eps_high=1.5)


def test_band_holds_inside_and_pushes_outside() -> None:
    # H_ref = 1.0 after 5 steps -> band (0.8, 1.25), target its geometric centre 1.0
    ctl = EntropyController(ControlConfig("target", using="repo-r"))
    _steps(ctl, [1.0] * 5)
    out = _steps(ctl, [0.9, 1.2, 0.7, 1.3])
    assert out[0][M.CONTROL_BAND_LOW] == 0.8 and out[0][M.CONTROL_BAND_HIGH] == 1.25
    assert out[0][M.CONTROL_TARGET] == pytest.approx(1.0)
    # inside: 1e-3, 1e-3; below 0.8: doubles; above 1.25: halves
    assert [o[M.CONTROL_ZETA] for o in out] == pytest.approx([1e-3, 1e-3, 2e-3, 1e-3])
    given = EntropyController(ControlConfig("target", using="adapo", band=(0.4, 0.6)), eps_high=0.28)
    assert [o[M.CONTROL_EPS_HIGH] for o in _steps(given, [0.5, 0.3, 0.7])] == pytest.approx([0.28, 0.35, 0.28])


def test_repo_r_advantages_by_hand() -> None:
    # A (B,) = [2, -1] broadcast; exact L = logp + H: [[-1 + 0.5, 0.2 + 0.1]] = [[-0.5, 0.3]], [[-1.5, 0.5]]
    # zeta 0.1: A>0: 2*(1 + 0.05) = 2.1, 2*(1 - 0.03) = 1.94; A<0: -1*(1 - 0.15) = -0.85, -1*(1 + 0.05) = -1.05
    ctl = EntropyController(ControlConfig("repo-r", zeta0=0.1, zeta_max=0.5))
    logp = torch.tensor([[-1.0, 0.2], [-2.0, 0.0]])
    ent = torch.tensor([[0.5, 0.1], [0.5, 0.5]])
    got = ctl.advantages(torch.tensor([2.0, -1.0]), logp, ent)
    assert torch.allclose(got, torch.tensor([[2.1, 1.94], [-0.85, -1.05]]))
    raw = EntropyController(ControlConfig("repo-r", zeta0=0.1, zeta_max=0.5, centering="raw"))
    assert torch.allclose(raw.advantages(torch.tensor([[2.0, 2.0]]), logp[:1], None), torch.tensor([[2.2, 1.96]]))


def _trainer(**over: object) -> types.SimpleNamespace:
    args = types.SimpleNamespace(use_liger_kernel=False, use_adaptive_entropy=False, delta=None)
    base = dict(args=args, compute_loss=lambda *a: None, _get_per_token_logps_and_entropies=lambda *a: None,
                loss_type="dapo", epsilon_high=0.28, entropy_coef=0.0)  # fmt: skip
    return types.SimpleNamespace(**{**base, **over})


@pytest.mark.parametrize(
    ("kind", "over", "words"),
    [
        ("repo-r", {"_get_per_token_logps_and_entropies": None}, "loss forward"),
        ("repo-r", {"compute_liger_loss": lambda: None, "args": types.SimpleNamespace(use_liger_kernel=True)}, "Liger"),
        ("adapo", {"entropy_coef": 0.01}, "entropy bonus"),
        ("repo-r", {"loss_type": None}, "sequence-level"),
        ("adapo", {"loss_type": "cispo"}, "upper clip width"),
        ("target", {"loss_type": "sapo", "epsilon_high": 0.2}, None),  # REPO-R lever: any GRPO loss type
        ("adapo", {"args": types.SimpleNamespace(delta=2.0)}, "delta"),
    ],
)
def test_check_trl_refuses_what_it_cannot_honour(kind: str, over: dict, words: str | None) -> None:
    trainer = _trainer(**over)
    if words is None:
        check_trl(trainer, ControlConfig(kind))
        return
    with pytest.raises(ControlError, match=words):
        check_trl(trainer, ControlConfig(kind))


class _Watch:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_dict(self, step: int, values: dict[str, float]) -> None:
        self.logged.append((step, values))

    def failure(self, where: str, exc: BaseException) -> None:
        raise exc


def test_trl_seam_applies_repo_r_inside_the_loss_and_restores_the_batch() -> None:
    logp = torch.tensor([[-1.0, -2.0]])
    ent = torch.tensor([[0.5, 0.5]])
    model = types.SimpleNamespace(training=True)
    trainer = types.SimpleNamespace(model=model, epsilon_high=0.2)
    ctl = TrlControl(trainer, _Watch(), EntropyController(ControlConfig("repo-r", zeta0=0.1, zeta_max=0.5)))
    seen = {}

    def forward(*a, **k):
        return logp, ent, None

    def loss(model_, inputs):
        ctl.loss_forward(forward)  # TRL calls the loss forward first, then reads the advantages
        seen["adv"] = inputs["advantages"].clone()
        return torch.tensor(0.0)

    adv = torch.tensor([1.0])
    batch = {"advantages": adv, "completion_mask": torch.tensor([[1.0, 0.0]])}
    ctl.compute_loss(loss, model, batch)
    # L = [-0.5, -1.5]: 1*(1 + 0.05) = 1.05, 1*(1 + 0.15) = 1.15 (masked position still computed)
    assert torch.allclose(seen["adv"], torch.tensor([[1.05, 1.15]]))
    assert batch["advantages"] is adv  # the buffered batch is left as it was
    assert ctl.controller.pending() == (0.5, 1.0)  # entropy of the valid token only
    ctl.loss_forward(forward)  # outside compute_loss (old/ref log-probs): nothing measured
    assert ctl.controller.pending() == (0.5, 1.0)
    model.training = False  # evaluation: measured nowhere, changed nowhere
    ctl.compute_loss(loss, model, batch)
    assert torch.equal(seen["adv"], adv) and ctl.controller.pending() == (0.5, 1.0)
    out = ctl.step_end(7)
    assert ctl.watch.logged == [(7, out)] and out[M.CONTROL_ENTROPY] == 0.5


def test_trl_seam_skips_a_pass_without_entropy_inside_the_loss() -> None:
    """A log-prob pass without entropy inside ``compute_loss`` (old or reference log-probs) is not the loss forward:
    the controller measures the next call that has entropy; a loss with none counts one failure, never a crash."""
    model = types.SimpleNamespace(training=True)
    failures: list[str] = []
    watch = types.SimpleNamespace(log_dict=lambda *a: None, failure=lambda where, exc: failures.append(str(exc)))
    ctl = TrlControl(types.SimpleNamespace(model=model), watch, EntropyController(ControlConfig("repo-r")))
    logp, ent = torch.tensor([[-1.0, -2.0]]), torch.tensor([[0.5, 0.7]])
    batch = {"advantages": torch.tensor([1.0]), "completion_mask": torch.tensor([[1.0, 1.0]])}

    def loss(model_, inputs, passes):
        for p in passes:
            ctl.loss_forward(lambda *a, **k: p)  # noqa: B023 - called at once
        return torch.tensor(0.0)

    ctl.compute_loss(loss, model, batch, [(logp, None, None), (logp, ent, None)])
    assert ctl.controller.pending() == (pytest.approx(1.2), 2.0) and failures == []
    ctl.compute_loss(loss, model, batch, [(logp, None, None)])
    assert ctl.controller.pending() == (pytest.approx(1.2), 2.0) and len(failures) == 1
    assert "returned no entropy" in failures[0]


def test_trl_seam_adapo_sets_epsilon_high_each_step() -> None:
    trainer = types.SimpleNamespace(model=types.SimpleNamespace(training=True), epsilon_high=0.28, epsilon_low=0.2)
    ctl = TrlControl(trainer, _Watch(), EntropyController(ControlConfig("adapo", target=1.0), eps_high=0.28))
    ctl.controller.observe(5.0, 10.0)
    ctl.step_end(1)
    assert trainer.epsilon_high == pytest.approx(0.35) and trainer.epsilon_low == 0.2
    assert ctl.step_end(2) == {} and trainer.epsilon_high == pytest.approx(0.35)  # no tokens: unchanged
    assert math.isclose(ctl.watch.logged[0][1][M.CONTROL_EPS_HIGH], 0.35)


def test_hf_callback_refuses_control_and_says_where_it_lives() -> None:
    from entropy_watch.hooks.hf import EntropyWatchCallback

    with pytest.raises(ControlError, match="attach"):
        EntropyWatchCallback(run="x", control="repo-r")
    assert EntropyWatchCallback(run="x", control=None).watch_kwargs == {}


def test_trl_seam_updates_once_per_iteration() -> None:
    from entropy_watch.hooks.control import iteration_steps

    args = types.SimpleNamespace(gradient_accumulation_steps=2, steps_per_generation=4, num_iterations=2)
    assert iteration_steps(types.SimpleNamespace(args=args, num_iterations=2)) == 4  # 4 micro-steps x 2 passes / 2
    args1 = types.SimpleNamespace(gradient_accumulation_steps=1, steps_per_generation=None)
    assert iteration_steps(types.SimpleNamespace(args=args1, num_iterations=1)) == 1
    trainer = types.SimpleNamespace(model=types.SimpleNamespace(training=True), epsilon_high=0.28)
    ctl = TrlControl(trainer, _Watch(), EntropyController(ControlConfig("adapo", target=1.0), eps_high=0.28), every=3)
    ctl.controller.observe(2.0, 10.0)  # steps 1-3 read together: (2 + 4 + 9) / 30 = 0.5 < 1 -> one widening
    assert ctl.step_end(1) == {} and trainer.epsilon_high == 0.28
    ctl.controller.observe(4.0, 10.0)
    assert ctl.step_end(2) == {}
    ctl.controller.observe(9.0, 10.0)
    out = ctl.step_end(3)
    assert out[M.CONTROL_ENTROPY] == pytest.approx(0.5) and trainer.epsilon_high == pytest.approx(0.35)
    assert [s for s, _ in ctl.watch.logged] == [3]


# ---- checkpoints -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cfg", "eps_high"),
    [
        (ControlConfig("repo-r"), None),  # H_ref from 5 steps: cut at 3, the entropies towards it are saved
        (ControlConfig("adapo", ref_steps=2), 0.28),
        (ControlConfig("target", using="adapo", ref_steps=2), 0.28),  # band = band_rel x H_ref
    ],
)
def test_controller_state_through_json_continues_the_same_trajectory(cfg: ControlConfig, eps_high: float) -> None:
    entropies = [1.0, 0.9, 1.1, 0.8, 1.2, 0.5, 0.7, 1.5, 0.6, 0.4]
    straight = EntropyController(cfg, eps_high=eps_high)
    want = _steps(straight, entropies)
    first = EntropyController(cfg, eps_high=eps_high)
    got = _steps(first, entropies[:3])
    first.observe(entropies[3] * 10, 10)  # a step half read when the checkpoint is written: its first micro-batch
    saved = json.loads(json.dumps(first.state_dict()))  # as trainer_state.json keeps it
    assert saved["pending_entropy_sum"] == pytest.approx(entropies[3] * 10) and saved["pending_tokens"] == 10
    resumed = EntropyController(cfg, eps_high=eps_high)
    resumed.load_state_dict(saved)
    resumed.observe(entropies[3] * 10, 10)
    got.append(resumed.end_step())
    got += _steps(resumed, entropies[4:])
    assert got == want and resumed.state_dict() == straight.state_dict()


def test_load_restores_the_lever_it_steered_and_h_ref_whatever_the_lever() -> None:
    repo = EntropyController(ControlConfig("repo-r", ref_steps=1))
    _steps(repo, [1.0, 0.5])  # H_ref 1.0; 0.5 below: zeta doubles
    adapo = EntropyController(ControlConfig("adapo", eps_high0=0.3))
    adapo.load_state_dict(repo.state_dict(), pending=False)
    assert adapo.h_ref == 1.0 and adapo.zeta == pytest.approx(2e-3) and adapo.eps_high == 0.3  # its own first value


class _TrainerStandIn(types.SimpleNamespace):
    """Enough of a TRL trainer for install_trl: the loss seam, epsilon_high and the callback list."""

    def add_callback(self, cb: object) -> None:
        self.callbacks.append(cb)

    def remove_callback(self, cb: object) -> None:
        self.callbacks.remove(cb)


def _installed(control: ControlConfig) -> tuple[_TrainerStandIn, object]:
    args = types.SimpleNamespace(use_liger_kernel=False, use_adaptive_entropy=False, delta=None,
                                 gradient_accumulation_steps=1, steps_per_generation=1)  # fmt: skip
    seam = {"compute_loss": lambda *a: None, "_get_per_token_logps_and_entropies": lambda *a: None}
    trainer = _TrainerStandIn(args=args, model=types.SimpleNamespace(training=True), callbacks=[], loss_type="dapo",
                              epsilon_high=0.28, entropy_coef=0.0, num_iterations=3, **seam)  # fmt: skip
    watch = _Watch()
    watch.update_meta = lambda **kw: None
    return trainer, install_trl(trainer, control, watch, strict=True)


def _state(step: int, saved: dict | None, world_zero: bool = True) -> types.SimpleNamespace:
    """The TrainerState the Trainer hands to on_train_begin: loaded from a checkpoint when ``step`` > 0."""
    return types.SimpleNamespace(global_step=step, is_world_process_zero=world_zero, stateful_callbacks=saved)


def test_trl_callback_exports_into_the_checkpoint_and_resumes_from_it() -> None:
    from transformers.trainer_callback import ExportableState

    cfg = ControlConfig("adapo", target=1.0)  # every = one TRL iteration = 3 steps
    trainer, ctl = _installed(cfg)
    cb = ctl.callback
    assert type(cb).__name__ == CALLBACK_NAME and isinstance(cb, ExportableState) and ctl.every == 3
    for step, h in enumerate([0.5, 0.5, 0.5, 0.2], start=1):  # one update (step 3), then one step towards the next
        ctl.controller.observe(h * 10, 10)
        cb.on_step_end(None, types.SimpleNamespace(global_step=step), None)
    entry = json.loads(json.dumps(cb.state()))  # what _save_checkpoint writes at step 4
    saved = entry["attributes"][STATE_KEY]
    assert entry["args"] == {} and saved["steps"] == 4 and saved["pending_tokens"] == 10
    assert saved["eps_high"] == pytest.approx(0.35) and trainer.epsilon_high == pytest.approx(0.35)

    trainer2, ctl2 = _installed(cfg)  # the resumed process
    ctl2.callback.on_train_begin(None, _state(4, {CALLBACK_NAME: entry}), None)
    assert ctl2.export() == saved and trainer2.epsilon_high == pytest.approx(0.35)
    for step in (5, 6):  # steps 5 and 6 close the iteration of steps 4-6, as in the uninterrupted run
        ctl2.controller.observe(5.0, 10)
        ctl2.callback.on_step_end(None, types.SimpleNamespace(global_step=step), None)
    assert [s for s, _ in ctl2.watch.logged] == [6] and trainer2.epsilon_high == pytest.approx(0.4375)
    assert ctl2.watch.logged[0][1][M.CONTROL_ENTROPY] == pytest.approx(0.4)  # (2 saved + 5 + 5) / 30 tokens

    _, ctl3 = _installed(cfg)  # another rank: the file is rank 0's, its pending entropy is not this rank's
    ctl3.callback.on_train_begin(None, _state(4, {CALLBACK_NAME: entry}, world_zero=False), None)
    assert ctl3.controller.pending() == (0.0, 0.0) and ctl3.controller.eps_high == pytest.approx(0.35)


def test_trl_callback_from_step_0_starts_from_the_initial_values() -> None:
    trainer, ctl = _installed(ControlConfig("adapo", target=1.0, every=1))
    ctl.controller.observe(5.0, 10)
    ctl.callback.on_step_end(None, types.SimpleNamespace(global_step=1), None)
    ctl.controller.observe(5.0, 10)
    assert trainer.epsilon_high == pytest.approx(0.35)
    ctl.callback.on_train_begin(None, _state(0, {CALLBACK_NAME: ctl.callback.state()}), None)  # train() again
    assert ctl.export() == ctl.initial and trainer.epsilon_high == 0.28 and ctl.controller.pending() == (0.0, 0.0)


def test_trl_callback_resumed_from_a_checkpoint_without_controller_state(caplog: pytest.LogCaptureFixture) -> None:
    _, ctl = _installed(ControlConfig("repo-r"))
    saved: dict = {"TrainerControl": {"args": {}, "attributes": {}}}  # saved without control=
    with caplog.at_level("WARNING", logger="entropy_watch"):
        ctl.callback.on_train_begin(None, _state(8, saved), None)
    assert ctl.export() == ctl.initial
    assert any("holds no entropy controller state" in r.getMessage() for r in caplog.records)
    # transformers' _save_checkpoint updates stateful_callbacks[name] by key: the entry must exist for the next save
    assert saved[CALLBACK_NAME]["attributes"][STATE_KEY] == ctl.initial
