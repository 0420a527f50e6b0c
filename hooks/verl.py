"""verl integration: live metrics tee, a policy loss that splits clip low/high, and driver-side per-token wraps.

verl's trainer loop runs in a Ray actor (``TaskRunner``), not in the launching process, so everything is installed
by *importing a module* in verl's processes through its external-module mechanism (INTEGRATIONS §2.6)::

    python -m verl.trainer.main_ppo ... \\
        actor_rollout_ref.actor.policy_loss.loss_mode=ew_vanilla \\
        +ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=entropy_watch.hooks.verl_autoload \\
        +ray_kwargs.ray_init.runtime_env.env_vars.ENTROPY_WATCH_DIR=/shared/ew_runs \\
        +ray_kwargs.ray_init.runtime_env.env_vars.ENTROPY_WATCH_RUN=qwen3-dapo-s0

verl 0.4-0.5 read neither ``VERL_USE_EXTERNAL_MODULES`` nor ``ray_kwargs``: there ``verl_autoload.setup`` is
Ray's ``worker_process_setup_hook`` in a ``ray.init`` made before verl's ``main`` (docs/integrations.md).
``verl_autoload`` calls :func:`install`, which (each part skipped with one warning saying what is not recorded when
verl lacks it):

* **tee** — wraps ``verl.utils.tracking.Tracking.log`` at class level: every metrics dict the driver logs is
  recorded at its step, under verl's names plus canonical ones (importers' alias table: ``actor/entropy`` ->
  ``entropy/mean``, ``actor/pg_clipfrac`` -> ``clip/region_frac``; ``actor/pg_clipfrac_lower`` -> ``clip/dual_frac``
  only under a loss whose "lower" is the dual-clip share, ``vanilla`` and its wraps: ``verl_config.logs_dual_clip``);
* **policy losses** — registers ``ew_<mode>`` for every loss in ``core_algos.POLICY_LOSS_REGISTRY``: it calls the base
  loss with verl's own arguments and adds ``actor/ew_clipfrac_low`` (A<0, ratio<1-clip_ratio_low under PPO) and
  ``actor/ew_clipfrac_high`` (A>0, ratio>1+clip_ratio_high), by the clip rule of ``<mode>`` itself
  (``hooks/verl_split.py``; none, with one warning, for a loss that does not clip so, e.g. cispo, sapo, gpg), which the
  tee maps to ``clip/low_frac`` / ``clip/high_frac``, and ``actor/ew_onpolicy`` (1 when the call's ratio is 1:
  :func:`on_policy`), which verl averages over the step's loss calls and the tee records as ``clip/onpolicy`` = 1 only
  when every call was on-policy, else 0 (:func:`onpolicy_from_mean`); and ``ew_repo_r`` (``loss_mode=ew_repo_r``):
  REPO-R's advantages fed to verl's vanilla PPO loss (:func:`repo_r_policy_loss`). A call without the four tensors or
  a return other than ``(loss, metrics dict)`` (verl < 0.6.1's 4-tuple) passes through unchanged, with one warning
  naming what is not recorded; verl < 0.6 (no ``"vanilla"`` in the registry) refuses ``ew_vanilla`` and ``ew_repo_r``
  in one line;
* **driver wraps** — ``RayPPOTrainer._compute_old_log_prob`` (per-token entropy of pi_old, response mask, old
  log-probs, response ids; verl 0.4-0.6, without that method: the entropy ``RayPPOTrainer.fit`` hands the module's
  ``agg_loss``, :func:`_wrap_fit_entropy`) and the module-level ``ray_trainer.compute_advantage`` (advantages): one
  ``Watch.log_tokens`` per step with the global batch, so the driver is the single writer. At a step it recorded,
  this pass owns the canonical names it records (``entropy/*``, ``adv/*``, ``cov/*``, ``tokens/count``:
  :data:`DRIVER_NAMES`), as the TRL hook's per-token layer does: the tee records verl's numbers
  under verl's names only, so ``entropy/mean`` is the token mean of the pass its histogram and quantiles come from,
  whatever ``loss_agg_mode`` is, and ``actor/entropy`` (verl's ``agg_loss`` by ``loss_agg_mode``: another number
  under any mode but token-mean, e.g. seq-mean-token-mean) stays as logged. At any other step (bypass mode, the V1
  trainer) verl's logged values fill them. Clip fractions, ``kl/old`` and ``clip/onpolicy`` are always the update's
  (verl's and the ``ew_*`` losses'): the driver's pass has pi_old's log-probs and no ratio, so it records no
  ``clip/onpolicy`` (``Watch.update_pass = False``); without an ``ew_*`` loss the store holds none (N/A, not
  on-policy).
  verl >= 0.9 runs its V1 trainer by default (``trainer.use_v1=true``, ``verl/trainer/ppo/v1``), whose old-log-prob
  pass keeps the entropy in its TransferQueue and is not wrapped: there one warning says no per-token entropy is
  recorded (the logged scalars and the ``ew_*`` clip split still are); ``trainer.use_v1=false`` runs
  ``RayPPOTrainer``;
* **checkpoint state** — each worker's ``ew_repo_r`` controller is saved with verl's checkpoint and loaded with it
  (:func:`install_checkpoint_state`), so a resumed training holds the run's original entropy.

The run's settings go to ``run.json``'s ``config`` (:func:`run_config`: the resolved config verl hands ``Tracking``,
its actor, rollout, model, algorithm, data, trainer and critic sections, without secrets), so the alerts' suggested
actions quote the current values of the keys they name (``actor_rollout_ref.actor.clip_ratio_high``...).

The run name comes from ``$ENTROPY_WATCH_RUN``, else verl's ``experiment_name``; the store from
``$ENTROPY_WATCH_DIR`` (use a shared filesystem or ``s3://`` for multi-node). Resolved when first needed. A training
resumed into a run the store holds (``trainer.resume_mode=auto`` after a crash) records a ``resume`` event at the
first training step it logs (:func:`_check_resume`).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Container
from typing import Any

import torch

from entropy_watch import metrics as M
from entropy_watch.aliases import detect_canonical, is_eval
from entropy_watch.hooks.control import ControlConfig, EntropyController
from entropy_watch.hooks.verl_config import (  # noqa: F401 - CONFIG_SECTIONS, MAX_CONFIG_CHARS re-exported
    CONFIG_SECTIONS,
    DUAL_CLIP_SOURCE,
    MAX_CONFIG_CHARS,
    logs_dual_clip,
    run_config,
)
from entropy_watch.hooks.watch import report_failure, warn_second_training

log = logging.getLogger("entropy_watch")

CLIPFRAC_LOW = "actor/ew_clipfrac_low"  # no "max"/"min" substring: verl's legacy reducer would take max/min of it
CLIPFRAC_HIGH = "actor/ew_clipfrac_high"
ONPOLICY = "actor/ew_onpolicy"  # 1/0 per loss call; verl logs its mean over the step's calls (micro-batches, epochs)
ENTROPY_DEFINITION = "full-vocabulary, pi_old (verl recompute pass before the update), token mean over response tokens"

REPO_R_LOSS = "ew_repo_r"
_state: dict[str, Any] = {
    "watch": None,
    "experiment": None,
    "pending": None,
    "warned": set(),
    "repo": None,
    "driver": False,  # the driver wraps are installed in this process
    "trained": False,  # the tee has seen a training step (and judged whether this training resumed the run)
    "advantage_calls": 0,  # compute_advantage calls they saw
    "owned": None,  # (step, canonical names) the driver's last per-token pass was given the inputs of
    "config": None,  # run_config of the config verl handed Tracking (run.json's config)
    "seam": None,  # the old-log-prob seam wrap_driver wrapped (OLD_LOG_PROB_SEAM or, verl 0.4-0.6, FIT_SEAM)
    "trainer": None,  # verl 0.4-0.6: the RayPPOTrainer whose fit runs (its global_steps is the step)
}
_lock = threading.Lock()


# ---- the Watch of this (driver) process -------------------------------------------------------------------------
def get_watch(run: str | None = None, store: Any = None) -> Any:
    """This process's :class:`Watch`, created on first use.

    Run: ``run``, ``$ENTROPY_WATCH_RUN`` or verl's experiment name; store: ``store`` or ``$ENTROPY_WATCH_DIR``.
    """
    with _lock:
        if _state["watch"] is None:
            from entropy_watch.hooks.watch import Watch

            name = run or os.environ.get("ENTROPY_WATCH_RUN") or _state["experiment"] or "verl-run"
            strict = os.environ.get("ENTROPY_WATCH_STRICT", "") == "1"
            _state["watch"] = Watch(
                name,
                store=store,
                config=_state["config"],
                strict=strict,
                framework="verl",
                entropy_definition=ENTROPY_DEFINITION,
                reduce=False,
            )
        return _state["watch"]


def set_watch(watch: Any) -> None:
    """Record into ``watch`` (tests, or a caller that builds its own); ``None`` resets (the config verl gave too)."""
    _state.update(watch=watch, pending=None, warned=set(), advantage_calls=0, trained=False, owned=None)
    if watch is None:
        _state.update(config=None, trainer=None)


def _guard(where: str, exc: BaseException) -> None:
    report_failure(_state["watch"], f"verl.{where}", exc)


# ---- layer B: tee of the tracking layer --------------------------------------------------------------------------
# verl's RayPPOTrainer._update_actor renames the worker metrics with rename_dict(metrics, "actor/"), which prefixes
# every key that lacks it: ew_repo_r's control/zeta reaches Tracking.log as actor/control/zeta (the legacy dp_actor
# path kept control/zeta). The tee records the canonical control/* beside verl's name.
_WORKER_CONTROL = "actor/control/"


# Canonical names the driver's per-token pass records (Watch.log_tokens with entropy, mask, log-probs and, where the
# batch still pairs them, advantages; no ratio on the driver, so no clip/onpolicy: Watch.update_pass = False). At a
# step it recorded it owns them: the tee records verl's own numbers under verl's names only (actor/entropy is
# loss_agg_mode's aggregate, e.g. seq-mean-token-mean, where the histogram and quantiles of the step are the token
# mean's). The TRL hook's rule (TrlCallback.owned_names).
DRIVER_NAMES = (
    M.ENTROPY_MEAN, *M.ENTROPY_QUANTILES, M.ENTROPY_FRAC_LOW, M.ENTROPY_FRAC_HIGH, M.ENTROPY_SAMPLED_NLL,
    M.ENTROPY_NONFINITE_FRAC, M.TOKENS_COUNT,
)  # fmt: skip
DRIVER_ADV_NAMES = (M.ADV_MEAN, M.ADV_STD, M.ADV_MIN, M.ADV_MAX, M.COV_LOGP_ADV, M.COV_PG_DRIVE)


def owned_names(step: int) -> frozenset[str]:
    """The canonical names the driver's per-token pass recorded at ``step``; verl's logged values fill all others.

    Each family as a whole, as :meth:`Watch.recorded_names` says that pass recorded it (its statistics run on the
    Watch's worker: that waits for them): the entropy names when it recorded the step (empty when it was refused:
    the step keeps verl's entropy curve), the advantage names when it also recorded the advantages (an input left
    out alone, e.g. advantages verl's estimator made integers, leaves ``adv/*`` to verl's ``critic/advantages/*``
    while the step keeps the driver's entropy, never verl's aggregate beside the driver's quantiles)."""
    owned, w = _state["owned"], _state["watch"]
    if owned is None or owned[0] != step or w is None:
        return frozenset()
    recorded = w.recorded_names(step)
    families = (frozenset(DRIVER_NAMES), frozenset(DRIVER_ADV_NAMES))
    return frozenset().union(*(f & owned[1] for f in families if f & owned[1] & recorded))


def scalars_from_metrics(
    data: dict[str, Any], skip_canonical: Container[str] = frozenset(), dual_clip: bool = False
) -> dict[str, float]:
    """verl's metrics dict -> ``{name: float}`` under verl's names plus canonical names (evaluation keys as is).

    ``skip_canonical``: canonical names not filled from verl's metrics (the driver's per-token pass recorded them);
    a key verl itself logs is recorded as is. ``dual_clip``: the run's loss logs the dual-clip share as
    ``actor/pg_clipfrac_lower`` (:func:`~entropy_watch.hooks.verl_config.logs_dual_clip`), then also recorded as
    ``clip/dual_frac``; otherwise that key means another number per loss and keeps verl's name only."""
    values: dict[str, float] = {}
    for k, v in data.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if hasattr(v, "item") and not isinstance(v, int | float):
            try:
                v = v.item()  # numpy scalars
            except (TypeError, ValueError):
                continue
        if isinstance(v, int | float) and not isinstance(v, bool):
            values[str(k)] = float(v)
    for canonical, source in detect_canonical(sorted(k for k in values if not is_eval(k))).items():
        if canonical not in skip_canonical:
            values.setdefault(canonical, values[source])
    if dual_clip and DUAL_CLIP_SOURCE in values and M.CLIP_DUAL_FRAC not in skip_canonical:
        values.setdefault(M.CLIP_DUAL_FRAC, values[DUAL_CLIP_SOURCE])
    if ONPOLICY in values and M.CLIP_ONPOLICY not in skip_canonical:
        values.setdefault(M.CLIP_ONPOLICY, onpolicy_from_mean(values[ONPOLICY]))
    for k in [k for k in values if k.startswith(_WORKER_CONTROL)]:  # verl's engine workers: actor/control/* (above)
        values.setdefault(k.removeprefix("actor/"), values[k])
    return values


def install_tracking_tee(tracking_cls: Any = None) -> bool:
    """Wrap ``Tracking.__init__`` (experiment name) and ``Tracking.log`` (every metrics dict) at class level."""
    if tracking_cls is None:
        from verl.utils.tracking import Tracking as tracking_cls
    if getattr(tracking_cls.log, "_entropy_watch", False):
        return True
    orig_init, orig_log = tracking_cls.__init__, tracking_cls.log

    @functools.wraps(orig_init)
    def __init__(self: Any, project_name: Any, experiment_name: Any, *args: Any, **kwargs: Any) -> None:
        orig_init(self, project_name, experiment_name, *args, **kwargs)
        _state["experiment"] = str(experiment_name)
        try:  # Tracking(project_name, experiment_name, default_backend, config): fit passes the resolved config
            _remember_config(kwargs["config"] if "config" in kwargs else args[1] if len(args) > 1 else None)
        except Exception as exc:  # noqa: BLE001 - hooks never crash training
            _guard("tracking_init", exc)

    @functools.wraps(orig_log)
    def log_(self: Any, data: Any, step: Any, *args: Any, **kwargs: Any) -> Any:
        out = orig_log(self, data, step, *args, **kwargs)
        try:
            w = get_watch()
            if not _state["trained"] and _training(data):
                _state["trained"] = True
                _check_resume(w, int(step))
            dual = logs_dual_clip(_state["config"])
            w.log_dict(int(step), scalars_from_metrics(dict(data), owned_names(int(step)), dual))
            _check_driver(int(step), data)
        except Exception as exc:  # noqa: BLE001 - hooks never crash training
            _guard("tracking_log", exc)
        return out

    log_._entropy_watch = True  # type: ignore[attr-defined]
    tracking_cls.__init__, tracking_cls.log = __init__, log_
    return True


# ---- the run's config in run.json: what the alerts' suggested actions quote (hooks/verl_config.py) ------------
def _remember_config(config: Any) -> None:
    """Keep what ``run.json`` stores of the ``config`` verl hands ``Tracking`` (:func:`run_config`): given to the
    Watch when it is made, or merged into its run's ``run.json`` when it already exists."""
    kept = run_config(config)
    if not kept:
        return
    _state["config"] = kept
    if _state["watch"] is not None:
        _state["watch"].update_meta(config=kept)


# ---- worker side: policy losses that add clip-low and clip-high ----------------------------------------------------
def on_policy(old_log_prob: torch.Tensor, log_prob: torch.Tensor, response_mask: torch.Tensor) -> float:
    """1.0 when ``|log_prob - old_log_prob| <= hooks.stats.ONPOLICY_LOG_RATIO_TOL`` on every response token whose
    log-probs are finite (the ratio is 1: nothing can clip), else 0.0 — the rule of ``stats.token_sums``."""
    from entropy_watch.hooks.stats import ONPOLICY_LOG_RATIO_TOL

    with torch.no_grad():
        new, old = log_prob.detach().double(), old_log_prob.detach().double()
        on = response_mask.bool() & torch.isfinite(new) & torch.isfinite(old)
        return float(bool(((new - old).abs() <= ONPOLICY_LOG_RATIO_TOL)[on].all()))


ONPOLICY_MEAN_TOL = 1e-9  # a mean of 1.0s is exactly 1.0; one 0 among n calls takes it to 1 - 1/n at most


def onpolicy_from_mean(mean: float) -> float:
    """``clip/onpolicy`` of a step from verl's mean of :data:`ONPOLICY` over its loss calls (micro-batches, PPO epochs,
    data-parallel ranks): 1.0 only when every call was on-policy, else 0.0 (a step with one off-policy mini-batch can
    clip), as the TRL accumulator's rule (the step is on-policy only if every micro-batch is)."""
    return 1.0 if mean >= 1.0 - ONPOLICY_MEAN_TOL else 0.0


_LOSS_ARGS = ("old_log_prob", "log_prob", "advantages", "response_mask", "loss_agg_mode", "config")
_LOSS_TENSORS = _LOSS_ARGS[:4]


def _loss_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """verl's policy-loss arguments by name, passed by keyword (verl's callers) or by position (recipes, tests).

    Raises TypeError naming what is missing: verl's diffusion loss, for one, passes no ``response_mask``.
    """
    named = dict(zip(_LOSS_ARGS, args, strict=False))  # verl may pass more, or fewer
    named.update((k, v) for k, v in kwargs.items() if k in _LOSS_ARGS)
    missing = [k for k in _LOSS_TENSORS if named.get(k) is None]
    if missing:
        raise TypeError(f"verl called the policy loss without {', '.join(missing)}; passed through unchanged")
    return named


def _with_arg(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, value: Any) -> tuple[tuple, dict]:
    """``args, kwargs`` with the argument ``name`` replaced, wherever verl passed it."""
    if name in kwargs:
        return args, {**kwargs, name: value}
    i = _LOSS_ARGS.index(name)
    return (*args[:i], value, *args[i + 1 :]), kwargs


def _with_metrics(out: Any, extra: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(loss, metrics | extra)`` for a loss returning ``(loss, metrics dict)``; TypeError for another shape (the
    older registry returned ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)``, unpacked by verl itself)."""
    if not _metrics_return(out):
        raise TypeError(f"verl's policy loss returned {_shape(out)}, not (loss, metrics dict); returned unchanged")
    return out[0], {**out[1], **extra}


def _metrics_return(out: Any) -> bool:
    return isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)


def _shape(out: Any) -> str:
    return f"a {len(out)}-tuple" if isinstance(out, tuple) else type(out).__name__


def _unrecorded(name: str | None, out: Any) -> TypeError:
    """The one warning of an ``ew_*`` loss whose base returns no metrics dict: verl 0.4-0.6.0's registry returns
    ``(loss, clipfrac, ppo_kl, clipfrac_lower)``, which verl unpacks itself, so nothing can be added to it. What runs
    is the base loss (``ew_repo_r``: with REPO-R's advantages); what is not recorded is named."""
    lost = "the clip low/high split (clip/low_frac, clip/high_frac) and clip/onpolicy"
    if name == REPO_R_LOSS:
        runs, lost = "REPO-R's advantages are applied", f"its control/* (zeta, entropy), {lost}"
    else:
        runs = f"loss_mode={name or 'ew_*'} runs {name.removeprefix('ew_') if name else 'its base loss'} unchanged"
    return TypeError(
        f"verl's policy loss returned {_shape(out)}, not (loss, metrics dict) (verl < 0.6.1): {runs}, but {lost} "
        "are not recorded; verl's own actor/pg_clipfrac still is (verl >= 0.6.1 records them all)"
    )


def wrap_policy_loss(base: Any, name: str | None = None) -> Any:
    """A verl policy-loss function that returns ``base``'s loss and metrics plus the low/high clip fractions and
    whether the call's ratio is 1 (:data:`ONPOLICY`); ``name`` is its ``loss_mode`` (named in warnings).

    The split is computed by the clip rule of the loss ``ew_<mode>`` wraps (``hooks/verl_split.py``; ``ew_repo_r``
    and a loss wrapped without a name: vanilla's); a mode without one (cispo, sapo, gpg, a mode it does not know)
    adds no split and warns once. verl's arguments reach ``base`` untouched, whichever verl calls it (the keyword was
    ``rollout_log_probs`` before ``rollout_is_weights``); a call or a return the split cannot read passes through
    unchanged with one warning (a return without a metrics dict: :func:`_unrecorded`, before any statistic).
    """
    mode = "vanilla" if name in (None, REPO_R_LOSS) else str(name).removeprefix("ew_")

    @functools.wraps(base)
    def loss_fn(*args: Any, **kwargs: Any) -> Any:
        from entropy_watch.hooks.verl_split import clip_split, no_split_warning

        out = base(*args, **kwargs)
        try:
            if not _metrics_return(out):
                raise _unrecorded(name, out)
            x = _loss_inputs(args, kwargs)
            extra = {ONPOLICY: on_policy(x["old_log_prob"], x["log_prob"], x["response_mask"])}
            split = clip_split(mode, *(x[k] for k in _LOSS_TENSORS), x.get("config"))
            if split is not None:
                extra.update({CLIPFRAC_LOW: split[0], CLIPFRAC_HIGH: split[1]})
            elif f"no_split:{name}" not in _state["warned"]:
                _state["warned"].add(f"no_split:{name}")
                log.warning(no_split_warning(str(name), mode, out[1]))
            return _with_metrics(out, extra)
        except Exception as exc:  # noqa: BLE001 - hooks never crash training
            _guard(f"policy_loss[{name}]" if name else "policy_loss", exc)  # one warning per loss_mode
            return out

    return loss_fn


def repo_controller() -> EntropyController:
    """This worker's REPO-R controller, created on first use from the environment.

    ``$ENTROPY_WATCH_TARGET_ENTROPY`` (nats; default: H_ref, the median of the first 5 loss calls) and
    ``$ENTROPY_WATCH_REPO_ZETA_MAX`` (default 0.05, the paper's bound for LLM vocabularies).
    """
    if _state["repo"] is None:
        target = os.environ.get("ENTROPY_WATCH_TARGET_ENTROPY")
        zeta_max = float(os.environ.get("ENTROPY_WATCH_REPO_ZETA_MAX", "0.05"))
        cfg = ControlConfig("repo-r", target=float(target) if target else None, centering="raw", zeta_max=zeta_max)
        _state["repo"] = EntropyController(cfg)
    return _state["repo"]


def repo_r_policy_loss(base: Any, controller: EntropyController | None = None) -> Any:
    """verl policy loss ``ew_repo_r``: REPO-R (Petrenko et al. 2026) on the advantages, then ``base`` unchanged.

    verl's loss function receives log-probs but no entropy, so L is the raw log-prob (``centering="raw"``, SkyRL PR
    #1896's logits-free form) and the ζ controller reads the sampled-token surprisal ``mean(-log pi(a))`` over the
    response tokens as its entropy estimate (target and H_ref in the same unit). ζ is updated after every call (each
    micro-batch of each data-parallel worker; one controller per worker process) and logged as ``control/zeta``,
    ``control/entropy`` and ``control/target_entropy`` in the loss metrics, which verl averages per step (and its
    engine-worker path renames ``actor/control/*``; the tee records the ``control/*`` names too).
    """

    @functools.wraps(base)
    def loss_fn(*args: Any, **kwargs: Any) -> Any:
        try:
            x = _loss_inputs(args, kwargs)
        except TypeError as exc:
            _guard("repo_r", TypeError(f"{exc}, without REPO-R"))
            return base(*args, **kwargs)
        ctl = controller or repo_controller()
        zeta = ctl.zeta
        log_prob, mask = x["log_prob"].detach(), x["response_mask"]
        with torch.no_grad():
            adv = ctl.advantages(x["advantages"].detach(), log_prob, None)  # (B, L) like verl's advantages
        args, kwargs = _with_arg(args, kwargs, "advantages", adv)
        out = base(*args, **kwargs)
        with torch.no_grad():  # tensors, in float32 at least (in bf16 1,001 tokens counted 1,000): the one read
            m = mask.to(torch.promote_types(log_prob.dtype, torch.float32))  # back is end_step's, not two floats
            ctl.observe(-(log_prob.to(m.dtype) * m).sum(), m.sum())
        state = ctl.end_step()
        if not _metrics_return(out):  # verl < 0.6.1: nowhere to put control/*; ew_repo_r's registration warns once
            return out
        return _with_metrics(out, {**state, M.CONTROL_ZETA: zeta})  # the zeta applied, not the next one

    return loss_fn


# ---- REPO-R's controller in verl's checkpoints ---------------------------------------------------------------------
CONTROL_STATE = "entropy_watch_control_rank_{rank}.json"  # in verl's checkpoint folder (global_step_N/actor)


def install_checkpoint_state(managers: list[Any] | None = None) -> list[str]:
    """Keep each worker's REPO-R controller (ζ, H_ref or the entropies towards it) in verl's checkpoints, so
    ``trainer.resume_mode=auto`` continues it: without it a resumed ``ew_repo_r`` starts from ζ = 0 and takes H_ref
    from its first loss calls after the resume — the level entropy had fallen to, which it would then hold.

    Wraps ``save_checkpoint(local_path, ...)`` and ``load_checkpoint(local_path, ...)`` of verl's checkpoint managers
    (``FSDPCheckpointManager``, ``MegatronCheckpointManager``, ``DeepSpeedCheckpointManager`` where verl has them;
    ``managers`` in tests), which every worker calls for
    its own rank: after a save, this rank's controller is written as :data:`CONTROL_STATE` (JSON) beside verl's
    shards, and dropped with them when verl rotates checkpoints; after a load it is read back (rank 0's file when
    the world size changed). A worker that made no controller writes nothing. Returns the classes wrapped."""
    if managers is None:
        managers = []
        for module, name in (
            ("verl.utils.checkpoint.fsdp_checkpoint_manager", "FSDPCheckpointManager"),
            ("verl.utils.checkpoint.megatron_checkpoint_manager", "MegatronCheckpointManager"),
            ("verl.utils.checkpoint.deepspeed_checkpoint_manager", "DeepSpeedCheckpointManager"),  # newer verl
        ):
            try:
                managers.append(getattr(__import__(module, fromlist=[name]), name))
            except Exception:  # noqa: BLE001, S112 - Megatron's manager imports megatron.core, often absent
                continue
        if not managers:
            raise ImportError("no verl checkpoint manager found")
    for cls in managers:
        if getattr(cls.save_checkpoint, "_ew_wrapped", False):
            continue
        cls.save_checkpoint = _after(cls.save_checkpoint, _save_control)
        cls.load_checkpoint = _after(cls.load_checkpoint, _load_control)
    return [cls.__name__ for cls in managers]


def _after(method: Any, then: Any) -> Any:
    @functools.wraps(method)
    def wrapped(self: Any, local_path: Any = None, *args: Any, **kwargs: Any) -> Any:
        out = method(self, local_path, *args, **kwargs)
        try:
            if local_path is not None:
                then(str(local_path), int(getattr(self, "rank", 0) or 0))
        except Exception as exc:  # noqa: BLE001 - hooks never crash training (nor its checkpoints)
            _guard("checkpoint", exc)
        return out

    wrapped._ew_wrapped = True  # type: ignore[attr-defined]
    return wrapped


def _save_control(local_path: str, rank: int) -> None:
    ctl = _state["repo"]
    if ctl is None or not os.path.isdir(local_path):
        return
    from pathlib import Path

    from entropy_watch.store.atomic import write_json_atomic

    write_json_atomic(Path(local_path) / CONTROL_STATE.format(rank=rank), ctl.state_dict())


def _load_control(local_path: str, rank: int) -> None:
    import json

    for file in (CONTROL_STATE.format(rank=rank), CONTROL_STATE.format(rank=0)):
        path = os.path.join(local_path, file)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            repo_controller().load_state_dict(state)
            log.info("entropy_watch: REPO-R controller restored from %s (zeta %.4g, H_ref %s)", path,
                     state.get("zeta", float("nan")), state.get("h_ref"))  # fmt: skip
            return


def register_policy_losses(core_algos: Any = None) -> list[str]:
    """Register ``ew_<mode>`` for each registered verl policy loss, and ``ew_repo_r``; returns the new names.

    A registry without ``"vanilla"`` (verl < 0.6: the actor computes the vanilla loss itself, with
    ``core_algos.compute_policy_loss``, and every loss returns 4 values, which carry no metric of ours) gets
    ``ew_vanilla`` and ``ew_repo_r`` as refusals (:func:`_refusal`): asked for, they stop the update with one line
    saying why and what to run instead, where verl would say "Unsupported loss mode"."""
    if core_algos is None:
        from verl.trainer.ppo import core_algos
    registry = getattr(core_algos, "POLICY_LOSS_REGISTRY", None)
    if registry is None:  # verl <= 0.4.0: the actor calls compute_policy_loss itself; config has no policy_loss
        raise AttributeError(
            "this verl has no policy-loss registry (core_algos.POLICY_LOSS_REGISTRY, verl >= 0.4.1): "
            "no ew_* loss_mode, so the clip low/high split is not recorded (verl's pg_clipfrac is)"
        )
    names = []
    for mode, fn in list(registry.items()):
        if mode.startswith("ew_"):
            continue
        core_algos.register_policy_loss(f"ew_{mode}")(wrap_policy_loss(fn, f"ew_{mode}"))
        names.append(f"ew_{mode}")
    if "vanilla" in registry:
        repo_r = wrap_policy_loss(repo_r_policy_loss(registry["vanilla"]), REPO_R_LOSS)
        core_algos.register_policy_loss(REPO_R_LOSS)(repo_r)
        names.append(REPO_R_LOSS)
    else:
        for name, why in _REFUSED.items():
            core_algos.register_policy_loss(name)(_refusal(name, why))
    return names


_REFUSED = {
    "ew_vanilla": "its policy losses return 4 values, which carry no clip split, and its vanilla loss is not in the "
    "registry (verl < 0.6). Use loss_mode=vanilla: verl's scalars and the per-token entropy are still recorded; the "
    "clip low/high split needs verl >= 0.6.1",
    REPO_R_LOSS: "REPO-R wraps the registry's 'vanilla' loss, which verl < 0.6 does not register (its actor computes "
    "the vanilla loss itself). Use verl >= 0.6.1, or entropy-watch train --algo repo-r",
}


def _refusal(name: str, why: str) -> Any:
    """A registered loss that refuses ``loss_mode=name`` with one line (a ValueError, as verl's own "Unsupported loss
    mode" is): the setting cannot be honoured by this verl, and training it as something else would be worse."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"entropy_watch: loss_mode={name} cannot run on this verl: {why}")

    refuse.__name__ = refuse.__qualname__ = f"refuse_{name}"
    return refuse


# ---- driver side: per-token entropy (pi_old) and advantages --------------------------------------------------------
OLD_LOG_PROB_SEAM = "RayPPOTrainer._compute_old_log_prob"
FIT_SEAM = "ray_trainer.agg_loss in RayPPOTrainer.fit"


def wrap_driver(trainer_cls: Any = None, ray_trainer_module: Any = None) -> str:
    """Wrap the driver's old-log-prob pass and the module global ``compute_advantage``; returns the seam wrapped.

    The pass is found by what the trainer has, whatever verl's version (:func:`_wrap_old_log_prob` where
    ``RayPPOTrainer._compute_old_log_prob`` exists, verl >= 0.7; else :func:`_wrap_fit_entropy`, verl 0.4-0.6, whose
    ``fit`` computes the old log-probs inline and hands their entropy to the module's ``agg_loss``). Neither: an
    AttributeError saying what is not recorded (``install`` logs it as its one warning)."""
    if ray_trainer_module is None:
        from verl.trainer.ppo import ray_trainer as ray_trainer_module
    if trainer_cls is None:
        trainer_cls = ray_trainer_module.RayPPOTrainer
    if hasattr(trainer_cls, "_compute_old_log_prob"):
        seam, wrap = OLD_LOG_PROB_SEAM, _wrap_old_log_prob
    elif callable(getattr(ray_trainer_module, "agg_loss", None)) and callable(getattr(trainer_cls, "fit", None)):
        seam, wrap = FIT_SEAM, _wrap_fit_entropy
    else:
        raise AttributeError(
            f"{getattr(trainer_cls, '__name__', trainer_cls)} has neither _compute_old_log_prob (verl >= 0.7) nor a "
            "fit beside ray_trainer.agg_loss (verl 0.4-0.6): no per-token entropy, histogram or advantage statistics "
            "are recorded, only verl's logged scalars"
        )
    if not wrap(trainer_cls, ray_trainer_module):
        return seam  # wrapped already
    orig_adv = ray_trainer_module.compute_advantage

    @functools.wraps(orig_adv)
    def compute_advantage(data: Any, *args: Any, **kwargs: Any) -> Any:
        out = orig_adv(data, *args, **kwargs)
        try:
            _state["advantage_calls"] += 1
            _log_step(out)
        except Exception as exc:  # noqa: BLE001
            _guard("compute_advantage", exc)
        return out

    ray_trainer_module.compute_advantage = compute_advantage
    _state.update(driver=True, seam=seam)
    return seam


def _wrap_old_log_prob(trainer_cls: Any, module: Any) -> bool:
    """verl >= 0.7: ``RayPPOTrainer._compute_old_log_prob(batch)`` returns the pass's ``entropys`` and
    ``old_log_probs`` (``(DataProto, mfu)``; a DataProto alone in 0.7's first form). False when wrapped already."""
    orig_old = trainer_cls._compute_old_log_prob
    if getattr(orig_old, "_entropy_watch", False):
        return False

    @functools.wraps(orig_old)
    def _compute_old_log_prob(self: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        out = orig_old(self, batch, *args, **kwargs)
        try:
            proto = out[0] if isinstance(out, tuple) else out  # 0.9: (DataProto, mfu); 0.7: DataProto
            b = proto.batch
            if "entropys" in b.keys():
                _state["pending"] = {
                    "step": int(getattr(self, "global_steps", 0)),
                    "entropy": b["entropys"].detach(),
                    "logp": b["old_log_probs"].detach() if "old_log_probs" in b.keys() else None,
                    "mask": batch.batch["response_mask"],
                    "token_ids": batch.batch["responses"] if "responses" in batch.batch.keys() else None,
                }
        except Exception as exc:  # noqa: BLE001
            _guard("old_log_prob", exc)
        return out

    _compute_old_log_prob._entropy_watch = True  # type: ignore[attr-defined]
    trainer_cls._compute_old_log_prob = _compute_old_log_prob
    return True


def _wrap_fit_entropy(trainer_cls: Any, module: Any) -> bool:
    """verl 0.4-0.6: ``RayPPOTrainer.fit`` runs ``old_log_prob = self.actor_rollout_wg.compute_log_prob(batch)``
    inline, passes ``old_log_prob.batch["entropys"]`` to the module's ``agg_loss(loss_mat=entropys,
    loss_mask=response_mask, loss_agg_mode=...)`` for ``actor/entropy`` (its only ``agg_loss`` call) and drops
    them before ``batch.union(old_log_prob)``. The ``fit`` wrap remembers the trainer (its ``global_steps`` is the
    step); the ``agg_loss`` wrap keeps the entropy and mask of a call made while it trains, and ``compute_advantage``
    then finds the old log-probs and responses in the batch (:func:`_log_step`). False when wrapped already."""
    orig_fit, orig_agg = trainer_cls.fit, module.agg_loss
    if getattr(orig_fit, "_entropy_watch", False):
        return False

    @functools.wraps(orig_fit)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        _state["trainer"] = self
        return orig_fit(self, *args, **kwargs)

    @functools.wraps(orig_agg)
    def agg_loss(*args: Any, **kwargs: Any) -> Any:
        out = orig_agg(*args, **kwargs)
        try:
            trainer = _state["trainer"]
            ent = kwargs.get("loss_mat", args[0] if args else None)
            mask = kwargs.get("loss_mask", args[1] if len(args) > 1 else None)
            if trainer is not None and isinstance(ent, torch.Tensor) and getattr(mask, "shape", None) == ent.shape:
                step = int(getattr(trainer, "global_steps", 0))
                _state["pending"] = {"step": step, "entropy": ent.detach(), "logp": None, "mask": mask,
                                     "token_ids": None}  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            _guard("agg_loss", exc)
        return out

    fit._entropy_watch = True  # type: ignore[attr-defined]
    trainer_cls.fit, module.agg_loss = fit, agg_loss
    return True


def _training(data: Any) -> bool:
    """Whether a metrics dict is a training step's (validation logs ``val-core/*``, ``val-aux/*``)."""
    return any(str(k).startswith("actor/") for k in data)


def _check_resume(w: Any, step: int) -> None:
    """At the first training step this driver logs: a run the store already holds, past this step, was resumed from
    a checkpoint (``trainer.resume_mode``: verl loads ``global_step_N``, validates at step N, trains from N + 1), so a
    ``resume`` event goes at this step, as the HF hook and the reference trainer record theirs: the analysis keeps the
    run's baselines, and what the earlier process logged from this step on, a trajectory the resume replaced, is left
    out of every read. A training from step 1 under that name (no checkpoint) is warned about instead."""
    earlier = getattr(w, "earlier_last_step", None)
    if earlier is None or step > earlier:
        return
    if step > 1:
        w.event(step, "resume", checkpoint_step=step - 1)
    else:
        warn_second_training(
            w, step, "set trainer.resume_mode=auto", "set $ENTROPY_WATCH_RUN or another experiment_name"
        )


def _check_driver(step: int, data: Any) -> None:
    """Warn once when a training step is logged but the driver wraps never ran: a trainer they do not cover."""
    if not _state["driver"] or _state["advantage_calls"] or "no_driver" in _state["warned"]:
        return
    if _training(data):
        _state["warned"].add("no_driver")
        log.warning(
            "entropy_watch: verl logged training step %d, but %s and ray_trainer.compute_advantage never ran in this "
            "process: no per-token entropy is recorded, only the logged scalars (the driver wraps cover "
            "RayPPOTrainer, which verl >= 0.9 runs with trainer.use_v1=false)",
            step,
            _state["seam"] or OLD_LOG_PROB_SEAM,
        )


_NO_ENTROPY = (
    f"compute_advantage ran without {OLD_LOG_PROB_SEAM} before it. Either rollout-correction bypass mode skips that "
    "pass (actor.calculate_entropy=True still logs the update's actor/entropy_loss), or verl's V1 trainer (verl >= "
    "0.9's default) does its own, unwrapped: trainer.use_v1=false runs RayPPOTrainer. The logged scalars are still "
    "recorded",
    "compute_advantage ran, but no old-log-prob entropy reached ray_trainer.agg_loss in RayPPOTrainer.fit before it "
    "(verl 0.4-0.6). Either rollout-correction bypass mode skips that pass, or a trainer with its own fit (a recipe's "
    "subclass) runs. The logged scalars are still recorded",
)  # [modern seam, verl 0.4-0.6's]


def _log_step(data: Any) -> None:
    pending, _state["pending"] = _state["pending"], None
    if pending is None:
        if "no_entropy" not in _state["warned"]:
            _state["warned"].add("no_entropy")
            log.warning("entropy_watch: no per-token entropy this step: %s", _NO_ENTROPY[_state["seam"] == FIT_SEAM])
        return
    b = data.batch
    for key, name in (("logp", "old_log_probs"), ("token_ids", "responses")):  # verl 0.4-0.6: from the batch here
        if pending[key] is None and name in b.keys() and b[name].shape == pending["entropy"].shape:
            pending[key] = b[name].detach()
    adv = b["advantages"] if "advantages" in b.keys() else None
    if adv is not None and adv.shape != pending["entropy"].shape:
        adv = None  # a re-ordered or filtered batch: entropy without advantages rather than a wrong pairing
    w = get_watch()
    w.update_pass = False  # pi_old's log-probs: no clip/onpolicy from this pass (the ew_* losses report the update's)
    w.log_tokens(
        pending["step"],
        entropy=pending["entropy"],
        mask=pending["mask"],
        logp=pending["logp"],
        advantages=adv,
        token_ids=pending["token_ids"],
    )
    names = frozenset(DRIVER_NAMES + (DRIVER_ADV_NAMES if adv is not None else ()))
    _state["owned"] = (pending["step"], names)  # what it records of them: owned_names


# ---- all of it ----------------------------------------------------------------------------------------------------
def install(driver: bool = True) -> dict[str, str]:
    """Install every part verl supports here; returns ``{part: "ok" | reason}``. Safe to call twice."""
    report: dict[str, str] = {}
    parts = [
        ("tracking_tee", install_tracking_tee),
        ("policy_losses", register_policy_losses),
        ("checkpoint_state", install_checkpoint_state),
    ]
    if driver:
        parts.append(("driver", wrap_driver))
    for name, fn in parts:
        try:
            fn()
            report[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - a missing verl symbol must not stop verl from starting
            report[name] = f"{type(exc).__name__}: {exc}"
            log.warning("entropy_watch: verl %s not installed (%s)", name, report[name])
    return report
