"""Attach entropy_watch to a TRL ``GRPOTrainer`` (or ``RLOOTrainer``) in one line.

    from entropy_watch.hooks.trl import attach

    trainer = GRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...), train_dataset=...)
    handle = attach(trainer, run="grpo-qwen-s0")      # <- the one line
    trainer.train()

Two layers (INTEGRATIONS §1.6):

* **callback** (public API, every TRL version): every scalar TRL logs is recorded under its TRL name and the
  canonical one (``entropy`` -> ``entropy/mean``, ``clip_ratio/low_mean`` -> ``clip/low_frac``, from the importers'
  alias table), and at train start the config that matters (loss type, epsilons, beta, num_iterations, importance
  sampling level, top-entropy quantile, versions, world size) goes into ``run.json``;
* **per-token** (private API, feature-detected): instance-level wraps of ``compute_loss`` (the batch: masks,
  advantages, old log-probs) and of ``_get_per_token_logps_and_entropies`` (the log-probs and entropies of the loss
  forward). For the loss forward only — the first call inside ``compute_loss`` that returns entropies; TRL 1.16 runs
  the old-log-prob and reference passes outside it, and a pass without entropy is let through — they record the
  entropy histogram, clip-low/high fractions recomputed with the trainer's own epsilons, advantage statistics and
  covariance terms. TRL's entropy tensor is reused: no second softmax. Whenever TRL passes old
  log-probs (a generation batch that outlives an optimizer step, or vLLM) the clip fractions are recorded: 0 on the
  first pass over the batch, where the old log-probs equal the new ones, as TRL logs them, and ``clip/onpolicy`` is 1
  there (the ratio is 1 within ``hooks.stats.ONPOLICY_LOG_RATIO_TOL``). Without old log-probs (``num_iterations=1``:
  TRL's loss uses a detached copy) ``clip/onpolicy`` is 1 and the clip fractions are absent (N/A), where TRL logs 0.

While the per-token layer runs, it owns the canonical entropy/clip/advantage names; TRL's own numbers stay under
TRL's names. ``entropy/mean`` and ``clip/*_frac`` follow TRL's averaging (token mean per micro-batch, mean over the
step's micro-batches), so they equal TRL's ``entropy`` and ``clip_ratio/*_mean`` for the same step (clip fractions:
wherever recorded, i.e. with old log-probs).

The clip fractions follow the rule of the loss the trainer runs, told by the class that defines its ``_compute_loss``
(:data:`KNOWN_LOSSES`): TRL's ``GRPOTrainer`` (ratio clip; CISPO's cap, ``delta``, sequence-level GSPO), ``RLOOTrainer``
(one ratio per sequence) and the experimental ``GMPOTrainer`` (the clip is on the log-ratio: ``|log r| > eps``). Any
other loss (a subclass's own ``_compute_loss``, an unknown ``loss_type`` or importance-sampling level) gets one
warning at attach and no recomputed clip fractions: ``clip/*`` are then TRL's own logged ``clip_ratio/*``.

If a private method is missing or returns an unexpected shape (another TRL version, Liger in TRL <= 1.13: its
``use_liger_kernel``, or ``use_liger_loss`` in TRL <= 0.24), the per-token layer switches itself off with one warning
and the callback carries on; a loss forward that is not seen inside ``compute_loss`` or that carries no entropy gets one
warning. The per-token layer owns the canonical names only at the steps it recorded (and, where it left out an input of
a mismatched shape, only the names it recorded then): at any other step TRL's logged values fill them, so a seam this
module does not recognise costs the per-token statistics, never the entropy curve. Nothing here can crash training:
failures are counted in ``hooks/errors``; ``strict=True`` re-raises (tests). ``attach`` refuses (one line) an object
that is no ``Trainer``, and a trainer it is attached to already while that run records (``close()`` it first: the
earlier hook is then detached). A ``train()`` that begins (e.g. ``resume_from_checkpoint`` after an out-of-memory error
in the same process) drops the loss forwards of the step an earlier ``train()`` left unfinished, with one warning; TRL
keeps them in its ``_metrics``, so its first logged ``entropy`` after such a restart averages them in and ours does not.

TRL versions (read and run from 0.20 to 1.16): the seams above are the same from 0.20 on (the log-prob method returns
``(logps, entropies)`` before 1.7, a third ``aux_loss`` after). Before 1.9 TRL logs the mean over ranks of each rank's
token mean where this layer records the token mean over all ranks: the two differ under ``torch.distributed`` when the
ranks hold different numbers of tokens. ``control="repo-r"`` needs 0.26 (``hooks.control.sequence_advantages_only``).
Unsloth's GRPO trainer (a log-prob method taking ``compute_efficient``) computes its loss in a fused kernel that returns
no log-probs or entropies: attach then records its logged scalars, the advantages and the sampled-token NLL of the old
log-probs from the loss's inputs, with one warning, and refuses ``control=`` (:mod:`~entropy_watch.hooks.trl_unsloth`).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from entropy_watch import metrics as M
from entropy_watch.aliases import TRL_ENTROPY_DEFINITION
from entropy_watch.errors import ConfigError
from entropy_watch.hooks.accumulate import TRL_MIRRORED, StepAccumulator
from entropy_watch.hooks.control import ControlConfig, ControlError, check_trl_seam, liger_flag, without_entropy
from entropy_watch.hooks.control import check_trl as check_control
from entropy_watch.hooks.control import install_trl as install_control
from entropy_watch.hooks.control import resolve as resolve_control
from entropy_watch.hooks.hf import EntropyWatchCallback, run_name_for, store_arg
from entropy_watch.hooks.stats import ONPOLICY_LOG_RATIO_TOL
from entropy_watch.hooks.trl_unsloth import ENTROPY_DEFINITION as FUSED_ENTROPY_DEFINITION
from entropy_watch.hooks.trl_unsloth import InputStats, fused_loss
from entropy_watch.hooks.trl_unsloth import note as fused_note

log = logging.getLogger("entropy_watch")

LOGPS_METHOD = "_get_per_token_logps_and_entropies"  # TRL 0.20 -> 1.16: returns (logps, entropies[, aux_loss])
HARD_CLIP_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")  # two-sided PPO clip, TRL's clip_ratio/* metrics
KNOWN_LOSS_TYPES = (*HARD_CLIP_LOSSES, "cispo", "sapo", "vespo")  # GRPOTrainer._compute_loss, TRL 1.16
IS_LEVELS = ("token", "sequence")  # GRPOTrainer's importance_sampling_level, TRL 0.20 -> 1.16
# The class that defines the trainer's _compute_loss (module.qualname) -> the clip rule its loss and metrics follow.
KNOWN_LOSSES = {
    "trl.trainer.grpo_trainer.GRPOTrainer": "grpo",  # ratio outside [1 - eps_low, 1 + eps_high] (CISPO: > eps_high)
    "trl.trainer.rloo_trainer.RLOOTrainer": "rloo",  # the same, on one ratio per sequence (summed log-probs)
    "trl.experimental.gmpo.gmpo_trainer.GMPOTrainer": "gmpo",  # log-ratio outside [-eps_low, eps_high]
}
# Canonical names the per-token layer records; TRL's logged values are not copied onto them while it runs.
PER_TOKEN_NAMES = (*TRL_MIRRORED, M.ADV_MEAN, M.ADV_STD, M.ADV_MIN, M.ADV_MAX, M.KL_OLD, M.CLIP_ONPOLICY)
CONFIG_FIELDS = (
    "loss_type", "epsilon", "epsilon_high", "delta", "beta", "num_iterations", "steps_per_generation",
    "importance_sampling_level", "top_entropy_quantile", "temperature", "num_generations", "max_completion_length",
    "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "scale_rewards",
    "mask_truncated_completions", "entropy_coef", "use_adaptive_entropy", "entropy_target", "use_vllm",
    "vllm_importance_sampling_correction", "vllm_importance_sampling_mode", "off_policy_mask_threshold",
    "multi_objective_aggregation", "use_liger_kernel", "seed", "max_steps", "logging_steps",
)  # fmt: skip


@dataclass
class TrlHandle:
    """What :func:`attach` installed. ``mode``: ``"per-token"``, ``"loss-inputs"`` (Unsloth's fused loss: advantages
    and sampled-token NLL from the loss's inputs, :mod:`~entropy_watch.hooks.trl_unsloth`) or ``"callback-only"``;
    ``reason`` says why, or what the per-token layer leaves to TRL's logged numbers. ``rule``: the clip rule of the
    trainer's loss (``"grpo"``, ``"rloo"``, ``"gmpo"``; None: not recomputed)."""

    trainer: Any
    watch: Any
    callback: Any
    mode: str
    reason: str = ""
    accumulator: StepAccumulator | None = None
    inputs: InputStats | None = None  # mode "loss-inputs": the per-step sums of the fused loss's inputs
    rule: str | None = "grpo"
    control: Any = None  # hooks.control.TrlControl when attach(control=...) was given
    _restore: dict[str, Any] = field(default_factory=dict)

    def flush(self) -> None:
        """Publish everything recorded so far."""
        self.watch.flush()

    def close(self, state: str = "finished") -> None:
        """Record the last step, publish and mark the run ``state``."""
        self.watch.close(state)

    def detach(self) -> None:
        """Remove the callback and the wraps (the trainer behaves exactly as before :func:`attach`)."""
        for name, original in self._restore.items():
            if original is None:
                self.trainer.__dict__.pop(name, None)
            else:
                setattr(self.trainer, name, original)
        self._restore.clear()
        self.trainer.remove_callback(self.callback)
        if self.control is not None:  # installed first, so removed last
            self.control.detach()
            self.control = None


class TrlCallback(EntropyWatchCallback):
    """The scalar layer for TRL, plus the optimizer-step boundary for the per-token layer."""

    handle: TrlHandle | None = None
    owned_step: int | None = None  # the last step the per-token layer recorded
    owned_recorded: frozenset[str] = frozenset()  # the names it recorded at that step

    def owned_names(self, step: int) -> set[str]:
        """The canonical names the per-token layer recorded at ``step``; TRL's logged values fill all others."""
        acc = self.handle.accumulator if self.handle else None
        if acc is None or step != self.owned_step:
            return set()
        owned = set(PER_TOKEN_NAMES) - acc.drop
        if acc.last_left_out:  # an input was left out (a mismatched shape): what it was needed for is TRL's again
            owned &= self.owned_recorded
        return owned

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        handle = self.handle
        if handle is not None and handle.accumulator is not None and handle.accumulator.pending:
            try:  # an earlier train() of this trainer died mid-step (e.g. out of memory in backward): that step's
                dropped = handle.accumulator.pending  # loss forwards are no part of the step this training runs
                handle.accumulator = new_accumulator(handle.trainer, handle.watch, drop=handle.accumulator.drop)
                _warn_dropped(dropped)
            except Exception as exc:  # noqa: BLE001
                self._failure("trl.train_begin", exc)
        if handle is not None and handle.inputs is not None and handle.inputs.pending:
            _warn_dropped(handle.inputs.reset())
        super().on_train_begin(args, state, control, **kwargs)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        self.skip_canonical = self.owned_names(int(getattr(state, "global_step", 0) or 0))
        super().on_log(args, state, control, logs=logs, **kwargs)

    def train_meta(self, args: Any, state: Any, **kwargs: Any) -> dict[str, Any]:
        meta = super().train_meta(args, state, **kwargs)
        trainer = self.handle.trainer if self.handle else None
        meta.update(trl_config(trainer, args))
        meta["hooks_mode"] = self.handle.mode if self.handle else "callback-only"
        if self.handle and self.handle.reason:
            meta["hooks_note"] = self.handle.reason
        return meta

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        inputs = self.handle.inputs if self.handle else None
        if inputs is not None:  # every step, pending or not: under torch.distributed its flush is a collective
            try:
                inputs.flush(int(state.global_step))
            except Exception as exc:  # noqa: BLE001
                self._failure("trl.step_end", exc)
        acc = self.handle.accumulator if self.handle else None
        if acc is not None and acc.pending:
            try:
                step = int(state.global_step)  # just incremented: TRL's log_history step
                recorded = acc.flush(step)
                if recorded:
                    self.owned_step, self.owned_recorded = step, frozenset(recorded)
            except Exception as exc:  # noqa: BLE001
                self._failure("trl.step_end", exc)
        super().on_step_end(args, state, control, **kwargs)  # on_alert checkpoint/stop


def _warn_dropped(dropped: int) -> None:
    """Say that a new ``train()`` drops the loss forwards of the step an earlier one left unfinished."""
    log.warning(
        "entropy_watch: %d loss forward(s) of the step an earlier train() left unfinished not recorded", dropped
    )


def attach(
    trainer: Any,
    run: str | None = None,
    store: Any = None,
    sample_tokens: int = 8,
    *,
    watch: Any = None,
    per_token: bool = True,
    strict: bool = False,
    control: str | ControlConfig | None = None,
    **watch_kwargs: Any,
) -> TrlHandle:
    """Record ``trainer``'s logged scalars, config and (when possible) per-token statistics into a run.

    Args:
        trainer: a TRL ``GRPOTrainer`` or ``RLOOTrainer`` (any ``transformers.Trainer`` works callback-only).
        run: run name; default: ``args.run_name`` or the output folder's name.
        store: store root (a local or shared-filesystem folder, or ``s3://BUCKET/PREFIX``) or ``Store``; default
            ``$ENTROPY_WATCH_DIR``.
        sample_tokens: highest-entropy and random token rows kept per step (0: none).
        watch: record into this :class:`~entropy_watch.hooks.Watch` instead of creating one.
        per_token: install the per-token layer (False: callback only).
        strict: re-raise hook failures (tests).
        control: hold entropy with ``"repo-r"``, ``"adapo"`` or ``"target"`` (a band), or a
            :class:`~entropy_watch.hooks.control.ControlConfig`; None (default) changes nothing in training. A
            control the trainer cannot honour raises :class:`~entropy_watch.hooks.control.ControlError` here.
        watch_kwargs: passed to ``Watch`` (``token_every``, ``reduce``, ``flush_secs``...), including the live
            analysis: ``notify=`` (webhooks), ``on_alert=`` (e.g. ``{"critical": "checkpoint+stop"}``: checkpoint
            through ``control.should_save``, stop through ``control.should_training_stop`` at the next step end),
            ``detector=`` (a ``DetectorConfig``), ``app_url=``, ``live=`` (see :class:`~entropy_watch.hooks.Watch`).
    """
    if not callable(getattr(trainer, "add_callback", None)) or getattr(trainer, "args", None) is None:
        raise TypeError(
            f"attach(trainer): {type(trainer).__name__} is not a transformers Trainer (no add_callback/args); "
            "record another training loop with entropy_watch.hooks.Watch"
        )
    _replace_prior(trainer)
    fused = fused_loss(trainer)  # Unsloth's GRPO trainer: the loss forward runs in its own kernel
    control_cfg = resolve_control(control)
    if control_cfg is not None:
        if fused:
            raise ControlError(
                f"control={control_cfg.kind!r} acts inside TRL's loss forward; {type(trainer).__name__} computes its "
                "loss in Unsloth's fused kernel (unsloth_zoo grpo_accumulated_loss), out of the controller's reach: "
                "attach without control="
            )
        check_trl_seam(trainer, control_cfg)  # a trainer without TRL's loss forward (TRL <= 0.21's online RLOO)
        owner = loss_owner(trainer)
        if KNOWN_LOSSES.get(owner) not in ("grpo", "rloo"):  # e.g. GMPO: one advantage per sequence, log-ratio clip
            raise ControlError(
                f"control={control_cfg.kind!r} acts inside TRL's GRPOTrainer/RLOOTrainer loss; {owner} computes its "
                "own, which the controller cannot reach exactly: attach without control="
            )
        check_control(trainer, control_cfg)  # refuse before a run is created
        if (vocab := _vocab_size(trainer)) is not None:
            control_cfg.check_vocabulary(vocab)  # a target at or above ln V (in bits, say) is never reached
    made = watch is None  # attach's own run: closed when train() returns, reopened by a later train()
    if watch is None:
        from entropy_watch.hooks.watch import Watch

        args = trainer.args
        definition = FUSED_ENTROPY_DEFINITION if fused and per_token else TRL_ENTROPY_DEFINITION
        watch = Watch(
            run or run_name_for(args, "trl-run"),
            store=store_arg(store),
            strict=strict,
            vocab_size=_vocab_size(trainer),
            sample_tokens=sample_tokens,
            temperature=float(getattr(args, "temperature", 1.0) or 1.0),
            framework=f"trl.{type(trainer).__name__}",
            entropy_definition=f"{definition}; temperature {getattr(args, 'temperature', 1.0)}",
            **watch_kwargs,
        )
    callback = TrlCallback(watch=watch, strict=strict, framework=f"trl.{type(trainer).__name__}")
    callback.owns_watch = made
    handle = TrlHandle(trainer=trainer, watch=watch, callback=callback, mode="callback-only")
    callback.handle = handle
    if control_cfg is not None:  # before the per-token wraps, so they record the advantages the loss uses
        handle.control = install_control(trainer, control_cfg, watch, strict)
    reason = _per_token_unavailable(trainer) if per_token else "per-token layer disabled (per_token=False)"
    if per_token and fused:  # no log-probs or entropies leave Unsloth's kernel: what its inputs show, one warning
        handle.reason, handle.rule = fused_note(trainer), None
        log.warning("entropy_watch: %s", handle.reason)
        handle.inputs = InputStats(watch)
        _install_input_wrap(handle)
        handle.mode = "loss-inputs"
    elif reason:
        handle.reason = reason
        if per_token:
            log.warning("entropy_watch: TRL per-token statistics off (%s); recording logged scalars only", reason)
    else:
        handle.rule, note = clip_rule(trainer)
        if note:
            handle.reason = note
            log.warning("entropy_watch: %s", note)
        handle.accumulator = new_accumulator(trainer, watch, drop=_not_applicable(trainer, handle.rule))
        _install_wraps(handle, strict)
        handle.mode = "per-token"
        callback.skip_canonical = set(PER_TOKEN_NAMES) - handle.accumulator.drop
    trainer.add_callback(callback)
    return handle


def _replace_prior(trainer: Any) -> None:
    """Detach what an earlier :func:`attach` installed on ``trainer`` once its run is closed (a second training of
    the same trainer, recorded as another run); refuse while that run is still recording (a notebook cell run twice):
    two hooks would record every loss forward twice, into one run or two."""
    handler = getattr(trainer, "callback_handler", None)
    callbacks = getattr(handler, "callbacks", None) if handler is not None else getattr(trainer, "callbacks", None)
    for cb in list(callbacks or ()):
        prior = cb.handle if isinstance(cb, TrlCallback) else None
        if prior is None or prior.trainer is not trainer:
            continue
        if not getattr(prior.watch, "closed", False):
            raise ConfigError(
                f"attach(trainer): entropy_watch is already attached to this trainer (run {prior.watch.run!r}); "
                "keep using that handle, or call its close() first to record into another run"
            )
        prior.detach()


# ---- the per-token layer ------------------------------------------------------------------------------------------
def _per_token_unavailable(trainer: Any) -> str:
    """Why the per-token wraps cannot be installed on this trainer/version, or "" when they can."""
    if not callable(getattr(trainer, LOGPS_METHOD, None)):
        return f"{type(trainer).__name__} has no {LOGPS_METHOD} (TRL version without it)"
    if not callable(getattr(trainer, "compute_loss", None)):
        return "trainer has no compute_loss"
    if (flag := liger_flag(trainer)) is not None:  # use_liger_loss in TRL <= 0.24, use_liger_kernel in 0.25-1.13
        return f"{flag}=True routes the loss through compute_liger_loss (TRL <= 1.13), which has no entropy"
    if not hasattr(trainer, "epsilon_low"):
        return "trainer has no epsilon_low (TRL < 0.17)"
    return ""


def loss_owner(trainer: Any) -> str:
    """``module.qualname`` of the class whose ``_compute_loss`` (else ``compute_loss``) ``trainer`` runs."""
    if "_compute_loss" in getattr(trainer, "__dict__", {}):
        return f"{type(trainer).__module__}.{type(trainer).__qualname__} (instance-level _compute_loss)"
    for name in ("_compute_loss", "compute_loss"):
        for cls in type(trainer).__mro__:
            if name in vars(cls):
                return f"{cls.__module__}.{cls.__qualname__}"
    return f"{type(trainer).__module__}.{type(trainer).__qualname__}"


def clip_rule(trainer: Any) -> tuple[str | None, str]:
    """The clip rule of ``trainer``'s loss (:data:`KNOWN_LOSSES`) and "", or None and why it is not recomputed."""
    owner = loss_owner(trainer)
    rule = KNOWN_LOSSES.get(owner)
    after = "clip/*_frac are TRL's logged clip_ratio/* (where it logs them), not recomputed"
    if rule is None:
        return None, f"the loss is {owner}'s, not one entropy_watch knows; {after}"
    if rule == "grpo":
        loss_type = getattr(trainer, "loss_type", None)
        if loss_type is not None and loss_type not in KNOWN_LOSS_TYPES:
            known = ", ".join(KNOWN_LOSS_TYPES)
            return None, f"loss_type={loss_type!r} is not one entropy_watch knows ({known}); {after}"
        level = getattr(trainer, "importance_sampling_level", "token")
        if level not in IS_LEVELS:
            levels = ", ".join(IS_LEVELS)
            return None, f"importance_sampling_level={level!r} is not one entropy_watch knows ({levels}); {after}"
    return rule, ""


def _not_applicable(trainer: Any, rule: str | None = "grpo") -> set[str]:
    """Clip fractions not recorded: those of a loss whose rule is unknown (TRL's logged ones stand in), and those of
    soft-gated or weighted losses (SAPO, VESPO), which have none."""
    clip = {M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.CLIP_REGION_FRAC}
    if rule is None:
        return clip
    loss_type = getattr(trainer, "loss_type", None)
    if rule != "grpo" or loss_type is None or loss_type in HARD_CLIP_LOSSES or loss_type == "cispo":
        return set()
    return clip


def new_accumulator(trainer: Any, watch: Any, drop: set[str]) -> StepAccumulator:
    """An empty accumulator of the per-token layer; ``drop``: the names this trainer's loss has none of."""
    acc = StepAccumulator(watch, mirror=TRL_MIRRORED, vocab_size=_vocab_size(trainer))
    acc.drop = set(drop)
    return acc


def _install_wraps(handle: TrlHandle, strict: bool) -> None:
    trainer, watch = handle.trainer, handle.watch
    slot: dict[str, Any] = {"inputs": None, "calls": 0}
    orig_loss = trainer.compute_loss
    orig_logps = getattr(trainer, LOGPS_METHOD)
    handle._restore = {
        "compute_loss": trainer.__dict__.get("compute_loss"),
        LOGPS_METHOD: trainer.__dict__.get(LOGPS_METHOD),
    }
    warned: set[str] = set()

    def compute_loss(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        slot["inputs"] = inputs if getattr(trainer.model, "training", True) else None  # eval: not recorded
        slot["calls"] = 0
        try:
            out = orig_loss(model, inputs, *args, **kwargs)
        finally:
            missed, slot["inputs"] = slot["inputs"], None
        if missed is not None and handle.accumulator is not None:
            _warn_unseen(slot["calls"], warned)
        return out

    def get_logps_and_entropies(*args: Any, **kwargs: Any) -> Any:
        out = orig_logps(*args, **kwargs)
        inputs = slot["inputs"]
        if inputs is None or handle.accumulator is None:
            return out
        slot["calls"] += 1
        if without_entropy(out):
            return out  # the loss forward is still to come
        slot["inputs"] = None  # the first call inside compute_loss that computes entropy is the loss forward
        acc = handle.accumulator
        calls = acc.calls
        try:
            _record_loss_forward(handle, out, inputs, warned)
        except Exception as exc:  # noqa: BLE001 - hooks never crash training
            if acc.calls == calls and watch.reduce:  # refused before add(): still join its collectives
                try:
                    acc.join_refused(out[1] if isinstance(out, tuple | list) and len(out) > 1 else None)
                except Exception as join_exc:  # noqa: BLE001
                    watch.failure("trl.loss_forward", join_exc)
            watch.failure("trl.loss_forward", exc)
        return out

    trainer.compute_loss = compute_loss
    setattr(trainer, LOGPS_METHOD, get_logps_and_entropies)


def _install_input_wrap(handle: TrlHandle) -> None:
    """Under a fused loss (Unsloth): an instance-level wrap of ``compute_loss`` that hands each training micro-batch's
    inputs to ``handle.inputs`` before the loss runs (evaluation is not recorded)."""
    trainer, watch = handle.trainer, handle.watch
    orig_loss = trainer.compute_loss
    handle._restore = {"compute_loss": trainer.__dict__.get("compute_loss")}

    def compute_loss(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        stats = handle.inputs
        if stats is not None and getattr(trainer.model, "training", True):
            try:
                stats.add(inputs)
            except Exception as exc:  # noqa: BLE001 - hooks never crash training
                watch.failure("trl.loss_inputs", exc)
        return orig_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = compute_loss


def _warn_unseen(calls: int, warned: set[str]) -> None:
    """One warning when a training ``compute_loss`` ran no loss forward with entropy the per-token layer could read:
    that micro-batch is not recorded, and TRL's logged numbers fill the canonical names of its step."""
    key = "noentropy" if calls else "unseen"
    if key in warned:
        return
    warned.add(key)
    if calls:
        why = f"the TRL loss forward computed no entropy ({LOGPS_METHOD} returned None for it)"
    else:
        why = f"{LOGPS_METHOD} was not called inside compute_loss (this TRL runs its loss forward elsewhere)"
    log.warning("entropy_watch: %s; per-token statistics skipped, TRL's logged entropy and clip ratios stand", why)


def _record_loss_forward(handle: TrlHandle, out: Any, inputs: Any, warned: set[str]) -> None:
    """Feed one loss forward (a micro-batch) to the accumulator, mirroring the rules of the trainer's loss."""
    trainer = handle.trainer
    if not (isinstance(out, tuple | list) and len(out) >= 2 and isinstance(out[0], torch.Tensor)):
        handle.accumulator = None
        handle.mode, handle.reason = "callback-only", f"{LOGPS_METHOD} returned {type(out).__name__}, not a tuple"
        log.warning("entropy_watch: TRL per-token statistics off (%s)", handle.reason)
        return
    logps, entropies = out[0], out[1]
    mask = inputs["completion_mask"]
    if "tool_mask" in inputs:
        mask = mask * inputs["tool_mask"]
    adv = inputs.get("advantages")
    step = int(trainer.state.global_step) + 1  # global_step is incremented after the optimizer step
    eps_low, eps_high = float(trainer.epsilon_low), float(trainer.epsilon_high)
    old = inputs.get("old_per_token_logps")
    extra: dict[str, float] = {}
    loss_type = getattr(trainer, "loss_type", None)
    delta = getattr(trainer.args, "delta", None)
    rule = handle.rule
    if rule == "rloo":  # one ratio per sequence: summed log-probs against RLOO's old_logps (B,)
        seq_old = inputs.get("old_logps")
        if seq_old is None and old is not None:  # per-token old log-probs: RLOO sums them the same way
            seq_old = (old * inputs["completion_mask"]).sum(1)
        if seq_old is not None and adv is not None:
            log_ratio = ((logps.detach() * inputs["completion_mask"]).sum(1) - seq_old).unsqueeze(1)
            extra = _sequence_clip(trainer, log_ratio, adv, eps_low, eps_high)
    elif rule == "gmpo":  # GMPO clips the log-ratio at [-eps_low, eps_high]: ratio bounds exp(-eps_low), exp(eps_high)
        eps_low, eps_high = -math.expm1(-eps_low), math.expm1(eps_high)
    elif rule is None:  # a loss whose clip rule is unknown: no token is labelled clipped (TRL's logged ratios stand)
        eps_low, eps_high = 1.0, math.inf
    elif rule == "grpo" and old is not None and adv is not None:
        level = getattr(trainer, "importance_sampling_level", "token")
        log_ratio = logps.detach() - old
        if level == "sequence":
            log_ratio = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
            extra = _sequence_clip(trainer, log_ratio, adv, eps_low, eps_high, cispo=loss_type == "cispo")
        elif loss_type == "cispo" or delta is not None:
            extra = _token_clip(trainer, log_ratio, adv, mask, eps_low, eps_high, loss_type == "cispo", delta)
        if loss_type == "cispo":
            eps_low = 1.0  # CISPO has no low clip; its "high" is ratio > epsilon_high (absolute), in `extra`
    handle.accumulator.add(
        entropies,
        mask,
        step=step,
        logp=logps,
        old_logp=old,
        advantages=adv,
        eps_low=eps_low,
        eps_high=eps_high,
        token_ids=inputs.get("completion_ids"),
        tokenizer=getattr(trainer, "processing_class", None),
        extra=extra,
    )


def _adv_2d(adv: torch.Tensor) -> torch.Tensor:
    return adv.unsqueeze(1) if adv.dim() == 1 else adv


def _global_frac(trainer: Any, num: torch.Tensor, den: torch.Tensor) -> float:
    """``sum / count`` over all ranks, as TRL's ``global_masked_mean`` (``accelerator.reduce``)."""
    totals = torch.stack([num.float(), den.float()])
    acc = getattr(trainer, "accelerator", None)
    if acc is not None and getattr(acc, "num_processes", 1) > 1:
        totals = acc.reduce(totals, reduction="sum")
    return float((totals[0] / totals[1].clamp(min=1.0)).item())


def _sequence_clip(
    trainer: Any, log_ratio: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float, cispo: bool = False
) -> dict[str, float]:
    """Clip fractions over sequences for a ``(B, 1)`` log-ratio (GSPO's sequence level, RLOO): TRL counts rows."""
    ratio = torch.exp(log_ratio.float())
    a = _adv_2d(adv)
    a = a[:, :1] if a.shape[1] != 1 else a
    n = torch.tensor(float(ratio.shape[0]), device=ratio.device)
    if cispo:
        low = torch.zeros_like(ratio, dtype=torch.bool)
        high = (ratio > eps_high) & (a > 0)
    else:
        low = (ratio < 1 - eps_low) & (a < 0)
        high = (ratio > 1 + eps_high) & (a > 0)
    onpolicy = float(bool((log_ratio.abs() <= ONPOLICY_LOG_RATIO_TOL).all()))
    return {
        M.CLIP_LOW_FRAC: _global_frac(trainer, low.sum(), n),
        M.CLIP_HIGH_FRAC: _global_frac(trainer, high.sum(), n),
        M.CLIP_REGION_FRAC: _global_frac(trainer, (low | high).sum(), n),
        M.CLIP_ONPOLICY: onpolicy,
    }


def _token_clip(
    trainer: Any,
    log_ratio: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float,
    eps_high: float,
    cispo: bool,
    delta: float | None,
) -> dict[str, float]:
    """Token-level clip fractions where TRL's rule differs from the plain one: CISPO's absolute cap, INTELLECT-2's
    ``delta`` (TRL clamps the ratio at ``delta`` before it tests clip-high)."""
    ratio = torch.exp(log_ratio.float())
    a = _adv_2d(adv)
    if cispo:
        low = torch.zeros_like(ratio, dtype=torch.bool)
        high = (ratio > eps_high) & (a > 0)
    else:
        capped = ratio if delta is None else torch.clamp(ratio, max=delta)
        low = (ratio < 1 - eps_low) & (a < 0)
        high = (capped > 1 + eps_high) & (a > 0)
    m = mask.float()
    den = m.sum()
    return {
        M.CLIP_LOW_FRAC: _global_frac(trainer, (low.float() * m).sum(), den),
        M.CLIP_HIGH_FRAC: _global_frac(trainer, (high.float() * m).sum(), den),
        M.CLIP_REGION_FRAC: _global_frac(trainer, ((low | high).float() * m).sum(), den),
    }


# ---- config ---------------------------------------------------------------------------------------------------------
def trl_config(trainer: Any, args: Any) -> dict[str, Any]:
    """The TRL settings that change what entropy and clip numbers mean, with versions and world size."""
    cfg: dict[str, Any] = {}
    for name in CONFIG_FIELDS:
        if hasattr(args, name):
            v = getattr(args, name)
            cfg[name] = v if isinstance(v, bool | int | float | str) or v is None else str(v)
    if trainer is not None:
        for name in ("epsilon_low", "epsilon_high", "beta", "num_iterations", "loss_type", "importance_sampling_level"):
            if hasattr(trainer, name):
                cfg[name] = getattr(trainer, name)
        cfg["loss_impl"] = loss_owner(trainer)  # whose _compute_loss: the clip rule the clip fractions follow
    mods = [m for m in ("trl", "transformers", "torch", "accelerate") if m in sys.modules]
    versions = {m: str(getattr(sys.modules[m], "__version__", "?")) for m in mods}
    acc = getattr(trainer, "accelerator", None)
    world = int(getattr(acc, "num_processes", 0) or getattr(args, "world_size", 1) or 1)
    return {"trl_config": cfg, "framework_versions": versions, "world_size": world}


def _vocab_size(trainer: Any) -> int | None:
    cfg = getattr(getattr(trainer, "model", None), "config", None)
    v = getattr(cfg, "vocab_size", None)
    if v is None and cfg is not None and hasattr(cfg, "get_text_config"):
        v = getattr(cfg.get_text_config(), "vocab_size", None)
    return int(v) if v else None
