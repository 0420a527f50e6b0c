"""OpenRLHF integration: wrap ``PolicyLoss.forward`` (clip low/high, advantages) and ``Actor.forward`` (entropy).

OpenRLHF logs only a combined ``ppo_clip_ratio`` and, with ``--actor.entropy_coef`` set, ``entropy_loss``
(INTEGRATIONS §3). The actor's training code runs in Ray worker processes (``PolicyModelActor``), so the wraps are
installed there by Ray's worker setup hook; start Ray yourself before OpenRLHF's ``train(args)`` (it then skips its
own ``ray.init``)::

    ray.init(runtime_env={
        "worker_process_setup_hook": "entropy_watch.hooks.openrlhf.install",
        "env_vars": {"ENTROPY_WATCH_DIR": "/shared/ew_runs", "ENTROPY_WATCH_RUN": "qwen-grpo-s0"},
    })

Per ``PolicyLoss`` call (a micro-batch) the wrap records, with the loss's own ``clip_eps_low``/``clip_eps_high``:
clip-low/high/region fractions, advantage statistics, the ratio and KL to the old policy and — when ``Actor.forward``
ran with ``return_entropy=True`` just before (``--actor.entropy_coef`` set, 0 = log only) — the per-token entropy
histogram and covariance terms (read from ``output.entropy``, an attribute OpenRLHF sets on the model output; a
``return_entropy=True`` call without it warns once; so does a ``PolicyLoss`` call with no entropy, which OpenRLHF asks
``Actor.forward`` for only under its entropy flag: :data:`NO_ENTROPY_FLAGS`). Each data-parallel rank writes its own
``rank=`` folder (no collective inside the loss). Checked against OpenRLHF 0.8.0 to 0.11.2: the seams are the same,
the flags flat before 0.10.2 (:data:`FLAT_ARGS`). ``step`` is the worker's count of policy-loss calls unless
:func:`set_step_fn` gives OpenRLHF's global step.

With :func:`set_step_fn`, the micro-batches of one optimizer step (every ``PolicyLoss`` call while ``fn()`` returns
the same step) are merged by a :class:`~entropy_watch.hooks.accumulate.StepAccumulator`, as the TRL adapter merges
its loss forwards: the step's histogram, token count and statistics are those of all its micro-batches, recorded
once when the step changes, at ``Watch.flush()`` and when the run closes. Recorded one by one, the step kept the last
micro-batch's ``entropy/mean`` (``log_tokens`` warned "got step N twice") beside a histogram of them all.

The run's settings go to ``run.json``'s ``config`` (:func:`run_args`: the flags the alerts' suggested actions name,
:data:`ADVICE_ARGS`, read from the ``args`` OpenRLHF's ``ActorPPOTrainer`` holds when it is built, or given with
:func:`remember_args`), so advice quotes their current values. Nothing else of ``args`` is stored: the W&B API key
(``--logger.wandb.key``; ``--use_wandb KEY`` before 0.11) is kept as ``wandb: true``/``false`` only, and what is kept
passes :mod:`entropy_watch.credentials` as every ``run.json`` field does.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from entropy_watch import metrics as M
from entropy_watch.aliases import OPENRLHF_FLAT_FLAGS

log = logging.getLogger("entropy_watch")
ENTROPY_DEFINITION = "full-vocabulary, policy during update (OpenRLHF Actor.forward), token mean over action tokens"

_state: dict[str, Any] = {
    "watch": None, "entropy": None, "calls": 0, "step_fn": None, "steps": None, "config": None, "warned": set(),
}  # fmt: skip
ADVICE_ARGS: tuple[str, ...] = (
    "actor.eps_clip", "actor.eps_clip_low_high", "actor.dual_clip", "actor.entropy_coef", "actor.optim",
    "actor.adam.lr", "actor.muon.lr", "actor.max_norm", "actor.policy_loss_type", "actor.loss_agg_mode",
    "algo.advantage.estimator", "algo.kl.init_coef", "algo.kl.use_loss", "algo.dynamic_filtering_enable",
    "algo.dynamic_filtering_range", "rollout.n_samples_per_prompt", "rollout.temperature",
)  # fmt: skip
"""The OpenRLHF 0.11.2 ``train_ppo_ray`` flags kept in ``run.json`` (the ones analysis/advice.py names), each under
its dotted path (``config["actor"]["adam"]["lr"]``; from the flat flag before 0.10.2: :data:`FLAT_ARGS`)."""


class _Steps:
    """The micro-batches of the current optimizer step of ``watch`` (the :func:`set_step_fn` path), recorded as one
    step when the step changes, at ``watch.flush()`` and before the run closes (``watch``'s flush is wrapped on the
    instance, the recorder's ``before_close`` chained)."""

    def __init__(self, watch: Any) -> None:
        from entropy_watch.hooks.accumulate import StepAccumulator

        self.acc = StepAccumulator(watch)
        self.step: int | None = None
        flush, rec = watch.flush, getattr(watch, "_recorder", None)

        def watch_flush() -> None:
            self.flush_guarded()
            flush()

        watch.flush = watch_flush
        if rec is not None:
            prev = rec.before_close

            def before_close() -> None:  # also at exit and on SIGTERM, through the recorder
                self.flush_guarded()
                if prev is not None:
                    prev()

            rec.before_close = before_close

    def add(self, step: int, **kwargs: Any) -> None:
        if self.acc.pending and step != self.step:
            self.flush()
        self.step = step
        self.acc.add(step=step, **kwargs)

    def flush(self) -> None:
        if self.acc.pending and self.step is not None:
            self.acc.flush(self.step)

    def flush_guarded(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - hooks never crash training
            from entropy_watch.hooks.watch import report_failure

            report_failure(self.acc.watch, "openrlhf.flush", exc)


def get_watch() -> Any:
    """This worker's :class:`Watch` (``$ENTROPY_WATCH_RUN``, ``$ENTROPY_WATCH_DIR``), one ``rank=`` folder per rank."""
    if _state["watch"] is None:
        from entropy_watch.hooks.watch import Watch

        _state["watch"] = Watch(
            os.environ.get("ENTROPY_WATCH_RUN", "openrlhf-run"),
            strict=os.environ.get("ENTROPY_WATCH_STRICT", "") == "1",
            framework="openrlhf",
            entropy_definition=ENTROPY_DEFINITION,
            reduce=False,
            config=_state["config"],
        )
    return _state["watch"]


def run_args(args: Any) -> dict[str, Any]:
    """What ``run.json`` keeps of OpenRLHF's ``args`` (the nested namespace ``hierarchize`` makes, a flat
    ``argparse.Namespace`` with dotted names, or a dict): :data:`ADVICE_ARGS` that hold a number, bool, string or a
    list of numbers, nested by their dotted path, and ``wandb``: whether W&B logging is on — never its key."""
    out: dict[str, Any] = {}
    for path in ADVICE_ARGS:
        value = _arg(args, path)
        if isinstance(value, tuple | list) and all(isinstance(v, int | float) for v in value):
            value = list(value)
        elif not isinstance(value, bool | int | float | str):
            continue
        at = out
        *parents, leaf = path.split(".")
        for key in parents:
            at = at.setdefault(key, {})
        at[leaf] = value
    out["wandb"] = bool(_arg(args, "logger.wandb.key") or _arg(args, "use_wandb"))
    return out


FLAT_ARGS: dict[str, str] = OPENRLHF_FLAT_FLAGS
"""OpenRLHF < 0.10.2's flat ``train_ppo_ray`` flags (the core's one table) of the
:data:`ADVICE_ARGS` that had one, read where the dotted flag is absent: stored under the dotted path, so advice quotes
what the run set."""


def _arg(args: Any, path: str) -> Any:
    """``args.a.b.c`` (nested), ``getattr(args, "a.b.c")`` (before ``hierarchize``) or ``args["a"]["b"]["c"]``; else
    the flat flag OpenRLHF < 0.10.2 had for it (:data:`FLAT_ARGS`)."""
    node = args.get(path) if isinstance(args, Mapping) else getattr(args, path, None)
    if node is not None:
        return node
    node = args
    for key in path.split("."):
        node = node.get(key) if isinstance(node, Mapping) else getattr(node, key, None)
        if node is None:
            break
    if node is None and path in FLAT_ARGS:
        flat = FLAT_ARGS[path]
        node = args.get(flat) if isinstance(args, Mapping) else getattr(args, flat, None)
    return node


def remember_args(args: Any) -> None:
    """Store :func:`run_args` of ``args`` in the run's ``run.json`` (given to the worker's Watch when it is made, or
    merged into its ``run.json`` when it exists). Guarded: a failure is reported, never raised."""
    if args is None:
        return
    try:
        _state["config"] = run_args(args)
        if _state["watch"] is not None:
            _state["watch"].update_meta(config=_state["config"])
    except Exception as exc:  # noqa: BLE001 - hooks never crash training
        _guard("args", exc)


def set_watch(watch: Any) -> None:
    """Record into ``watch`` (tests); ``None`` resets the worker state (a step still being merged is recorded when the
    previous watch flushes or closes)."""
    _state.update(watch=watch, entropy=None, calls=0, steps=None, config=None if watch is None else _state["config"],
                  warned=set())  # fmt: skip


def _steps(watch: Any) -> _Steps:
    """The micro-batch merger of ``watch`` (made once per watch)."""
    steps = _state["steps"]
    if steps is None or steps.acc.watch is not watch:
        steps = _state["steps"] = _Steps(watch)
    return steps


def set_step_fn(fn: Callable[[], int] | None) -> None:
    """Use ``fn()`` as the step of each record (e.g. ``lambda: trainer.global_step``)."""
    _state["step_fn"] = fn


def _guard(where: str, exc: BaseException) -> None:
    try:
        from entropy_watch.hooks.watch import report_failure  # lazily: this module imports without the store
    except Exception as why:  # noqa: BLE001 - install() warned already (a caller's remember_args gets here too)
        log.debug("entropy_watch: openrlhf.%s failed (%s); the store does not import (%s)", where, exc, why)
        return
    report_failure(_state["watch"], f"openrlhf.{where}", exc)


def _eps(loss: Any) -> tuple[float, float]:
    """``clip_eps_low``/``clip_eps_high`` (OpenRLHF >= 0.8.2) or the single ``clip_eps`` (0.8.0-0.8.1)."""
    if hasattr(loss, "clip_eps_low"):
        return float(loss.clip_eps_low), float(getattr(loss, "clip_eps_high", loss.clip_eps_low))
    eps = float(getattr(loss, "clip_eps", 0.2))
    return eps, eps


def _is_corrected(loss: Any) -> bool:
    """Whether ``loss`` corrects for the train/rollout mismatch, which makes GSPO's ratio ``log_probs -
    rollout_log_probs``: ``is_correction_level`` other than "off" (OpenRLHF 0.11, ``--algo.advantage.
    is_correction_level``), ``enable_vllm_is_correction`` before it."""
    if getattr(loss, "enable_vllm_is_correction", False):
        return True
    return getattr(loss, "is_correction_level", "off") not in ("off", None)


def _clip_log_ratio(
    loss: Any,
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    action_mask: torch.Tensor | None,
    rollout_log_probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """The log-ratio ``PolicyLoss`` clips, per token ``(B, A)``, detached.

    ``policy_loss_type="gspo"`` (OpenRLHF's ``--policy_loss_type``; absent = "ppo") clips one sequence-level ratio:
    the masked mean of ``log_probs - old_log_probs`` over each row (``- rollout_log_probs`` with the train/rollout IS
    correction on: :func:`_is_corrected`), broadcast over its tokens. ``"ppo"`` clips the token ratio, its log clamped
    to ±20 in newer OpenRLHF.
    """
    log_probs, old_log_probs = log_probs.detach(), old_log_probs.detach()
    if getattr(loss, "policy_loss_type", "ppo") == "gspo":
        ref = old_log_probs
        if _is_corrected(loss) and rollout_log_probs is not None:
            ref = rollout_log_probs.detach()
        m = torch.ones_like(log_probs) if action_mask is None else action_mask.to(log_probs.dtype)
        seq = ((log_probs - ref) * m).sum(-1) / m.sum(-1).clamp(min=1)
        return seq.unsqueeze(-1).expand_as(log_probs)
    return torch.clamp(log_probs - old_log_probs, min=-20.0, max=20.0)


def record_policy_loss(
    loss: Any,
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    action_mask: torch.Tensor | None,
    rollout_log_probs: torch.Tensor | None = None,
) -> dict[str, float]:
    """Record one micro-batch. Shapes ``(B, A)`` (A = action tokens); returns the recorded scalars
    (``{}`` for the entropy path when ``Watch`` computes statistics in the background).

    The clip statistics use the ratio ``loss`` clips (:func:`_clip_log_ratio`): under GSPO the sequence-level one,
    so clip-low + clip-high is OpenRLHF's ``ppo_clip_ratio`` there too, and the recorded ratio/KL to the old policy
    are the sequence-level ones."""
    w = get_watch()
    eps_low, eps_high = _eps(loss)
    log_ratio = _clip_log_ratio(loss, log_probs, old_log_probs, action_mask, rollout_log_probs)
    if getattr(loss, "policy_loss_type", "ppo") == "gspo":
        old_log_probs = log_probs.detach() - log_ratio  # the old log-prob whose token ratio is GSPO's sequence ratio
    entropy, _state["entropy"] = _state["entropy"], None
    _state["calls"] += 1
    step = int(_state["step_fn"]()) if _state["step_fn"] is not None else _state["calls"]
    if entropy is not None and entropy.shape[-1] >= log_probs.shape[-1]:
        entropy = entropy[..., -log_probs.shape[-1] :]  # Actor.forward gives (B, T-1); the loss sees the last A
    if entropy is not None and entropy.shape == log_probs.shape:
        if _state["step_fn"] is not None:  # one optimizer step's micro-batches, merged (module docstring)
            _steps(w).add(step, entropy=entropy, mask=action_mask, logp=log_probs, old_logp=old_log_probs,
                          advantages=advantages, eps_low=eps_low, eps_high=eps_high)  # fmt: skip
            return {}
        return w.log_tokens(step, entropy=entropy, mask=action_mask, logp=log_probs, old_logp=old_log_probs,
                            advantages=advantages, eps_low=eps_low, eps_high=eps_high)  # fmt: skip
    _warn_no_entropy(entropy, log_probs)
    out = _clip_and_advantages(w, step, log_probs, old_log_probs, advantages, action_mask, eps_low, eps_high)
    w.log_dict(step, out)
    return out


NO_ENTROPY_FLAGS = (
    "--actor.entropy_coef 0 (OpenRLHF >= 0.10.2) or --entropy_loss_coef 0 (0.8.3-0.10.1) asks for it without an "
    "entropy bonus; before 0.8.3 only a positive --entropy_loss_coef does (and adds the bonus)"
)


def _warn_no_entropy(entropy: torch.Tensor | None, log_probs: torch.Tensor) -> None:
    """Warn once when a ``PolicyLoss`` call records no per-token entropy: OpenRLHF's ``training_step`` calls
    ``Actor.forward(return_entropy=...)`` only when the entropy flag is set (:data:`NO_ENTROPY_FLAGS`), and an entropy
    of another shape cannot be paired with the loss's tokens. Silently, the run would hold clip statistics and no
    entropy curve at all."""
    if "no_entropy" in _state["warned"]:
        return
    _state["warned"].add("no_entropy")
    why = (
        f"Actor.forward handed it none (OpenRLHF asks for it only under the entropy flag: {NO_ENTROPY_FLAGS})"
        if entropy is None
        else f"Actor.forward's entropy {tuple(entropy.shape)} does not match the loss's log-probs "
        f"{tuple(log_probs.shape)}"
    )
    log.warning(
        "entropy_watch: OpenRLHF's PolicyLoss ran without a per-token entropy, so entropy/*, its histogram and cov/* "
        "are not recorded (clip, ratio and advantage statistics are): %s",
        why,
    )


# the statistics of a loss call without entropy: those of its log-probs and advantages alone
NO_ENTROPY = (M.CLIP_ONPOLICY, M.CLIP_LOW_FRAC, M.CLIP_HIGH_FRAC, M.CLIP_REGION_FRAC, M.ADV_MEAN, M.ADV_STD,
              M.ADV_MIN, M.ADV_MAX, M.RATIO_LOG_MEAN, M.RATIO_MAX, M.KL_OLD)  # fmt: skip


def _clip_and_advantages(
    w: Any,
    step: int,
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    action_mask: torch.Tensor | None,
    eps_low: float,
    eps_high: float,
) -> dict[str, float]:
    """Clip, advantage and ratio statistics of a loss call without entropy, by the rules of ``step_stats`` (token
    means over the valid tokens; ``clip/onpolicy`` from ``ONPOLICY_LOG_RATIO_TOL``) and, under a reducing ``Watch``,
    all-reduced over its ranks as the entropy path's are: every rank takes part (a refused input with no tokens), so
    rank 0 writes the step's numbers, not its own. The entropy slots hold zeros and are not recorded."""
    from entropy_watch.histogram import entropy_bin_edges
    from entropy_watch.hooks.stats import finalize, join_refused, reduce_sums, stamp_step, token_sums
    from entropy_watch.hooks.token_batch import prepare_batch

    group = w.process_group if w.reduce else False
    edges = w._edges if w._edges is not None else entropy_bin_edges()
    with torch.no_grad():
        try:
            w._check_group(step)  # after destroy_process_group: this rank's tokens alone are not the step's
            if w.closed:
                raise RuntimeError(f"Watch {w.run!r} is closed")
            lp, old, adv = log_probs.detach(), old_log_probs.detach(), advantages.detach()
            batch = prepare_batch(torch.zeros_like(lp, dtype=torch.float32), action_mask, lp, old, adv)
            sums = stamp_step(token_sums(batch, edges, eps_low=eps_low, eps_high=eps_high), step)
        except Exception:
            join_refused(edges, group, log_probs)  # the other ranks are in this call's collectives
            if w.closed:  # recorded as a call after close (log_dict says so)
                return {}
            raise
        scalars, _ = finalize(reduce_sums(sums, group), edges)
    return {k: scalars[k] for k in NO_ENTROPY if k in scalars}


def wrap_policy_loss(cls: Any = None) -> None:
    """Wrap ``PolicyLoss.forward(self, log_probs, old_log_probs, advantages, action_mask=None, rollout_log_probs=None,
    ...)`` at class level (OpenRLHF calls it with ``action_mask=`` and ``rollout_log_probs=`` as keywords)."""
    if cls is None:
        from openrlhf.models.loss import PolicyLoss as cls
    orig = cls.forward
    if getattr(orig, "_entropy_watch", False):
        return

    @functools.wraps(orig)
    def forward(self: Any, log_probs: Any, old_log_probs: Any, advantages: Any, *args: Any, **kwargs: Any) -> Any:
        out = orig(self, log_probs, old_log_probs, advantages, *args, **kwargs)
        try:
            mask = kwargs.get("action_mask", args[0] if args else None)
            rollout = kwargs.get("rollout_log_probs", args[1] if len(args) > 1 else None)  # >= 0.9
            record_policy_loss(self, log_probs, old_log_probs, advantages, mask, rollout)
        except Exception as exc:  # noqa: BLE001 - hooks never crash training
            _guard("policy_loss", exc)
        return out  # whatever arity this OpenRLHF version returns

    forward._entropy_watch = True  # type: ignore[attr-defined]
    cls.forward = forward


def wrap_actor(cls: Any = None) -> None:
    """Wrap ``Actor.forward``: when called with ``return_entropy=True``, keep ``output.entropy`` for the next loss."""
    if cls is None:
        from openrlhf.models.actor import Actor as cls
    orig = cls.forward
    if getattr(orig, "_entropy_watch", False):
        return

    @functools.wraps(orig)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = orig(self, *args, **kwargs)
        if kwargs.get("return_entropy") and getattr(self, "training", True):
            _state["entropy"] = None
            try:
                parts = out if isinstance(out, tuple) else (out,)  # (log_probs, output) with return_output=True
                ent = next((e for e in map(_entropy_of, parts) if e is not None), None)
                if ent is None:
                    raise LookupError(
                        "Actor.forward(return_entropy=True) returned no .entropy; per-token entropy is not recorded "
                        "(clip and advantage statistics still are)"
                    )
                _state["entropy"] = ent.detach()
            except Exception as exc:  # noqa: BLE001
                _guard("actor_forward", exc)
        return out

    forward._entropy_watch = True  # type: ignore[attr-defined]
    cls.forward = forward


def _entropy_of(obj: Any) -> torch.Tensor | None:
    """``obj.entropy``, else ``obj["entropy"]``; None for a tensor or when neither is a tensor.

    The attribute comes first: OpenRLHF sets ``entropy`` as an attribute of the model's output, a Hugging Face
    ``ModelOutput``, which is a dict whose ``.get("entropy")`` is None.
    """
    if isinstance(obj, torch.Tensor):
        return None
    ent = getattr(obj, "entropy", None)
    if ent is None and isinstance(obj, Mapping):
        ent = obj.get("entropy")
    return ent if isinstance(ent, torch.Tensor) else None


def wrap_trainer(cls: Any = None) -> None:
    """Wrap ``ActorPPOTrainer.__init__`` (the policy worker's trainer, built with OpenRLHF's ``strategy.args``):
    :func:`remember_args` of its ``args`` once it is built."""
    if cls is None:
        from openrlhf.trainer.ray.ppo_actor import ActorPPOTrainer as cls
    orig = cls.__init__
    if getattr(orig, "_entropy_watch", False):
        return

    @functools.wraps(orig)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        orig(self, *args, **kwargs)
        remember_args(getattr(self, "args", None))

    __init__._entropy_watch = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


def install() -> dict[str, str]:
    """Ray ``worker_process_setup_hook``: install both loss-side wraps in this worker; each missing symbol warns
    once. The trainer wrap (:func:`wrap_trainer`: the settings advice quotes) is tried too; without it (its module
    imports DeepSpeed and Ray) the statistics are the same and ``run.json`` holds no settings, so it only logs.

    Ray ends a worker whose setup hook raises, and with it the training. This module imports only torch and
    entropy_watch's pure-Python core, so Ray can always call this; the recording side (the store: numpy, pyarrow,
    duckdb) is imported here, and when it cannot be (numpy 1.x beside a pyarrow built for numpy 2, a package missing
    on one node) the worker logs one warning naming the fix, installs nothing and trains (``ENTROPY_WATCH_STRICT=1``
    raises instead). A worker where entropy_watch itself is not importable fails in Ray's import of the hook's name,
    before this runs: docs/integrations.md gives the launcher a hook of its own for that case."""
    try:
        import entropy_watch.hooks.watch  # noqa: F401 - the Watch every wrap records into
    except Exception as exc:  # noqa: BLE001 - hooks never crash training (Ray would end the worker)
        if os.environ.get("ENTROPY_WATCH_STRICT", "") == "1":
            raise
        return {"import": _not_installed(exc)}
    report: dict[str, str] = {}
    try:
        wrap_trainer()
    except Exception as exc:  # noqa: BLE001
        log.info("entropy_watch: OpenRLHF settings not stored in run.json (%s: %s); remember_args(args) stores them",
                 type(exc).__name__, exc)  # fmt: skip
    for name, fn in (("policy_loss", wrap_policy_loss), ("actor", wrap_actor)):
        try:
            fn()
            report[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - e.g. openrlhf.models needs flash_attn to import
            report[name] = f"{type(exc).__name__}: {exc}"
            log.warning("entropy_watch: OpenRLHF %s wrap not installed (%s)", name, report[name])
    return report


def _not_installed(exc: BaseException) -> str:
    """Warn (one line) that this worker records nothing because entropy_watch's recording side does not import, and
    what to do; returns the reason."""
    why = " ".join(f"{type(exc).__name__}: {exc}".split())
    log.warning(
        "entropy_watch: not installed in this OpenRLHF Ray worker, nothing is recorded here (%s); OpenRLHF trains "
        "without it. Install entropy_watch with its dependencies (pip install 'entropy-watch[torch]') in the Python "
        "environment of every Ray worker; check there: python -c 'import entropy_watch.hooks.watch'",
        why,
    )
    return why
