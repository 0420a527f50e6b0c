"""``Watch``: record per-token entropy and its drivers from any PyTorch training loop.

    from entropy_watch.hooks import Watch

    with Watch("grpo-s0", config=cfg) as w:
        for step in range(steps):
            ...                                   # forward: logits (B, T, V), completion mask (B, T)
            w.log_tokens(step, logits=logits, mask=mask, logp=logp, old_logp=old_logp, advantages=adv)
            w.log(step, **{"reward/mean": r})

Every call is guarded: a failure is logged once with its hook name, later ones are counted (``hooks/errors``), and
training continues; ``strict=True`` re-raises (tests). Per-token work stays on the tensors' device and is reduced
there (``step_stats``); only O(bins + scalars) crosses to the CPU. Unless statistics are all-reduced across ranks or
``strict=True``, that reduction runs on one background worker (``entropy_watch.hooks.async_stats``), so the training
thread pays only for the entropy from logits and a snapshot of the small per-token tensors. Under
``torch.distributed`` the statistics are all-reduced over the group and rank 0 writes (or, with ``reduce=False``,
every rank writes its own ``rank=`` folder). An unwritable store raises
:class:`~entropy_watch.errors.StoreUnwritable` here, when ``Watch`` is created, never mid-training.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from entropy_watch import __version__
from entropy_watch import metrics as M
from entropy_watch.errors import InvalidTensor, StoreUnwritable
from entropy_watch.histogram import entropy_bin_edges
from entropy_watch.hooks.async_stats import DeviceFence, StatsWorker, snapshot
from entropy_watch.hooks.live import Live
from entropy_watch.hooks.token_batch import LeftOut
from entropy_watch.hooks.watch_ranks import (
    OPEN_WATCHES,
    check_same_mode,
    close_open_watch,
    launcher_rank,
    live_writer,
    warn_live_writer,
    warn_not_initialised,
    writer_key,
)
from entropy_watch.jsonable import to_jsonable
from entropy_watch.notify import scrub
from entropy_watch.recorder import Recorder
from entropy_watch.store.layout import default_root, validate_run_name
from entropy_watch.store.schema import check_step
from entropy_watch.store.writer import exit_state

CPU_LOGIT_BUDGET = 2**26  # logit elements per call on CPU: 256 MiB of fp32, well under a second of work


class Watch:
    """Records one run (one rank) into the store.

    Args:
        run: run name (letters, digits and ``_ . - + @ : ,``).
        store: store root or ``Store``; default ``$ENTROPY_WATCH_DIR`` or ``./ew_runs``, resolved now.
        config: the run's resolved configuration (dict or dataclass), stored in ``run.json``.
        strict: re-raise hook failures instead of counting them (tests).
        vocab_size: V, fixes the histogram bins; default: ``logits.shape[-1]`` of the first call, or a 262k-token
            vocabulary when only entropies are ever passed.
        reward_max: the most the logged reward can be when it is not 1 (a sum of reward functions, a score on
            another scale), stored in ``run.json``: the analysis then tells a solved task (benign convergence) from a
            collapse; without it a reward above 1 leaves the task's state unjudged.
        sample_tokens: highest-entropy and random token rows kept per logged step (0 disables).
        token_every: keep token rows every N-th logged step only (DESIGN §3: a few sequences every N steps).
        temperature: sampling temperature the logits are divided by (entropy is reported at it).
        framework: the trainer's name, stored in ``run.json``.
        entropy_definition: how the entropy passed in was computed (stored in ``run.json``).
        process_group: data-parallel group to reduce over (default: the world group when initialised); ``False``:
            no reduction, each rank writes its own ``rank=`` folder (as ``reduce=False``). Every rank must pass the
            same ``reduce``/``process_group``: a mix is warned about here (ranks that reduce would wait forever).
        reduce: all-reduce statistics across ranks and write from rank 0 only; ``False``: each rank writes its own.
            Create the ``Watch`` after ``init_process_group``: made before it, there is no group to reduce over, so
            each rank writes its own folder, its rank taken from the launcher's ``RANK``/``WORLD_SIZE`` (warned).
        flush_secs: publish interval of the background recorder.
        seed: the run's seed for ``run.json`` (default: ``config["seed"]`` when there is one).
        async_stats: compute each step's statistics on one background worker (FIFO, at most ``max_pending_stats``
            steps waiting; beyond that ``log_tokens`` waits for a slot). Used only when no collective is needed
            (single process or ``reduce=False``) and ``strict`` is False; otherwise statistics are computed in the
            calling thread, as collectives must run in lockstep there. In async mode ``log_tokens`` returns ``{}``
            and failures of the statistics are counted (``hooks/errors``) when the worker meets them.
        max_pending_stats: back-pressure bound of the worker (steps whose snapshots may be held at once).
        max_logits_per_call: bound on the logit elements (tokens x V) whose entropy one ``log_tokens`` call computes
            in the calling thread; above it a uniform sample of the valid tokens (seeded by the step) is reduced
            instead, each weighted by 1/share (``tokens/count`` stays the batch's; ranks pool by their true counts),
            and ``hooks/entropy_sample_frac`` records the share (docs/integrations.md); ``adv/min|max``, groups and
            ``ratio/max`` stay the batch's (``ratio/max`` absent when only the sample has log-probs). ``"auto"``: 2**26
            on CPU (a 1 GiB batch blocked a CPU loop for 37 s), unbounded on accelerators; None: never sample.
        notify: webhook spec(s) to notify on alerts: a URL (Slack/Discord detected from the host), ``slack+URL``,
            ``discord+URL``, ``json+URL``, ``env:NAME`` or ``env`` (``$ENTROPY_WATCH_NOTIFY``), or a list of them
            (:mod:`entropy_watch.notify`). The URLs are never stored or logged.
        on_alert: what to do on an alert: ``{"critical": "checkpoint+stop"}``, ``{"critical:explosion": "stop"}``,
            ``{"warning": fn}``... (:mod:`entropy_watch.hooks.actions`). In a plain loop, poll ``should_stop`` /
            ``should_checkpoint``; under a trainer, ``attach`` turns them into ``control`` flags.
        detector: the :class:`~entropy_watch.analysis.DetectorConfig` of the live analysis (default thresholds).
        app_url: the app's base URL, for links in notifications (default ``$ENTROPY_WATCH_APP_URL``).
        live: :class:`~entropy_watch.hooks.live.LiveOptions` (or a dict of them) for the in-process analysis; it
            runs when ``notify`` or ``on_alert`` is given, or ``live`` is truthy; ``False`` turns it off.

    A ``run`` the store already holds is continued (a restart after a crash): ``earlier_last_step`` is then the last
    step its previous session published on this rank (None for a new run, and on ranks that do not write), as
    ``entropy-watch ls`` counts it. A run whose rank is being written by another live session (its heartbeat fresh,
    its process alive: two trainings launched under one name) is warned about once, here: their steps would merge.
    When that session is an earlier ``Watch`` of this process, still open (a notebook cell run again), it is closed
    first (its rows published), and said so. After :meth:`close` nothing more is recorded (the first call warns; see
    :meth:`close`). A ``Watch`` nobody references any more is closed then (``finished``), its threads ended.
    """

    def __init__(
        self,
        run: str,
        store: Any = None,
        config: Any = None,
        strict: bool = False,
        *,
        vocab_size: int | None = None,
        reward_max: float | None = None,
        sample_tokens: int = 8,
        token_every: int = 10,
        temperature: float = 1.0,
        framework: str = "torch",
        entropy_definition: str | None = None,
        process_group: Any = None,
        reduce: bool = True,
        flush_secs: float = 2.0,
        seed: int | None = None,
        async_stats: bool = True,
        max_pending_stats: int = 8,
        max_logits_per_call: int | None | str = "auto",
        notify: Any = None,
        on_alert: Any = None,
        detector: Any = None,
        app_url: str | None = None,
        live: Any = None,
    ) -> None:
        self.run = validate_run_name(run)
        # bad notify/on_alert specs raise here, before anything is written
        self.live = Live.build(notify=notify, on_alert=on_alert, detector=detector, app_url=app_url, live=live)
        self.strict = strict
        self._warned: set[str] = set()  # hook names warned about on a rank without a recorder
        self.sample_tokens = int(sample_tokens)
        if max_logits_per_call not in ("auto", None) and not (
            isinstance(max_logits_per_call, int) and max_logits_per_call > 0
        ):
            raise ValueError(f"max_logits_per_call must be a positive int, 'auto' or None, got {max_logits_per_call!r}")
        self.max_logits_per_call = max_logits_per_call
        self.token_every = max(1, int(token_every))
        self.temperature = float(temperature)
        self.process_group = process_group
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        local = process_group is False  # no reduction: this rank records its own statistics (as reduce=False)
        if dist:  # process_group=False: the world's ranks, each writing its own rank= folder
            self.world_size = torch.distributed.get_world_size(None if local else process_group)
            self.rank = torch.distributed.get_rank()
        else:  # not initialised (yet, or any more): the launcher's RANK / WORLD_SIZE still say which rank this is
            self.rank, self.world_size = launcher_rank()
            if self.world_size > 1 and reduce and not local:
                warn_not_initialised(self.run, self.rank, self.world_size)
        self.reduce = bool(reduce and dist and not local)
        self.is_writer = self.rank == 0 or not self.reduce
        if dist and self.world_size > 1:
            check_same_mode(self.run, self.rank, self.reduce)  # ranks that reduce wait forever for ranks that don't
        self._edges: np.ndarray | None = entropy_bin_edges(vocab_size) if vocab_size else None
        self._vocab_size = vocab_size
        if reward_max is not None and not (isinstance(reward_max, int | float) and 0 < reward_max < float("inf")):
            raise ValueError(f"reward_max must be a positive finite number, got {reward_max!r}")  # before training
        self._reward_max = None if reward_max is None else float(reward_max)
        self._n_logged = 0
        self._last_token_step: int | None = None  # the step of the last log_tokens call (micro-batch warning)
        self._recorded: tuple[int, frozenset[str]] | None = None  # the last log_tokens step recorded, and its names
        root = store.root if hasattr(store, "runs") else store  # a Store, or a path
        self.root = default_root(root)
        self._recorder: Recorder | None = None
        # a run already in the store is continued: this session's rows join it, a step logged again replaces it
        self.earlier_last_step: int | None = None  # the last step an earlier session published (this rank)
        # False: log_tokens is handed log-probs of a pass before the update (verl's driver recomputes pi_old), not the
        # update's, so it knows no ratio and records no clip/onpolicy (N/A, never "on-policy"); read at each call
        self.update_pass = True
        self._closed = False  # set once close() has published: later calls record nothing (see close)
        self._after_close_calls = 0
        self._closed_why = ""  # why close() ran when the user did not call it (said by later calls)
        self._open_args = (flush_secs, async_stats and not strict and not self.reduce, max_pending_stats)
        self._live_args = {"notify": notify, "on_alert": on_alert, "detector": detector, "app_url": app_url}
        self._live_args["live"] = live
        self._open(self._run_meta(config, framework, entropy_definition, seed))

    def _open(self, meta: dict[str, Any] | None) -> None:
        """Open this rank's writer, recorder and statistics worker (``__init__``, :meth:`reopen`)."""
        from entropy_watch.store import RunWriter

        flush_secs, async_stats, max_pending_stats = self._open_args
        self._recorder = None
        if self.is_writer:  # StoreUnwritable surfaces here, before training starts
            rank = 0 if self.reduce else self.rank
            self._key = writer_key(self.root, self.run, rank)
            close_open_watch(self._key)  # a re-run notebook cell: the Watch it made before is still open here
            earlier = live_writer(self.root, self.run, rank)  # read before our heartbeat replaces it
            writer = RunWriter(self.root, self.run, rank=rank)
            self.earlier_last_step = writer.earlier_last_step  # as ls counts it (the writer folds in a kill's tail)
            if earlier is not None:
                warn_live_writer(self.run, rank, earlier)
            if meta is not None:
                writer.update_run_meta(**self._scrub(meta))  # config, argv, ...: no webhook URL, no credential
            self._recorder = Recorder(writer, flush_secs=flush_secs, strict=self.strict)
            self._writer = writer
            OPEN_WATCHES[self._key] = weakref.ref(self)
        self._stats: StatsWorker | None = None
        if async_stats:
            # the worker's thread holds this Watch weakly (an unreferenced Watch is collected and closed: __del__)
            me = weakref.ref(self)
            self._stats = StatsWorker(lambda exc: _fail(me, "log_tokens", exc), max_pending=max_pending_stats)
            if self._recorder is not None:  # atexit and SIGTERM close the recorder: pending steps are written first
                stats = self._stats
                self._recorder.before_close = lambda: stats.drain(30.0)
        self._side_streams: dict[Any, Any] = {}  # the worker's CUDA stream per device
        if self.live is not None:  # taps the recorder, chains its before_close (last analysis, notifications)
            self.live.bind(self)

    def reopen(self) -> None:
        """Open a closed ``Watch`` again: the run is continued, as by a new ``Watch`` of it (its live analysis, if
        any, starts again). The trainer adapters close the run they made when ``trainer.train()`` returns (so it does
        not read ``running`` while the process lives on) and reopen it when the trainer trains or logs again. A no-op
        while open."""
        if not self._closed:
            return
        if self.live is not None:  # a closed one's notifier and threads are done: a fresh one, same specs
            self.live = Live.build(**self._live_args, quiet=True)
        self._open(None)
        self._closed, self._closed_why, self._after_close_calls = False, "", 0

    # ---- public API --------------------------------------------------------------------------------------------
    def log_tokens(
        self,
        step: int,
        *,
        logits: torch.Tensor | None = None,
        entropy: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        logp: torch.Tensor | None = None,
        old_logp: torch.Tensor | None = None,
        advantages: torch.Tensor | None = None,
        group_ids: torch.Tensor | None = None,
        eps_low: float = 0.2,
        eps_high: float = 0.2,
        dual_clip: float | None = None,
        token_ids: torch.Tensor | None = None,
        tokenizer: Any = None,
    ) -> dict[str, float]:
        """Compute and record one step's token statistics; returns the scalars (empty dict on a guarded failure).

        With the background worker (``async_stats``, the default outside ``strict`` and cross-rank reduction) the
        statistics are computed after this returns and the result is always ``{}``; read the store, or pass
        ``async_stats=False`` when the caller needs the scalars back.

        Shapes: ``logits (B, T, V)`` or ``entropy (B, T)`` (nats; pass it when the trainer already has it, so no
        second softmax runs), ``mask (B, T)`` of valid completion tokens, ``logp``/``old_logp (B, T)`` log-probs of
        the sampled tokens under the current and the sampling policy, ``advantages (B,)``, ``(B, 1)`` or ``(B, T)``,
        ``group_ids (B,)``, ``token_ids (B, T)``. All tensors stay on their device.

        ``clip/onpolicy``: 1 without ``old_logp`` (your loss takes ``logp`` as its old log-probs: the ratio is 1),
        else from the ratio; not recorded when :attr:`update_pass` is False.

        Under ``torch.distributed`` (``reduce``) pass each rank's own tokens: they are all-reduced here. Tensors
        gathered across ranks first (``accelerator.gather``) count every token world-size times (``tokens/count``,
        the histogram; means unchanged); warned once when every rank's tokens are the same. Log gathered tensors
        from rank 0 alone, in a ``Watch(..., reduce=False)``.
        """
        if self._closed:
            if self.reduce:  # ranks still logging wait in this step's collectives: join them with no tokens
                self._join_closed(logits if logits is not None else entropy)
            self._after_close("log_tokens", step)
            return {}
        in_stats = False  # step_stats takes part in the step's collectives itself, even when it refuses the input
        try:
            from entropy_watch.hooks.entropy import entropy_within_budget
            from entropy_watch.hooks.stats import step_stats
            from entropy_watch.hooks.token_batch import OPTIONAL, drop_unusable

            self._recorded = None  # until this call's statistics are recorded (recorded_names)
            step = check_step(step)  # a bad step is refused here, before any work or buffering
            self._check_group(step)
            self._note_repeat(step)
            ours: set[str] = set()  # tensors computed here (not shared with the caller)
            weight, whole = 1.0, None  # tokens each valid token stands for (step_stats' token_weight); its batch
            given = {"logp": logp, "old_logp": old_logp, "advantages": advantages, "group_ids": group_ids}
            given["token_ids"] = token_ids  # a mismatched one is left out alone: the step's other statistics stay
            left_out = drop_unusable(logits if entropy is None else entropy, given, logits=entropy is None, mask=mask)
            on_policy_unknown = old_logp is not None and given["old_logp"] is None  # never "on-policy" for it
            logp, old_logp, advantages, group_ids, token_ids = (given[k] for k in OPTIONAL)
            with torch.no_grad():
                if entropy is None:
                    if logits is None:
                        raise ValueError("log_tokens needs logits= or entropy=")
                    if not isinstance(logits, torch.Tensor) or logits.dim() < 2:
                        raise InvalidTensor(f"log_tokens: logits must be a torch.Tensor (B, T, V), got {_what(logits)}")
                    self._fix_edges(int(logits.shape[-1]))
                    entropy, own_logp, sampled, frac = entropy_within_budget(
                        logits.detach(),
                        self.temperature,
                        self._logit_budget(logits),
                        mask=mask,
                        token_ids=token_ids if logp is None else None,
                        seed=step,
                    )
                    ours.add("entropy")
                    if own_logp is not None:
                        logp = own_logp
                        ours.add("logp")
                    if sampled is not None:  # above the budget: a uniform sample, each token standing for 1/frac
                        whole = torch.ones_like(sampled) if mask is None else mask  # its extremes, groups (step_stats)
                        mask = sampled if mask is None else (mask != 0) & sampled
                        ours.add("mask")
                        weight = 1.0 / frac  # ranks that sampled other shares are pooled by their true counts
                else:
                    if logits is not None and not (isinstance(logits, torch.Tensor) and logits.dim() >= 1):
                        raise InvalidTensor(f"log_tokens: logits must be a torch.Tensor (B, T, V), got {_what(logits)}")
                    self._fix_edges(int(logits.shape[-1]) if logits is not None else None)
                keep_tokens = self.sample_tokens if self._n_logged % self.token_every == 0 else 0
                self._n_logged += 1
                kwargs: dict[str, Any] = {
                    "eps_low": eps_low,
                    "eps_high": eps_high,
                    "dual_clip": dual_clip,
                    "tokenizer": tokenizer,
                    "edges": self._edges,
                    "sample_tokens": keep_tokens,
                    "step": int(step),
                    "process_group": (self.process_group if self.reduce else False),
                    "onpolicy_unknown": on_policy_unknown,  # every rank's unknown verdict reaches the writer
                    "token_weight": weight,
                    "logp_sampled": whole is not None and "logp" in ours,  # ratio/max unknown (step_stats)
                }
                drop = () if self.update_pass else (M.CLIP_ONPOLICY,)
                tensors = {"entropy": entropy, "mask": mask, "logp": logp, "old_logp": old_logp}
                tensors |= {"advantages": advantages, "group_ids": group_ids, "token_ids": token_ids}
                tensors["unsampled_mask"] = whole
                if self._stats is None:
                    in_stats = True
                    stats = step_stats(**{k: None if t is None else t.detach() for k, t in tensors.items()}, **kwargs)
                    self._record(step, stats, drop, left_out)
                    return dict(stats.scalars)
                # snapshot what the caller owns: it may change it in place once we return (see snapshot)
                snap = {k: (t.detach() if k in ours else snapshot(t)) for k, t in tensors.items()}
                fence = DeviceFence(list(snap.values()))
            # the job holds this Watch: a queued step keeps it (even in a garbage cycle, whose weakrefs the collector
            # clears before __del__) until it is written; the idle worker drops its last job (async_stats)
            self._stats.submit(lambda: self._stats_job(step, snap, kwargs, fence, drop, left_out))
            return {}
        except Exception as exc:  # noqa: BLE001 - hooks never crash training
            if isinstance(exc, LeftOut):  # strict: raised by _record, already counted
                raise
            if self.reduce and not in_stats:
                self._join_refused(logits if logits is not None else entropy)
            self.failure("log_tokens", exc)
            return {}

    def log(self, step: int, **scalars: Any) -> None:
        """Record scalars by name: ``w.log(step, loss=l)`` or ``w.log(step, **{"reward/mean": r})``."""
        self.log_dict(step, scalars)

    def log_dict(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Record ``{name: number}``; tensors are read with ``.item()`` (several elements: their mean); None is skipped.

        A bad step (not an integer in ``[0, 2**63 - 1]``) records nothing; a bad value (text, complex, an int beyond
        float64) is refused alone. Either is counted in ``hooks/errors`` and warned about once; NaN/inf are kept."""
        if self._closed:
            self._after_close("log", step)
            return
        try:
            values: dict[str, Any] = {}
            bad: list[str] = []
            for name, v in scalars.items():
                if v is None:
                    continue
                if isinstance(v, torch.Tensor):
                    if v.numel() == 0:  # its mean would be a NaN that reads as a divergence
                        bad.append(f"{str(name)[:60]!r}: an empty tensor")
                        continue
                    try:
                        v = v.detach().float().mean().item() if v.numel() != 1 else v.item()
                    except Exception as exc:  # noqa: BLE001 - a meta tensor, a failed device: this value only
                        bad.append(f"{str(name)[:60]!r}: {type(exc).__name__}: {exc}")
                        continue
                values[str(name)] = v
            if self._recorder is not None:
                self._recorder.scalars(step, values)
            else:
                check_step(step)
            if bad:
                raise ValueError(f"value of {bad[0]} at step {step}; the other values were recorded")
        except Exception as exc:  # noqa: BLE001
            self.failure("log", exc)

    def event(self, step: int, kind: str, **payload: Any) -> None:
        """Record a known change point (``resume``, ``lr_schedule``, ``config_edit``…) in the ``events`` table.

        A loop restarted from its checkpoint under the same run name continues the run; say so once the checkpoint is
        loaded, ``w.event(start_step, "resume", checkpoint=path)``: the analysis then keeps the run's baselines and
        reads a jump of entropy there as explained (the steps logged again replace the earlier session's)."""
        if self._closed:
            self._after_close("event", step)
            return
        try:
            check_step(step)
            if self._recorder is not None:
                self._recorder.event(step, kind, json.dumps(self._scrub(to_jsonable(payload)), default=str))
        except Exception as exc:  # noqa: BLE001
            self.failure("event", exc)

    def update_meta(self, **fields: Any) -> None:
        """Merge fields into ``run.json`` (e.g. the trainer's config once known). Guarded."""
        try:
            if self.is_writer:
                self._writer.update_run_meta(**self._scrub(to_jsonable(fields)))
        except Exception as exc:  # noqa: BLE001
            self.failure("update_meta", exc)

    def _scrub(self, obj: Any) -> Any:
        """``obj`` as it may be stored: no webhook URL, no credential (the one filter: entropy_watch.credentials)."""
        return scrub(obj, self.live.secrets if self.live is not None else ())

    def flush(self) -> None:
        """Finish pending statistics and publish everything buffered now (the recorder does this every
        ``flush_secs`` anyway)."""
        self._drain()
        if self._recorder is not None:
            try:
                self._recorder.flush()
            except Exception as exc:  # noqa: BLE001
                self.failure("flush", exc)

    def close(self, state: str = "finished") -> None:
        """Finish pending statistics, publish what is left and mark the run ``state``. Called by ``with`` (finished;
        interrupted on Ctrl-C, failed on any other exception), at exit and on SIGTERM (through the recorder, which
        drains the statistics worker first). Idempotent.

        The run then reads ``state`` and nothing more is written to it: a ``log``, ``log_dict``, ``log_tokens`` or
        ``event`` after ``close()`` records nothing (the first one warns, naming the step; every one is counted in
        :attr:`errors`, not in the closed run's ``hooks/errors``) and never raises unless ``strict``. To record more,
        open a new ``Watch`` on the run: it continues it."""
        if self.live is not None:  # the live analysis holds this Watch weakly: held while it closes
            self.live.hold(self)
        try:
            if self._stats is not None:
                self._stats.close()
            if self._recorder is not None:
                try:
                    self._recorder.close(state)
                except Exception as exc:  # noqa: BLE001
                    self.failure("close", exc)
        finally:
            self._closed = True
            if self.live is not None:
                self.live.hold(None)
            key = getattr(self, "_key", None)
            if key is not None and OPEN_WATCHES.get(key, lambda: None)() is self:
                del OPEN_WATCHES[key]

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran: later calls record nothing."""
        return self._closed

    @property
    def should_stop(self) -> bool:
        """True once an ``on_alert`` rule with ``stop`` fired: the training loop should end cleanly."""
        return bool(self.live is not None and self.live.actions is not None and self.live.actions.should_stop)

    @property
    def should_checkpoint(self) -> bool:
        """True while an ``on_alert`` rule with ``checkpoint`` asked for a save; call :meth:`checkpoint_saved`."""
        return bool(self.live is not None and self.live.actions is not None and self.live.actions.should_checkpoint)

    def checkpoint_saved(self, step: int, where: str | None = None) -> None:
        """Tell the watch the requested checkpoint was saved (clears ``should_checkpoint``, records an event)."""
        if self.live is not None and self.live.actions is not None:
            self.live.actions.checkpoint_saved(step, where)

    @property
    def errors(self) -> int:
        """Guarded failures so far (recorded as ``hooks/errors``); waits for pending statistics first."""
        self._drain()
        return self._recorder.errors if self._recorder is not None else self._local_errors

    def recorded_names(self, step: int) -> frozenset[str]:
        """The scalar names the last ``log_tokens`` call recorded, when it recorded ``step`` (waits for pending
        statistics); empty when that call was refused. An input left out alone (``LeftOut``) takes only its own
        names away: e.g. ``adv/*`` beside the step's ``entropy/*``."""
        self._drain()
        rec = self._recorded
        return rec[1] if rec is not None and rec[0] == int(step) else frozenset()

    @property
    def dropped_token_rows(self) -> int:
        """Token sample rows dropped under back-pressure so far; waits for pending statistics first."""
        self._drain()
        return self._recorder.dropped_tokens if self._recorder is not None else 0

    def __del__(self) -> None:
        """A ``Watch`` nobody references any more and never closed (a sweep's trial that raised, a trainer dropped
        after ``attach``) is closed (``finished``, as at exit), on a thread of its own so that the collection never
        waits for the last analysis. Before, its threads held it: each such run of a sweep kept four or five threads
        and its buffers, and beat "running" into its status file until the process ended."""
        rec = getattr(self, "_recorder", None)
        ending = sys.is_finalizing() or not threading.main_thread().is_alive()  # exit hooks run: no thread waited for
        if getattr(self, "_closed", True) or rec is None or rec.closed or ending:
            return  # closed, or closed by the exit hook (the interpreter is ending: no thread to start)
        if rec._pid != os.getpid():  # a forked child's copy: the run is the parent's
            return
        try:  # not a daemon: the interpreter waits for it at exit, so what it publishes is not cut off
            threading.Thread(target=_close_quietly, args=(self,), name="entropy_watch-close", daemon=False).start()
        except RuntimeError:  # interpreter shutdown: the recorder's exit hook closes it
            pass

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: Any, tb: Any) -> None:
        self.close(exit_state(exc_type, exc))  # Ctrl-C: interrupted; sys.exit(0): finished; another: failed

    # ---- internals ---------------------------------------------------------------------------------------------
    _local_errors = 0

    def _stats_job(
        self,
        step: int,
        tensors: dict[str, torch.Tensor | None],
        kwargs: dict[str, Any],
        fence: DeviceFence,
        drop: tuple[str, ...] = (),
        left_out: list[str] | None = None,
    ) -> None:
        """The worker's half of ``log_tokens``: ``step_stats`` on the snapshots, then into the recorder."""
        from entropy_watch.hooks.stats import step_stats

        with torch.no_grad(), fence.enter(self._side_streams):  # grad mode is per thread
            stats = step_stats(**tensors, **kwargs)
        self._record(step, stats, drop, left_out)

    def _record(self, step: int, stats: Any, drop: tuple[str, ...] = (), left_out: list[str] | None = None) -> None:
        """Into the recorder; then inputs ``drop_unusable`` left out are one guarded failure (the rest recorded)."""
        for name in drop:  # names this call must not record (update_pass)
            stats.scalars.pop(name, None)
        self._recorded = (step, frozenset(stats.scalars))
        if self._recorder is not None:
            self._recorder.scalars(step, stats.scalars)
            if stats.n_tokens:
                self._recorder.hist(step, stats.hist)
            if stats.tokens:
                self._recorder.tokens(stats.tokens)
        if left_out:
            self.failure("log_tokens", LeftOut(f"step {step}: {'; '.join(left_out)}; left out, the rest recorded"))

    def _drain(self) -> None:
        if self._stats is not None:
            self._stats.drain()

    def failure(self, where: str, exc: BaseException) -> None:
        """Count a guarded hook failure (``hooks/errors``), warn once per hook name, re-raise when strict.

        Trainer adapters call it from their own guards, so every hook's failures land in one counter. A rank that
        does not write (``reduce=True``, rank > 0) counts its own (:attr:`errors`) and warns once per hook name in
        its own log, naming the rank. A :class:`LeftOut` counted already (raised again under strict) counts no more."""
        if isinstance(exc, LeftOut):
            if exc.counted:
                raise exc
            exc.counted = True
        if self._recorder is not None:
            self._recorder.failure(where, exc)  # counts, warns once, re-raises when strict (and says so)
            return
        self._local_errors += 1
        if where not in self._warned:
            self._warned.add(where)
            then = (
                "strict=True, so it is raised"
                if self.strict
                else ("training continues, later failures on this rank are counted (Watch.errors)")
            )
            logging.getLogger("entropy_watch").warning(
                "entropy_watch: %s failed on rank %d (%s: %s); %s", where, self.rank, type(exc).__name__, exc, then
            )
        if self.strict:
            raise exc

    def _note_repeat(self, step: int) -> None:
        """Warn once when ``log_tokens`` gets the step of its previous call again: the micro-batches of one optimizer
        step logged one by one. The store keeps one write of a step per rank, the last: each call's statistics,
        histogram and token rows replace the previous call's (the recorder replaces a step still buffered, readers
        keep a step's latest write), so the run holds the last micro-batch alone."""
        if step == self._last_token_step and "log_tokens repeated step" not in self._warned:
            self._warned.add("log_tokens repeated step")
            logging.getLogger("entropy_watch").warning(
                "entropy_watch: log_tokens got step %d twice in a row (micro-batches of one step?); each call "
                "replaces the step's statistics, histogram and token rows, so the run keeps only the last call's "
                "tokens. Pass the step's tokens in one call (torch.cat of the micro-batches' entropy/logits, "
                "masks...) or give each call its own step",
                step,
            )
        self._last_token_step = step

    def _check_group(self, step: int) -> None:
        """Refuse a step that cannot be all-reduced any more: under ``reduce`` over several ranks, once
        ``torch.distributed`` is no longer initialised (``destroy_process_group`` ran), ``step_stats`` would find no
        group and this rank's tokens alone would be recorded as the step."""
        if self.reduce and self.world_size > 1 and not torch.distributed.is_initialized():
            raise RuntimeError(
                f"torch.distributed is no longer initialised (destroy_process_group ran?), so step {step} cannot be "
                f"all-reduced over the {self.world_size} ranks this Watch reduces over; not recorded (this rank's "
                "tokens alone are not the step's). Log the last steps before destroy_process_group"
            )

    def _count_error(self) -> None:
        """One more guarded failure in :attr:`errors` (the recorder's counter on the writing rank)."""
        if self._recorder is None:
            self._local_errors += 1
        else:
            self._recorder.count_error()

    def _after_close(self, where: str, step: Any) -> None:
        """A call after :meth:`close`: nothing is recorded. Counted; the first one warns; strict raises."""
        self._count_error()
        self._after_close_calls += 1
        message = (
            f"entropy_watch: Watch {self.run!r} is closed{self._closed_why}; step {step} not recorded ({where} after "
            "close())"
        )
        if self.strict:
            raise RuntimeError(message)
        if self._after_close_calls == 1:
            logging.getLogger("entropy_watch").warning(
                "%s; training continues, later calls after close() are counted (Watch.errors); to record more, open "
                "a new Watch on the run",
                message,
            )

    def _join_closed(self, like: Any) -> None:
        """A closed rank under a reduction still joins the step's collectives with no tokens, so ranks that still log
        never wait for it; where the group is gone too (all ranks closed) there is nothing to join."""
        from entropy_watch.hooks.stats import join_refused

        try:
            edges = self._edges if self._edges is not None else entropy_bin_edges(self._vocab_size)
            join_refused(edges, self.process_group, like)
        except Exception:  # noqa: BLE001 - the call after close is what gets reported
            pass

    def _join_refused(self, like: Any) -> None:
        """This rank's input was refused before ``step_stats``: take part in the step's collectives with no tokens
        (:func:`~entropy_watch.hooks.stats.join_refused`) so the other ranks neither hang nor pair them with this
        rank's next step."""
        from entropy_watch.hooks.stats import join_refused

        try:
            edges = self._edges if self._edges is not None else entropy_bin_edges(self._vocab_size)
            join_refused(edges, self.process_group, like)
        except Exception as exc:  # noqa: BLE001
            self.failure("log_tokens", exc)

    def _logit_budget(self, logits: torch.Tensor) -> int | None:
        """Logit elements one call reduces synchronously: ``max_logits_per_call``, "auto" = 2**26 on CPU (about
        0.3-1 s of work there) and no bound on accelerators, where the reduction is a few kernels."""
        if self.max_logits_per_call != "auto":
            return self.max_logits_per_call  # type: ignore[return-value]
        return CPU_LOGIT_BUDGET if logits.device.type == "cpu" else None

    def _fix_edges(self, vocab_size: int | None) -> None:
        if self._edges is not None:
            return
        self._vocab_size = vocab_size
        self._edges = entropy_bin_edges(vocab_size)
        if self.is_writer:
            try:
                self._writer.update_run_meta(hist_edges=self._edges.tolist(), vocab_size=vocab_size)
            except StoreUnwritable as exc:  # the writer keeps the fields and writes them with its next segment
                if self.strict:
                    raise
                if "run.json edges" not in self._warned:
                    self._warned.add("run.json edges")
                    logging.getLogger("entropy_watch").warning(
                        "entropy_watch: writing the histogram bins of run %r into run.json failed (%s); they are "
                        "kept and written with the next segment the store takes; the step's statistics are "
                        "recorded",
                        self.run,
                        exc,
                    )

    def _run_meta(self, config: Any, framework: str, entropy_definition: str | None, seed: int | None) -> dict:
        meta: dict[str, Any] = {
            "run": self.run,
            "framework": framework,
            "config": to_jsonable(config) if config is not None else {},
            "seed": seed if seed is not None else _seed_from(config),
            "world_size": self.world_size,
            "entropy_definition": entropy_definition
            or f"full-vocabulary entropy of the policy being updated (pi_theta), temperature {self.temperature:g}",
            "temperature": self.temperature,
            "versions": _versions(),
            "host": platform.node(),
            "pid": os.getpid(),
            "argv": sys.argv,
        }
        if self._edges is not None:
            meta["hist_edges"] = self._edges.tolist()
            meta["vocab_size"] = self._vocab_size
        if self._reward_max is not None:
            meta["reward_max"] = self._reward_max
        return meta


def _close_quietly(watch: Watch) -> None:
    """Close a ``Watch`` nobody references (:meth:`Watch.__del__`); a strict failure has no caller to reach."""
    try:
        watch.close()
    except Exception:  # noqa: BLE001
        pass


def _fail(ref: weakref.ref[Watch], where: str, exc: BaseException) -> None:
    """:meth:`Watch.failure` of a weakly held ``Watch`` (the statistics worker's error handler)."""
    watch = ref()
    if watch is not None:
        watch.failure(where, exc)


def _what(x: Any) -> str:
    return f"a {x.dim()}-d tensor" if isinstance(x, torch.Tensor) else type(x).__name__


def _versions() -> dict[str, str]:
    out = {"entropy_watch": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("transformers", "trl", "verl", "openrlhf", "duckdb", "pyarrow"):
        m = sys.modules.get(mod)
        if m is not None:  # OpenRLHF has no __version__: its installed distribution's version then
            out[mod] = str(getattr(m, "__version__", None) or _dist_version(mod))
    return out


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):  # not installed as a distribution
        return "?"


def _seed_from(config: Any) -> int | None:
    c = to_jsonable(config) if config is not None else {}
    s = c.get("seed") if isinstance(c, dict) else None
    return int(s) if isinstance(s, int | float) and not isinstance(s, bool) else None


def warn_second_training(
    watch: Watch, first_step: int, resume: str, rename: str, *, last_step: int | None = None
) -> None:
    """Warn that a training starting from its first step (``first_step``) writes into a run an earlier training
    already holds (:attr:`Watch.earlier_last_step`, or ``last_step`` when given: a training this process ran before
    under the same ``Watch``): its steps replace those and the later ones stay, one run mixing two trainings.
    ``resume``/``rename``: how, in the adapter's trainer, to continue that training / to start a new run. The one
    wording for every adapter that can tell a resume from a fresh start (HF/TRL, verl)."""
    logging.getLogger("entropy_watch").warning(
        "entropy_watch: run %r already holds an earlier training (its last session reached step %d); this one starts "
        "from step %d, so the steps it logs replace those and the later ones stay. To continue that training, %s; to "
        "start a new run, %s",
        watch.run,
        watch.earlier_last_step if last_step is None else last_step,
        first_step,
        resume,
        rename,
    )


_warned_without_watch: set[str] = set()


def report_failure(watch: Watch | None, where: str, exc: BaseException) -> None:
    """The guard of adapter hooks that may fire before their ``Watch`` exists (verl, OpenRLHF module hooks).

    With a ``watch``: :meth:`Watch.failure`. Without one: re-raise when ``ENTROPY_WATCH_STRICT=1`` (tests), otherwise
    warn once per hook name and let training continue.
    """
    if watch is not None:
        watch.failure(where, exc)
    elif os.environ.get("ENTROPY_WATCH_STRICT", "") == "1":
        raise exc
    elif where not in _warned_without_watch:
        _warned_without_watch.add(where)
        logging.getLogger("entropy_watch").warning("entropy_watch: %s failed (%s); training continues", where, exc)
