"""Entropy control inside a user's TRL trainer: REPO-R, ADAPO or an entropy band, switched on in one line.

    from entropy_watch.hooks.trl import attach

    attach(trainer, run="grpo-qwen-s0", control="repo-r")        # or "adapo", "target", or ControlConfig(...)
    trainer.train()

* ``"repo-r"`` (Petrenko et al. 2026, arXiv 2603.11682): inside TRL's GRPO loss the per-token advantages become
  ``Ã = A − ζ·|A|·L`` with ``L = log π + H`` (exact centring), from the loss forward's own log-probs and entropies
  (no extra softmax); the surrogate is TRL's, unchanged. ζ follows REPO's doubling/halving controller once per
  TRL iteration (below). ζ_max = 0.05 is the paper's bound for LLM vocabularies; with a vocabulary of a few dozen
  tokens L barely spreads and ζ_max ≈ 0.5 is needed (ALGORITHMS.md scale notes).
* ``"adapo"`` (same paper; the controller's form is ours, ``docs/papers.md``): ``trainer.epsilon_high`` is multiplied
  by κ after a step whose entropy was under the target and divided by κ after one above it, within
  [eps_min, eps_max]; ``epsilon_low`` is never touched.
* ``"target"``: keep entropy inside ``band = (low, high)`` nats with the lever ``using`` (``"repo-r"`` or
  ``"adapo"``): below the band the lever pushes up, above it down, inside it holds (``algorithms.band_target``).

The math is the reference trainer's, in ``hooks/levers.py`` (``centred_logp``, ``repo_r_advantages``,
``zeta_update``, ``adapo_update``, ``band_target``; ``trainer/algorithms.py`` re-exports them); this module only
connects it to TRL.

Controller input: the token-weighted mean entropy of the loss forwards since the last update, summed over ranks (the
measure TRL's own adaptive entropy bonus uses), once per TRL iteration (the optimizer steps of one generation batch;
``every`` to change it). Target: ``target`` nats if given, else H_ref, the median of the first ``ref_steps`` updates'
entropies (the run's early level); until H_ref is known the levers keep their initial values. The band defaults to
``band_rel × H_ref``. At each update the state goes into the run's store at TRL's step:
``control/zeta`` or ``control/eps_high`` with its cap (``control/zeta_max`` / ``control/eps_max``),
``control/target_entropy``, ``control/entropy`` and, for ``"target"``,
``control/band_low`` / ``control/band_high`` (each the value in force for the next step).

Checkpoints carry the controller: its callback is a transformers ``ExportableState``, so every checkpoint's
``trainer_state.json`` holds, under ``stateful_callbacks["EntropyControlCallback"]``, ζ, ε_high, H_ref (or the
entropies of the updates it will be the median of), the entropy sum and token count read since the last update and
the optimizer steps counted towards ``every`` (:meth:`TrlControl.export`). ``trainer.train(resume_from_checkpoint=...)``
continues from there: the ``Trainer`` loads that file before ``on_train_begin``, where the callback restores the
controller itself, so ``TrainingArguments.restore_callback_states_from_checkpoint`` (default False) is not needed,
and setting it changes nothing. A training from step 0 starts from the initial values; a checkpoint saved without
control (or by a version without this) restores nothing, with one warning: H_ref is then measured again from the
resumed level. The lever the checkpoint steered continues; the other, if the resumed ``ControlConfig`` switches
lever, starts from its initial value. TRL generates a new batch when it resumes (GRPOTrainer's ``_step`` restarts
at 0, its buffer is empty): from a checkpoint at a TRL iteration boundary (``save_steps`` a multiple of the optimizer
steps per generation batch) that is the batch the uninterrupted run generated there, and the controller continues
that run's updates (on CPU bit for bit: ``tests/integrations/test_trl_control.py``); from one inside an iteration
neither TRL's batch nor the controller's input is the uninterrupted run's, though the controller keeps its count
towards ``every`` and the entropy it had read. Under ``torch.distributed`` the file is rank 0's: the pending entropy
(non-zero only between updates) is restored on rank 0 alone.

:func:`check_trl` refuses, with one :class:`ControlError` at attach time, what a controller cannot honour: a trainer
without the loss seam (another TRL version, TRL <= 0.21's online ``RLOOTrainer``), TRL <= 1.13's Liger loss
(``use_liger_kernel``, ``use_liger_loss`` in TRL <= 0.24: ``compute_liger_loss`` sees no per-token advantages),
REPO-R on a sequence-level loss (``RLOOTrainer``: one ratio and one advantage per completion) or on a GRPO loss that
takes one advantage per sequence only (TRL < 0.26: :func:`sequence_advantages_only`), ADAPO on a loss without an upper
clip width (CISPO's ``epsilon_high`` is an absolute cap; SAPO and VESPO have no clip) or with ``delta`` capping the
ratio, and TRL's own entropy bonus on the same run (two controllers on one quantity).
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
import re
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from entropy_watch import metrics as M
from entropy_watch.errors import ConfigError
from entropy_watch.hooks import levers

log = logging.getLogger("entropy_watch")

CONTROLS: tuple[str, ...] = ("repo-r", "adapo", "target")
LEVERS: tuple[str, ...] = ("repo-r", "adapo")
LOGPS_METHOD = "_get_per_token_logps_and_entropies"  # TRL's loss forward: (logps, entropies[, aux_loss])
CLIP_WIDTH_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")  # ratio clipped to [1 - eps_low, 1 + eps_high]
# GRPOConfig flags that route the loss through Liger's fused compute_liger_loss: TRL 0.25-1.13; TRL <= 0.24
LIGER_FLAGS: tuple[str, ...] = ("use_liger_kernel", "use_liger_loss")
CALLBACK_NAME = "EntropyControlCallback"  # its key in a checkpoint's trainer_state.json "stateful_callbacks"
STATE_KEY = "entropy_control"  # the controller's state inside that entry's "attributes" (ExportableState's format)


def without_entropy(out: Any) -> bool:
    """Whether a ``_get_per_token_logps_and_entropies`` result computed no entropy: a pass of old or reference
    log-probs, not the loss forward (the first call inside ``compute_loss`` that carries entropy is)."""
    return isinstance(out, tuple | list) and len(out) >= 2 and out[1] is None


def liger_flag(trainer: Any) -> str | None:
    """The config flag (:data:`LIGER_FLAGS`) that sends ``trainer``'s loss through Liger's ``compute_liger_loss`` (one
    fused kernel: no loss forward through ``_get_per_token_logps_and_entropies``, no entropy, no per-token advantages
    to rewrite), or None. TRL 1.14 dropped ``compute_liger_loss`` (its Liger path returns log-probs and entropies).

    TRL's ``compute_loss`` branches on the trainer's own copy of its flag (``self.use_liger_loss`` up to 0.24,
    ``self.use_liger_kernel`` from 0.25), so that copy is read where the trainer has one: up to 0.24
    ``args.use_liger_kernel`` is transformers' flag, which patches the model's kernels and leaves TRL's loss forward
    (with entropy) in place. A trainer without either copy is judged by its ``args``."""
    if not callable(getattr(trainer, "compute_liger_loss", None)):
        return None
    owned = [flag for flag in LIGER_FLAGS if hasattr(trainer, flag)]
    source = trainer if owned else getattr(trainer, "args", None)
    return next((flag for flag in owned or LIGER_FLAGS if getattr(source, flag, False)), None)


def sequence_advantages_only(trainer: Any) -> bool:
    """Whether ``trainer``'s GRPO loss can only take one advantage per sequence: TRL < 0.26's
    ``GRPOTrainer._compute_loss`` multiplies the ratio by ``advantages.unsqueeze(1)`` whatever their shape, so
    REPO-R's ``(B, T)`` advantages become ``(B, 1, T)`` and broadcast against the ``(B, T)`` ratio to ``(B, B, T)``:
    a wrong loss and clip ratios above 1, without an error. TRL 0.26 unsqueezes only ``(B,)`` ones
    (``if advantages.dim() == 1``). Read from the loss's source (the seam is a line, not a name); a loss whose
    source cannot be read is not judged here (False)."""
    try:
        src = inspect.getsource(type(trainer)._compute_loss)
    except (AttributeError, OSError, TypeError):
        return False
    return "advantages.unsqueeze(1)" in src and re.search(r"advantages\.(?:dim\(\)|ndim)", src) is None


class ControlError(ConfigError):
    """A control the trainer cannot honour; the message says why and what to change."""


@dataclass
class ControlConfig:
    """What ``attach(trainer, control=...)`` does; ``ControlConfig("repo-r")`` equals ``control="repo-r"``."""

    kind: str = "repo-r"
    """repo-r | adapo | target."""
    using: str = "repo-r"
    """kind="target" only: the lever that keeps entropy in the band (repo-r or adapo)."""
    target: float | None = None
    """Entropy target in nats (repo-r, adapo); None = H_ref."""
    band: tuple[float, float] | None = None
    """kind="target": (low, high) in nats; None = band_rel x H_ref."""
    band_rel: tuple[float, float] = (0.8, 1.25)
    """kind="target" without ``band``: the band's edges as multiples of H_ref."""
    ref_steps: int = 5
    """Controller updates whose median entropy is H_ref, the run's early level (the paper's target is the initial
    entropy; a median of a few updates is robust to one noisy first batch)."""
    centering: str = "exact"
    """REPO's L: exact (log pi + H, from TRL's loss-forward entropy) or raw (log pi, SkyRL's logits-free form)."""
    zeta0: float = 1e-3
    """Initial zeta (REPO-R; SkyRL PR #1896)."""
    zeta_min: float = 1e-4
    """Smallest |zeta| before the controller flips its sign."""
    zeta_max: float = 0.05
    """Largest |zeta|: 0.05 for LLM vocabularies (the paper's bound); ~0.5 for a vocabulary of a few dozen tokens."""
    eps_high0: float | None = None
    """ADAPO's first eps_high; None = the trainer's epsilon_high."""
    eps_min: float = 0.2
    """ADAPO lower bound of eps_high (our choice)."""
    eps_max: float = 1.0
    """ADAPO upper bound of eps_high (our choice)."""
    kappa: float = 1.25
    """ADAPO multiplicative step per controller update (our choice)."""
    every: int | None = None
    """Optimizer steps per controller update; None = one TRL iteration, the optimizer steps spent on one generation
    batch (steps_per_generation x num_iterations / gradient_accumulation_steps), like the paper's once-per-iteration
    controller. Each update reads the mean entropy of those steps' loss forwards."""

    vocab_size: int | None = None
    """The policy's vocabulary size V, when known: a ``target`` (or, for kind="target", a band floor) at or above
    ln V nats, the entropy of the uniform distribution and the most a token distribution holds, is never reached
    (the lever would push one way for the whole run) and is refused."""

    def __post_init__(self) -> None:
        """One :class:`ControlError` naming the field, the value and what to change, for settings that cannot work:
        a number that is not finite, bounds out of order, a target at or above ln V, a setting the kind ignores."""
        if self.kind not in CONTROLS:
            raise ControlError(f"control={self.kind!r}; use one of {', '.join(CONTROLS)} (or None for no control)")
        if self.using not in LEVERS:
            raise ControlError(f"ControlConfig(using={self.using!r}); use one of {', '.join(LEVERS)}")
        if self.centering not in ("exact", "raw"):
            raise ControlError(f"ControlConfig(centering={self.centering!r}); use exact or raw")
        _whole("ref_steps", self.ref_steps, 1)
        _whole("every", self.every, 1)
        _whole("vocab_size", self.vocab_size, 2)
        for name in ("zeta0", "zeta_min", "zeta_max", "eps_min", "eps_max", "kappa"):
            _finite(name, getattr(self, name))
        if self.target is not None and not _finite("target", self.target) > 0:
            raise ControlError(f"ControlConfig(target={self.target!r}); an entropy target is > 0 nats")
        low, high = self._edges("band" if self.band is not None else "band_rel")
        if not 0 <= low < high:
            raise ControlError(f"entropy band ({low}, {high}); need 0 <= low < high")
        if self.kind == "target" and self.target is not None:
            raise ControlError(
                f"ControlConfig('target', target={self.target!r}): kind 'target' steers into its band and would "
                "ignore target; give band=(low, high) nats, or use kind 'repo-r' or 'adapo' for one target"
            )
        if self.kind != "target" and self.band is not None:
            raise ControlError(
                f"ControlConfig({self.kind!r}, band={self.band!r}): only kind 'target' keeps a band and {self.kind} "
                f"would ignore it; use ControlConfig('target', using={self.kind!r}, band=...) or give target="
            )
        if not 0 < self.zeta_min <= self.zeta0 <= self.zeta_max:
            raise ControlError("ControlConfig: need 0 < zeta_min <= zeta0 <= zeta_max")
        if not (self.kappa > 1 and 0 < self.eps_min <= self.eps_max):
            raise ControlError("ControlConfig: need kappa > 1 and 0 < eps_min <= eps_max")
        if self.eps_high0 is not None and not self.eps_min <= _finite("eps_high0", self.eps_high0) <= self.eps_max:
            raise ControlError(
                f"ControlConfig(eps_high0={self.eps_high0!r}) is outside [eps_min, eps_max] = [{self.eps_min}, "
                f"{self.eps_max}]; ADAPO keeps epsilon_high within them"
            )
        if self.vocab_size is not None:
            self.check_vocabulary(self.vocab_size)

    def _edges(self, name: str) -> tuple[float, float]:
        """``band`` or ``band_rel`` as two finite floats (one :class:`ControlError` for anything else)."""
        value = getattr(self, name)
        if isinstance(value, str | bytes) or not isinstance(value, tuple | list) or len(value) != 2:
            raise ControlError(f"ControlConfig({name}={value!r}); give two numbers (low, high)")
        return _finite(name, value[0]), _finite(name, value[1])

    def check_vocabulary(self, vocab_size: int) -> None:
        """Refuse (:class:`ControlError`) a target, or a band floor, that a policy over ``vocab_size`` tokens can
        never reach: at or above ln V nats. Called at construction when ``vocab_size`` is given; a caller that learns
        V later (from the model) calls it then."""
        ln_v = math.log(vocab_size)
        what, floor = ("band low", self.band[0]) if self.kind == "target" and self.band else ("target", self.target)
        if floor is not None and floor >= ln_v:
            raise ControlError(
                f"ControlConfig {what} {floor:g} nats is at or above ln V = {ln_v:.4g} (V = {vocab_size}), the "
                "entropy of a uniform distribution over the vocabulary: the policy can never reach it (bits or log10 "
                "instead of nats?)"
            )

    @property
    def lever(self) -> str:
        """The knob that moves: repo-r (zeta) or adapo (eps_high)."""
        return self.using if self.kind == "target" else self.kind


def _finite(name: str, value: Any) -> float:
    """``value`` as a finite float, else one :class:`ControlError` naming the field (NaN, inf, a string, None)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ControlError(f"ControlConfig({name}={value!r}); use a finite number")
    return float(value)


def _whole(name: str, value: Any, least: int) -> None:
    """A whole number >= ``least``, or None for the fields where None has a meaning; else one :class:`ControlError`."""
    if value is None and name != "ref_steps":
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ControlError(f"ControlConfig({name}={value!r}); use a whole number >= {least}")


def resolve(control: str | ControlConfig | None) -> ControlConfig | None:
    """``control=`` as given to ``attach``: a name, a :class:`ControlConfig` or None (no control)."""
    if control is None or isinstance(control, ControlConfig):
        return control
    if isinstance(control, str):
        return ControlConfig(kind=control)
    raise ControlError(f"control={control!r}; use 'repo-r', 'adapo', 'target', a ControlConfig or None")


class EntropyController:
    """The controller's state, framework-free: feed it each loss forward, close each update (:meth:`end_step`).

    ``observe`` adds a micro-batch's entropy sum and token count; ``end_step`` turns the step's mean entropy into the
    next step's lever (``zeta`` or ``eps_high``) and returns what to log; ``advantages`` applies REPO-R.
    """

    def __init__(self, cfg: ControlConfig, eps_high: float | None = None) -> None:
        self.cfg = cfg
        self.zeta = cfg.zeta0
        self.eps_high = float(cfg.eps_high0 if cfg.eps_high0 is not None else (eps_high or cfg.eps_min))
        if cfg.lever == "adapo" and not cfg.eps_min <= self.eps_high <= cfg.eps_max:
            raise ControlError(
                f"ADAPO starts at epsilon_high={self.eps_high} outside [eps_min, eps_max] = "
                f"[{cfg.eps_min}, {cfg.eps_max}]; set ControlConfig(eps_high0=...) or the bounds"
            )
        self.early: list[float] = []  # step entropies until H_ref is known
        self.h_ref: float | None = None
        self._sum = 0.0
        self._count = 0.0
        self._device_sums: torch.Tensor | None = None  # tensors observed and not yet read back: (entropy sum, tokens)

    # ---- inputs -----------------------------------------------------------------------------------------------
    def observe(self, entropy_sum: float | torch.Tensor, tokens: float | torch.Tensor) -> None:
        """One loss forward: sum of token entropies (nats) over its valid tokens, and their count. Tensors stay on
        their device, added up there and read back once, by :meth:`pending` (a float of a GPU tensor here would make
        every micro-batch's loss forward wait for the device)."""
        if isinstance(entropy_sum, torch.Tensor) or isinstance(tokens, torch.Tensor):
            ref = entropy_sum if isinstance(entropy_sum, torch.Tensor) else tokens
            assert isinstance(ref, torch.Tensor)
            dtype = torch.float32 if ref.device.type == "mps" else torch.float64  # MPS has no float64
            pair = torch.stack(
                [torch.as_tensor(v, device=ref.device).to(dtype) for v in (entropy_sum, tokens)]
            ).detach()
            self._device_sums = pair if self._device_sums is None else self._device_sums + pair
            return
        self._sum += float(entropy_sum)
        self._count += float(tokens)

    def pending(self) -> tuple[float, float]:
        """``(entropy sum, token count)`` observed since the last :meth:`end_step` (to reduce across ranks); the
        one device-to-host read of the tensors observed since the last call."""
        if self._device_sums is not None:
            total, count = self._device_sums.tolist()
            self._device_sums = None
            self._sum += total
            self._count += count
        return self._sum, self._count

    # ---- the lever --------------------------------------------------------------------------------------------
    def advantages(self, adv: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor | None) -> torch.Tensor:
        """REPO-R's ``Ã (B, T)`` from advantages ``(B,)`` or ``(B, T)``, log-probs and entropies ``(B, T)`` (nats)."""
        A = adv.unsqueeze(-1).expand_as(logp) if adv.dim() == 1 else adv
        # in float32 at least: in bf16 (a loss forward in the model's dtype) zeta*|A|*L at zeta = 1e-3 is below A's
        # rounding step, and A~ came out equal to A
        dtype = torch.promote_types(A.dtype, torch.float32)
        L = levers.centred_logp(logp.to(dtype), None if entropy is None else entropy.to(dtype), self.cfg.centering)
        return levers.repo_r_advantages(A.to(dtype), L, self.zeta).to(adv.dtype)

    @property
    def target(self) -> float | None:
        """The target in nats (band: its geometric centre); None until H_ref is known when it is needed."""
        band = self.band
        if band is not None:
            return (band[0] * band[1]) ** 0.5
        return self.cfg.target if self.cfg.target is not None else self.h_ref

    @property
    def band(self) -> tuple[float, float] | None:
        """kind="target": ``(low, high)`` in nats, None until known; other kinds: None."""
        if self.cfg.kind != "target":
            return None
        if self.cfg.band is not None:
            return self.cfg.band
        if self.h_ref is None:
            return None
        return self.cfg.band_rel[0] * self.h_ref, self.cfg.band_rel[1] * self.h_ref

    def end_step(self, entropy_sum: float | None = None, tokens: float | None = None) -> dict[str, float]:
        """Close an optimizer step: update H_ref and the lever from the step's mean entropy; the metrics to log.

        ``entropy_sum``/``tokens`` override the observed ones (the caller's cross-rank totals). Empty when the step
        saw no tokens.
        """
        total, count = self.pending() if entropy_sum is None else (float(entropy_sum), float(tokens or 0))
        self._sum, self._count, self._device_sums = 0.0, 0.0, None
        if count <= 0:
            return {}
        h = total / count
        if self.h_ref is None:
            self.early.append(h)
            if len(self.early) >= self.cfg.ref_steps:
                self.h_ref = float(statistics.median(self.early))
        out = {M.CONTROL_ENTROPY: h}
        target, band = self.target, self.band
        if target is not None:
            aim = levers.band_target(h, *band) if band is not None else target
            c = self.cfg
            if c.lever == "repo-r":
                self.zeta = levers.zeta_update(self.zeta, h, aim, c.zeta_min, c.zeta_max)
            else:
                self.eps_high = levers.adapo_update(self.eps_high, h, aim, c.kappa, c.eps_min, c.eps_max)
            out[M.CONTROL_TARGET] = target
        if band is not None:
            out[M.CONTROL_BAND_LOW], out[M.CONTROL_BAND_HIGH] = band
        if self.cfg.lever == "repo-r":
            out[M.CONTROL_ZETA], out[M.CONTROL_ZETA_MAX] = self.zeta, self.cfg.zeta_max
        else:
            out[M.CONTROL_EPS_HIGH], out[M.CONTROL_EPS_MAX] = self.eps_high, self.cfg.eps_max
        return out

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything that continues this controller's trajectory, JSON-ready: both levers, H_ref and the early
        entropies it is (or will be) the median of, the entropy sum and token count not yet closed by
        :meth:`end_step`. ``target`` and ``band`` follow from H_ref and the config; they are written for readers."""
        self.pending()  # the observed tensors, read back
        return {
            "kind": self.cfg.kind,
            "lever": self.cfg.lever,
            "zeta": self.zeta,
            "eps_high": self.eps_high,
            "h_ref": self.h_ref,
            "early": list(self.early),
            "pending_entropy_sum": self._sum,
            "pending_tokens": self._count,
            "target": self.target,
            "band": list(self.band) if self.band is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any], pending: bool = True) -> None:
        """Continue from :meth:`state_dict`'s output. The lever the saved controller steered takes its saved value;
        the other keeps its own (a resume that switches lever starts it afresh). H_ref, or the entropies towards it,
        is the run's whatever the lever. ``pending=False`` drops the saved pending entropy (ranks other than 0)."""
        lever = state.get("lever", self.cfg.lever)
        if lever == "repo-r":
            self.zeta = float(state["zeta"])
        else:
            self.eps_high = float(state["eps_high"])
        self.early = [float(h) for h in state.get("early", [])]
        h_ref = state.get("h_ref")
        self.h_ref = None if h_ref is None else float(h_ref)
        keep = pending and "pending_tokens" in state
        self._sum = float(state["pending_entropy_sum"]) if keep else 0.0
        self._count = float(state["pending_tokens"]) if keep else 0.0
        self._device_sums = None


# ---- TRL -------------------------------------------------------------------------------------------------------------
def check_trl_seam(trainer: Any, cfg: ControlConfig) -> None:
    """Raise :class:`ControlError` when ``trainer`` has no loss seam to connect to (``compute_loss`` and TRL's loss
    forward, ``_get_per_token_logps_and_entropies``): e.g. TRL <= 0.21's online ``RLOOTrainer``."""
    if not callable(getattr(trainer, "compute_loss", None)) or not callable(getattr(trainer, LOGPS_METHOD, None)):
        name = type(trainer).__name__
        raise ControlError(f"control={cfg.kind!r} needs TRL's {LOGPS_METHOD} loss forward; {name} has none")


def check_trl(trainer: Any, cfg: ControlConfig) -> None:
    """Raise :class:`ControlError` when ``trainer`` cannot run ``cfg`` exactly (see the module docstring)."""
    name, args = type(trainer).__name__, getattr(trainer, "args", None)
    check_trl_seam(trainer, cfg)
    if (flag := liger_flag(trainer)) is not None:
        raise ControlError(
            f"control={cfg.kind!r}: {flag}=True computes the loss in Liger's fused kernel, which the controller "
            f"cannot reach; set {flag}=False"
        )
    if getattr(trainer, "entropy_coef", 0.0) or getattr(args, "use_adaptive_entropy", False):
        raise ControlError(
            f"control={cfg.kind!r}: TRL's own entropy bonus is on (entropy_coef / use_adaptive_entropy); two "
            "controllers would fight over the same entropy: turn one off"
        )
    loss_type = getattr(trainer, "loss_type", None)
    if cfg.lever == "repo-r" and loss_type is None:
        raise ControlError(
            f"control={cfg.kind!r} with REPO-R needs per-token advantages; {name}'s loss is sequence-level (one "
            "ratio and one advantage per completion): use GRPOTrainer, or ADAPO (using='adapo')"
        )
    if cfg.lever == "repo-r" and sequence_advantages_only(trainer):
        raise ControlError(
            f"control={cfg.kind!r} with REPO-R rewrites the advantages per token, and {name}'s loss takes one per "
            "sequence (advantages.unsqueeze(1), TRL < 0.26): per-token ones would broadcast into a wrong loss; "
            "upgrade TRL to >= 0.26, or use ADAPO (using='adapo')"
        )
    if cfg.lever == "adapo":
        if not hasattr(trainer, "epsilon_high"):
            raise ControlError(f"control={cfg.kind!r} with ADAPO needs trainer.epsilon_high; {name} has none")
        EntropyController(cfg, trainer.epsilon_high)  # its start within [eps_min, eps_max], before a run exists
        if loss_type is not None and loss_type not in CLIP_WIDTH_LOSSES:
            raise ControlError(
                f"control={cfg.kind!r} with ADAPO steers the upper clip width; loss_type={loss_type!r} has none "
                f"(use one of {', '.join(CLIP_WIDTH_LOSSES)}, or REPO-R)"
            )
        if getattr(args, "delta", None) is not None:
            raise ControlError(
                f"control={cfg.kind!r} with ADAPO: delta={args.delta} caps the ratio, so the upper clip width is not "
                "the only bound; unset delta"
            )


@dataclass
class TrlControl:
    """A controller connected to a TRL trainer: the two wraps and the step-end callback (:func:`install_trl`)."""

    trainer: Any
    watch: Any
    controller: EntropyController
    strict: bool = False
    every: int = 1
    callback: Any = None
    restore: dict[str, Any] = field(default_factory=dict)
    initial: dict[str, Any] = field(default_factory=dict)  # export() at attach: what a training from step 0 starts at
    _inputs: Any = None
    _steps: int = 0

    def __post_init__(self) -> None:
        self.initial = self.initial or self.export()

    # ---- wraps ------------------------------------------------------------------------------------------------
    def compute_loss(self, orig: Any, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """TRL's ``compute_loss`` with the batch at hand for the loss forward; the advantages restored after."""
        training = getattr(self.trainer.model, "training", True)
        self._inputs = inputs if training else None  # evaluation: measured nowhere, changed nowhere
        adv = inputs.get("advantages") if training and hasattr(inputs, "get") else None
        try:
            out = orig(model, inputs, *args, **kwargs)
        finally:
            missed, self._inputs = self._inputs, None
            if adv is not None:
                inputs["advantages"] = adv  # TRL reuses a buffered batch across num_iterations: leave it as it was
        if missed is not None:  # no loss forward with entropy ran inside compute_loss
            self.watch.failure(
                "control.loss_forward",
                ControlError(f"TRL's loss forward returned no entropy; the controller needs it ({LOGPS_METHOD})"),
            )
        return out

    def loss_forward(self, orig: Any, *args: Any, **kwargs: Any) -> Any:
        """TRL's ``_get_per_token_logps_and_entropies``; inside the loss it measures entropy and applies REPO-R."""
        out = orig(*args, **kwargs)
        if without_entropy(out):
            return out  # the loss forward is still to come
        inputs, self._inputs = self._inputs, None  # the first call inside compute_loss with entropy: the loss forward
        if inputs is not None:
            try:
                self._connect(out, inputs)
            except Exception as exc:  # noqa: BLE001 - the loss goes on with TRL's own advantages
                self.watch.failure("control.loss_forward", exc)
        return out

    def _connect(self, out: Any, inputs: Any) -> None:
        logps, entropies = out[0], out[1]
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        with torch.no_grad():  # in float32: bf16 rounds a count above 256 tokens and a sum to 3 digits
            m = mask.to(torch.float32)
            self.controller.observe((entropies.detach().float() * m).sum(), m.sum())  # no host read: see observe
            if self.controller.cfg.lever == "repo-r":
                inputs["advantages"] = self.controller.advantages(inputs["advantages"], logps.detach(), entropies)

    # ---- the step boundary ---------------------------------------------------------------------------------------
    def step_end(self, step: int) -> dict[str, float]:
        """After an optimizer step: every ``every`` steps update the controller on those steps' entropy (cross-rank
        totals), set ``trainer.epsilon_high`` for ADAPO and log the state at ``step``; otherwise nothing."""
        self._steps += 1
        if self._steps % self.every:
            return {}
        total, count = self.controller.pending()
        acc = getattr(self.trainer, "accelerator", None)
        if acc is not None and getattr(acc, "num_processes", 1) > 1:  # every rank reaches here in lockstep
            totals = acc.reduce(torch.tensor([total, count], device=acc.device, dtype=torch.float64), "sum")
            total, count = float(totals[0]), float(totals[1])
        out = self.controller.end_step(total, count)
        if self.controller.cfg.lever == "adapo":
            self.trainer.epsilon_high = self.controller.eps_high
        if out:
            self.watch.log_dict(step, out)
        return out

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """The state a checkpoint keeps: the controller's (:meth:`EntropyController.state_dict`), the optimizer steps
        counted since the first (``steps``: the phase of ``every``) and ``every``, JSON-ready."""
        return {**self.controller.state_dict(), "steps": self._steps, "every": self.every}

    def load(self, state: Mapping[str, Any], pending: bool = True) -> None:
        """Continue from :meth:`export`'s output; ADAPO's ``trainer.epsilon_high`` follows at once."""
        self.controller.load_state_dict(state, pending=pending)
        self._steps = int(state.get("steps", 0))
        if self.controller.cfg.lever == "adapo":
            self.trainer.epsilon_high = self.controller.eps_high

    def begin(self, state: Any) -> None:
        """At train start, with the ``TrainerState`` the ``Trainer`` built or loaded from a checkpoint: from step 0
        the initial values; past it the state the checkpoint saved (pending entropy on rank 0 only: the file is
        rank 0's), or, where it saved none, the initial values and one warning."""
        step = int(getattr(state, "global_step", 0) or 0)
        saved_all = getattr(state, "stateful_callbacks", None)
        saved_all = saved_all if isinstance(saved_all, dict) else None
        entry = (saved_all or {}).get(CALLBACK_NAME)
        saved = entry.get("attributes", {}).get(STATE_KEY) if isinstance(entry, dict) else None
        if step == 0:
            self.load(self.initial)
        elif isinstance(saved, Mapping):
            self.load(saved, pending=bool(getattr(state, "is_world_process_zero", True)))
            c = self.controller
            log.info(
                "entropy_watch: control %s continues from the checkpoint at step %d (zeta %g, eps_high %g, H_ref %s)",
                c.cfg.kind, step, c.zeta, c.eps_high, c.h_ref,
            )  # fmt: skip
        else:
            self.load(self.initial)
            log.warning(
                "entropy_watch: the checkpoint at step %d holds no entropy controller state (saved without control= "
                "or by an older entropy_watch): control %s starts from its initial values and measures H_ref again "
                "from the resumed entropy",
                step,
                self.controller.cfg.kind,
            )
        if saved_all is not None and entry is None:
            # transformers' _save_checkpoint updates stateful_callbacks[name] by key: without an entry the next save
            # of a checkpoint that had none would raise KeyError
            saved_all[CALLBACK_NAME] = {"args": {}, "attributes": {STATE_KEY: self.export()}}

    def detach(self) -> None:
        """Remove the wraps and the callback; ``epsilon_high`` goes back to its value at attach."""
        for name, original in self.restore.items():
            if name == "epsilon_high":
                self.trainer.epsilon_high = original
            elif original is None:
                self.trainer.__dict__.pop(name, None)
            else:
                setattr(self.trainer, name, original)
        self.restore.clear()
        if self.callback is not None:
            self.trainer.remove_callback(self.callback)


def iteration_steps(trainer: Any) -> int:
    """Optimizer steps TRL spends on one generation batch: ``steps_per_generation x num_iterations`` micro-steps over
    ``gradient_accumulation_steps`` per optimizer step (at least 1)."""
    args = trainer.args
    accum = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
    per_generation = int(getattr(args, "steps_per_generation", None) or accum)
    passes = int(getattr(trainer, "num_iterations", getattr(args, "num_iterations", 1)) or 1)
    return max(1, round(per_generation * passes / accum))


def install_trl(trainer: Any, control: str | ControlConfig, watch: Any, strict: bool = False) -> TrlControl:
    """Check, then connect ``control`` to ``trainer``: instance-level wraps of ``compute_loss`` and the loss forward,
    and a callback that closes each optimizer step. Install it before other wraps of the same two methods, so that
    they see the advantages the loss uses."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    cfg = resolve(control)
    assert cfg is not None
    check_trl(trainer, cfg)
    controller = EntropyController(cfg, getattr(trainer, "epsilon_high", None))
    ctl = TrlControl(trainer, watch, controller, strict, every=cfg.every or iteration_steps(trainer))
    ctl.restore = {
        "compute_loss": trainer.__dict__.get("compute_loss"),
        LOGPS_METHOD: trainer.__dict__.get(LOGPS_METHOD),
        "epsilon_high": getattr(trainer, "epsilon_high", None),
    }
    orig_loss, orig_forward = trainer.compute_loss, getattr(trainer, LOGPS_METHOD)
    trainer.compute_loss = lambda model, inputs, *a, **k: ctl.compute_loss(orig_loss, model, inputs, *a, **k)
    setattr(trainer, LOGPS_METHOD, lambda *a, **k: ctl.loss_forward(orig_forward, *a, **k))
    if cfg.lever == "adapo":
        trainer.epsilon_high = ctl.controller.eps_high

    # A class per controller, closing over ``ctl``: transformers' own restore (restore_callback_states_from_checkpoint)
    # replaces the instance by ``type(cb)()``, which is still connected to this controller.
    class EntropyControlCallback(TrainerCallback, ExportableState):
        def state(self) -> dict[str, Any]:
            try:  # the Trainer calls this unguarded, at train start and at every checkpoint
                return {"args": {}, "attributes": {STATE_KEY: ctl.export()}}
            except Exception as exc:  # noqa: BLE001 - the checkpoint goes on without the controller's state
                watch.failure("control.state", exc)
                return {"args": {}, "attributes": {}}

        def on_train_begin(self, args: Any, state: Any, control_: Any, **kwargs: Any) -> None:
            ctl.callback = self  # the instance the Trainer holds (transformers' restore may have replaced ours)
            try:
                ctl.begin(state)
            except Exception as exc:  # noqa: BLE001 - the controller keeps the values it has
                watch.failure("control.train_begin", exc)

        def on_step_end(self, args: Any, state: Any, control_: Any, **kwargs: Any) -> None:
            try:
                ctl.step_end(int(state.global_step))  # global_step was just incremented: TRL's log step
            except Exception as exc:  # noqa: BLE001 - the lever keeps its last value
                watch.failure("control.step_end", exc)

    ctl.callback = EntropyControlCallback()
    trainer.add_callback(ctl.callback)
    watch.update_meta(control={**asdict(cfg), "lever": cfg.lever})
    log.info("entropy_watch: control %s on %s (lever %s)", cfg.kind, type(trainer).__name__, cfg.lever)
    return ctl
