"""``EntropyWatchCallback``: record what any Hugging Face ``Trainer`` logs, under its own and the canonical names.

    from entropy_watch.hooks.hf import EntropyWatchCallback

    trainer = Trainer(..., callbacks=[EntropyWatchCallback(run="sft-7b")])   # or trainer.add_callback(...)
    trainer.train()

For trainers entropy_watch does not wrap (SFT, DPO, PPO, custom ``Trainer`` subclasses). Every numeric value passed
to ``on_log`` is recorded at ``state.global_step`` under the trainer's key; keys the alias table knows
(``entropy`` -> ``entropy/mean``, ``clip_ratio/low_mean`` -> ``clip/low_frac``, ``reward`` -> ``reward/mean``, ...,
see :mod:`entropy_watch.aliases`) are recorded under the canonical name too. Evaluation keys (``eval_*``)
are recorded as logged, never as a training metric. ``on_train_begin`` stores the ``TrainingArguments``, the seed,
library versions, world size and, for a PEFT model (LoRA...), its adapters' configs in ``run.json``. Only the main
process writes (``state.is_world_process_zero``).

A resumed training (``trainer.train(resume_from_checkpoint=...)`` in a new process, same run name) writes into the
same run: the ``Trainer`` loads the checkpoint's ``TrainerState`` before it calls ``on_train_begin`` (transformers 5.x
``_inner_training_loop``: ``_init_training_state``, then ``on_train_begin``), so ``state.global_step`` there is the
checkpoint's step, and a ``resume`` event is recorded at the first step the resumed training logs (that step + 1, as
the reference trainer and the importers place it: an alert raised at the checkpoint's step before the restart is not
explained away afterwards) with the checkpoint's step and folder (``output_dir/checkpoint-<step>``, when it exists) in
its payload. The analysis reads it as the same run going on (its baselines are kept) and a jump of entropy there as
explained. Steps logged again after the checkpoint replace the first process's values (the store keeps the latest row
of a step). A training that starts from step 0 under the name of a run the store already holds is warned about: its
steps would replace the earlier ones and the later ones would stay, one run mixing two trainings.

When ``trainer.train()`` returns (``on_train_end``) the run this callback made is closed ``finished``: it no longer
reads ``running`` while the process (a notebook) lives on. A later ``train()`` of the same trainer reopens it (the
run is continued, warned about when it starts again from step 0), and a log after it (``trainer.evaluate()``) reopens
it for that one record. A ``Watch`` passed in (``watch=``) is the caller's to close: it is only flushed there.

Every callback body is guarded (a failure is counted in ``hooks/errors`` and training goes on); ``strict=True``
re-raises (tests). The TRL adapter (:mod:`entropy_watch.hooks.trl`) subclasses this callback.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from entropy_watch.errors import require

try:
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
except ImportError:  # one line naming the extra when it is missing; any other import failure as it is
    require("transformers", "hf", needs="entropy_watch.hooks.hf (the HF Trainer and TRL hooks)")
    raise

from entropy_watch.aliases import detect_canonical, is_eval
from entropy_watch.hooks.control import ControlError
from entropy_watch.hooks.live import LIVE_ARGS, Live
from entropy_watch.hooks.watch_ranks import open_watch

log = logging.getLogger("entropy_watch")

_RUN_CHARS = re.compile(r"[^A-Za-z0-9_.\-+@=:,]+")


def store_arg(store: Any) -> Any:
    """A path-like store as ``str`` (``Watch`` reads ``store.root`` of a ``Store``, and ``Path.root`` is ``/``)."""
    return os.fspath(store) if isinstance(store, os.PathLike) else store


def run_name_for(args: Any, fallback: str = "hf-run") -> str:
    """A valid run name from ``TrainingArguments``: ``run_name`` if set, else the output folder's name."""
    name = getattr(args, "run_name", None) or os.path.basename(os.path.normpath(getattr(args, "output_dir", "") or ""))
    name = _RUN_CHARS.sub("-", str(name or "")).strip("-.")
    return name or fallback


def checkpoint_folder(args: Any, step: int) -> str | None:
    """The folder the ``Trainer`` saved at ``step`` (``output_dir/checkpoint-<step>``), None when it is not there (a
    checkpoint passed from elsewhere: the ``Trainer`` does not tell its callbacks which one it loaded)."""
    path = os.path.join(getattr(args, "output_dir", "") or "", f"{PREFIX_CHECKPOINT_DIR}-{step}")
    return path if os.path.isdir(path) else None


def adapter_meta(model: Any) -> dict[str, Any] | None:
    """The PEFT adapters ``model`` trains, for ``run.json``: ``{"adapters": {name: config}, "active": [...],
    "version": peft's}``; None for a model without adapters. A LoRA run and a full fine-tune of one model move entropy
    differently (rank, alpha and target modules bound the update), so a run says which it was. Read from the
    ``peft_config`` dict a ``PeftModel`` (or a transformers model with adapters loaded) carries; a compiled model
    passes the attribute through."""
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, Mapping) or not configs:
        return None
    adapters = {}
    for name, cfg in configs.items():
        to_dict = getattr(cfg, "to_dict", None)
        adapters[str(name)] = to_dict() if callable(to_dict) else str(cfg)
    active = getattr(model, "active_adapters", None)
    active = active() if callable(active) else active  # a method on transformers models, a property on PeftModel
    peft = sys.modules.get("peft")
    return {
        "adapters": adapters,
        "active": [str(a) for a in active] if isinstance(active, list | tuple) else None,
        "version": str(getattr(peft, "__version__", "?")) if peft is not None else None,
    }


def bind_actions(watch: Any) -> None:
    """A trainer callback carries out ``watch``'s checkpoint/stop rules (as ``control`` flags at step end)."""
    live = getattr(watch, "live", None)
    if live is not None and live.actions is not None:
        live.actions.bind_trainer()


class EntropyWatchCallback(TrainerCallback):
    """Records logged scalars (and the training config at train start) into an entropy_watch run.

    Args:
        run: run name; default: derived from ``args.run_name`` / ``args.output_dir`` at train start.
        store: store root or ``Store``; default ``$ENTROPY_WATCH_DIR`` or ``./ew_runs``.
        watch: an existing :class:`~entropy_watch.hooks.Watch` to record into (``run``/``store`` then unused).
        strict: re-raise failures instead of counting them (tests).
        framework: stored in ``run.json``.
        skip_canonical: canonical names not to fill from the logs (another hook records them from the tensors).
        watch_kwargs: passed to the ``Watch`` created at train start, e.g. ``notify=``, ``on_alert=``, ``detector=``
            (validated here). ``on_alert`` checkpoint/stop rules act through ``control.should_save`` /
            ``control.should_training_stop`` at the next step end (:mod:`entropy_watch.hooks.actions`).
    """

    def __init__(
        self,
        run: str | None = None,
        store: Any = None,
        *,
        watch: Any = None,
        strict: bool = False,
        framework: str = "transformers.Trainer",
        skip_canonical: Iterable[str] = (),
        **watch_kwargs: Any,
    ) -> None:
        if watch_kwargs.get("control") is not None:  # a callback never sees the loss: say where control lives
            raise ControlError(
                "EntropyWatchCallback(control=...): a TrainerCallback cannot reach the loss's advantages or clip "
                "range; for TRL's GRPOTrainer/RLOOTrainer use entropy_watch.hooks.trl.attach(trainer, control=...)"
            )
        watch_kwargs.pop("control", None)
        live_args = {k: watch_kwargs[k] for k in LIVE_ARGS if k in watch_kwargs}
        if live_args:
            Live.build(**live_args, quiet=True)  # a bad notify/on_alert spec raises now, not inside a guarded callback
        self.watch_kwargs = watch_kwargs
        self.run = run
        self.store = store
        self.watch = watch
        self.strict = strict
        self.framework = framework
        self.skip_canonical = set(skip_canonical)
        self._mapping_cache: dict[frozenset[str], dict[str, str]] = {}
        self._trained_to: int | None = None  # the last step of a training this callback saw end (this process)
        self.owns_watch = watch is None  # made here (or by attach): closed when train() returns, reopened after
        self._closed_at_end = False  # on_train_end closed it: a later train() or log reopens it
        if watch is not None:
            bind_actions(watch)

    # ---- TrainerCallback ---------------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            w = self.ensure_watch(args)
            if self._closed_at_end:  # train() again (a notebook): the run this callback closed at the end goes on
                self._closed_at_end = False
                w.reopen()
                bind_actions(w)
            w.update_meta(**self.train_meta(args, state, **kwargs))
            step = int(getattr(state, "global_step", 0) or 0)  # > 0 only when resumed from a checkpoint
            # an earlier process's training, or one this callback recorded already (train() called again in a notebook)
            earlier = max((s for s in (getattr(w, "earlier_last_step", None), self._trained_to) if s is not None),
                          default=None)  # fmt: skip
            if step > 0 and getattr(state, "is_world_process_zero", True):  # at the first step logged again
                w.event(step + 1, "resume", checkpoint_step=step, checkpoint=checkpoint_folder(args, step))
            elif step == 0 and earlier is not None:  # a second training from scratch under the same name
                from entropy_watch.hooks.watch import warn_second_training

                warn_second_training(
                    w,
                    0,
                    "pass resume_from_checkpoint to trainer.train()",
                    "give it another name (run=..., or another output folder)",
                    last_step=earlier,
                )
        except Exception as exc:  # noqa: BLE001 - hooks never crash training
            self._failure("on_train_begin", exc)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kw: Any) -> None:
        try:
            if logs and getattr(state, "is_world_process_zero", True):
                w = self.ensure_watch(args)
                again = self._closed_at_end and w.closed  # logged after train() returned: trainer.evaluate()
                if again:
                    other = open_watch(getattr(w, "_key", None))
                    if other is not None:  # the run is open in another Watch (the user's): reopening closed that one
                        other.log_dict(int(state.global_step), self.scalars_from_logs(logs))
                        return
                    w.reopen()
                try:
                    w.log_dict(int(state.global_step), self.scalars_from_logs(logs))
                finally:
                    if again:
                        w.close("finished")
        except Exception as exc:  # noqa: BLE001
            self._failure("on_log", exc)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Carry out the checkpoint/stop an ``on_alert`` rule asked for since the last step (every rank)."""
        live = getattr(self.watch, "live", None)
        if live is not None and live.actions is not None:
            try:
                live.actions.carry_out(args, state, control)
            except Exception as exc:  # noqa: BLE001
                self._failure("on_step_end", exc)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = getattr(state, "global_step", None)
        if isinstance(step, int) and step > 0:  # a later train() of this callback from step 0 is warned about
            self._trained_to = step if self._trained_to is None else max(self._trained_to, step)
        if self.watch is None:
            return
        if not self.owns_watch:  # a Watch passed in is the caller's to close
            self.watch.flush()
            return
        try:  # train() returned: the run is finished, not "running" for as long as the process (a notebook) lives
            self.watch.close("finished")
            self._closed_at_end = True
        except Exception as exc:  # noqa: BLE001
            self._failure("on_train_end", exc)

    # ---- helpers -----------------------------------------------------------------------------------------------
    def ensure_watch(self, args: Any = None) -> Any:
        """The :class:`Watch` this callback records into, created on first use."""
        if self.watch is None:
            from entropy_watch.hooks.watch import Watch

            run = self.run or run_name_for(args)
            self.watch = Watch(
                run, store=store_arg(self.store), strict=self.strict, framework=self.framework, **self.watch_kwargs
            )
            bind_actions(self.watch)
        return self.watch

    def scalars_from_logs(self, logs: Mapping[str, Any]) -> dict[str, float]:
        """``{name: value}`` for one ``on_log`` call: numeric values under their key plus canonical copies."""
        values: dict[str, float] = {}
        for key, v in logs.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue  # strings, None (TRL's all-NaN windows), lists
            values[str(key)] = float(v)  # NaN / inf kept: the store round-trips them
        for canonical, source in self.canonical_mapping(values).items():
            if canonical not in self.skip_canonical and canonical not in values:
                values[canonical] = values[source]
        return values

    def canonical_mapping(self, values: Mapping[str, float]) -> dict[str, str]:
        """Canonical name -> logged key, from the importers' alias table; evaluation keys excluded."""
        keys = frozenset(values)
        hit = self._mapping_cache.get(keys)
        if hit is None:
            hit = detect_canonical(sorted(k for k in keys if not is_eval(k)))
            hit = {c: s for c, s in hit.items() if c != s}
            self._mapping_cache[keys] = hit
        return hit

    def train_meta(self, args: Any, state: Any, **kwargs: Any) -> dict[str, Any]:
        """What goes into ``run.json`` at train start: framework, arguments, world size, the seed and, for a model
        trained through PEFT adapters (LoRA...), their configs (:func:`adapter_meta`)."""
        to_dict = getattr(args, "to_dict", None)
        meta: dict[str, Any] = {
            "framework": self.framework,
            "training_args": to_dict() if callable(to_dict) else {},
            "world_size": int(getattr(args, "world_size", 1) or 1),
            "max_steps": int(getattr(state, "max_steps", 0) or 0),
        }
        seed = getattr(args, "seed", None)
        if isinstance(seed, int) and not isinstance(seed, bool):
            meta["seed"] = seed  # run.json's own field, which a Watch fills from its config (the Trainer has none)
        try:
            adapters = adapter_meta(kwargs.get("model"))
        except Exception as exc:  # noqa: BLE001 - the rest of the config is still recorded
            self._failure("train_meta.peft", exc)
            adapters = None
        if adapters:
            meta["peft"] = adapters
        return meta

    def _failure(self, where: str, exc: BaseException) -> None:
        w = self.watch
        if w is not None:
            w.failure(f"hf.{where}", exc)  # counts, warns once; re-raises when strict
        elif self.strict:
            raise exc
