"""Act on an alert inside the training process: checkpoint, stop, or hand the alert to user code.

The spec (``attach(trainer, on_alert=...)``, ``Watch(..., on_alert=...)``) maps selectors to actions::

    on_alert={"critical": "checkpoint+stop"}                 # any critical alert
    on_alert={"critical:explosion": "stop",                  # only a critical explosion stops
              "warning:collapse,explosion": "checkpoint",    # save on a collapse/explosion warning (or worse)
              "warning": my_function}                        # every warning or critical alert to user code
    on_alert="checkpoint+stop"                               # a bare action: same as {"critical": ...}

A selector is ``SEVERITY``, ``KIND[,KIND...]`` or ``SEVERITY:KIND[,KIND...]``; a severity means that severity or
higher (default ``warning`` when only kinds are given; info alerts never act unless a rule says ``info``); ``*``
is every kind. An action is ``checkpoint``, ``stop``, both joined by ``+``, a callable ``fn(alert)``, or a list of
those. A mistake raises :class:`ActionSpecError` with one line, when ``attach``/``Watch`` is called.

What each action does:

* **checkpoint** — under a trainer, sets ``control.should_save`` at the next optimizer-step end, so the trainer saves
  ``checkpoint-<step>`` through its own mechanism (model, optimizer, scheduler, RNG, trainer state); in a plain
  ``Watch`` loop it sets ``watch.should_checkpoint`` for the loop to act on (then ``watch.checkpoint_saved(...)``);
* **stop** — under a trainer, sets ``control.should_training_stop``: the current step finishes, the trainer's own
  end-of-training path runs (a final save if configured, ``on_train_end``); in a ``Watch`` loop it sets
  ``watch.should_stop`` for the loop to poll;
* **callable** — called once per matching alert with the :class:`~entropy_watch.analysis.Alert`, one call at a time
  in the order the alerts were found, on a worker thread of the live analysis: a callback that is slow or hangs
  holds back neither training nor the analysis, its notifications and the other rules (a ``stop`` still stops). An
  exception in it, or a call that has not returned after ``callback_timeout_s``, is counted in ``hooks/errors`` (one
  warning), never raised into training.

Each action taken is an ``events`` row of kind :data:`ACTION_EVENT` with the payload ``{"rule", "alert": {key,
step, kind, severity, detector}, "actions": ["call" | "checkpoint" | "stop", ...], "did": [what happened, in
words]}``, which the app shows on the alert timeline. A trainer's checkpoint/stop is recorded when it is carried out
(at the step end), a ``Watch`` flag when the rule fires, a callable when it returns. Under
``torch.distributed`` the checkpoint/stop decision is all-reduced at each step end so every rank saves and stops
together (one two-element all-reduce per step, only when such a rule exists).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from entropy_watch import metrics as M
from entropy_watch.analysis.alert import KINDS, SEVERITIES, Alert, severity_rank
from entropy_watch.errors import EntropyWatchError

ACTION_EVENT = M.EVENT_ACTION
"""Kind of the ``events`` rows that record an action taken (the app's alert timeline shows them)."""
NAMED_ACTIONS: tuple[str, ...] = ("checkpoint", "stop")

AlertCallback = Callable[[Alert], Any]
CALLBACK_TIMEOUT_S = 10.0
"""A callback that has not returned after this long is reported (counted in ``hooks/errors``, warned once)."""
MAX_QUEUED_CALLS = 64
"""Callback calls that may wait behind a running one; more are dropped and counted."""


class ActionSpecError(EntropyWatchError, ValueError):
    """An ``on_alert`` spec that cannot be used; the message says what is wrong and what is allowed."""


@dataclass(frozen=True)
class Rule:
    """One selector and its actions."""

    selector: str
    min_severity: str
    kinds: frozenset[str] | None  # None: every kind
    named: tuple[str, ...]  # subset of NAMED_ACTIONS, in order
    callbacks: tuple[AlertCallback, ...]

    def matches(self, alert: Alert) -> bool:
        return alert.rank >= severity_rank(self.min_severity) and (self.kinds is None or alert.kind in self.kinds)


def parse_on_alert(spec: Any) -> list[Rule]:
    """Rules for an ``on_alert`` spec (see the module docstring); ``None`` gives none."""
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        spec = {"critical": spec}
    if not spec:
        raise ActionSpecError("on_alert: empty mapping (give e.g. {'critical': 'checkpoint+stop'} or leave it out)")
    return [_rule(str(sel), act) for sel, act in spec.items()]


def _rule(selector: str, action: Any) -> Rule:
    sev_part, _, kind_part = selector.strip().partition(":")
    if not kind_part and sev_part not in SEVERITIES:  # "collapse" / "collapse,explosion" / "*"
        sev_part, kind_part = "", sev_part
    severity = sev_part or "warning"
    if severity not in SEVERITIES:
        raise ActionSpecError(
            f"on_alert: {selector!r}: severity {sev_part!r} is not one of {', '.join(SEVERITIES)} "
            "(selectors: SEVERITY, KIND[,KIND] or SEVERITY:KIND[,KIND])"
        )
    kinds: frozenset[str] | None = None
    names = [k.strip() for k in kind_part.split(",") if k.strip()]
    if names and names != ["*"]:
        unknown = [k for k in names if k not in KINDS]
        if unknown:
            raise ActionSpecError(
                f"on_alert: {selector!r}: unknown alert kind {unknown[0]!r} (kinds: {', '.join(KINDS)}, or *)"
            )
        kinds = frozenset(names)
    named: list[str] = []
    callbacks: list[AlertCallback] = []
    for item in action if isinstance(action, list | tuple) else [action]:
        if callable(item):
            callbacks.append(item)
            continue
        if not isinstance(item, str) or not item.strip():
            raise ActionSpecError(
                f"on_alert: {selector!r}: action {item!r} is not 'checkpoint', 'stop', 'checkpoint+stop' or a callable"
            )
        for word in item.split("+"):
            word = word.strip()
            if word not in NAMED_ACTIONS:
                raise ActionSpecError(
                    f"on_alert: {selector!r}: unknown action {word!r} in {item!r} "
                    "(actions: checkpoint, stop, checkpoint+stop, or a callable taking the alert)"
                )
            if word not in named:
                named.append(word)
    if not named and not callbacks:
        raise ActionSpecError(f"on_alert: {selector!r} has no action")
    return Rule(selector.strip(), severity, kinds, tuple(a for a in NAMED_ACTIONS if a in named), tuple(callbacks))


def alert_ref(alert: Alert) -> dict[str, Any]:
    """What an action event says about the alert that fired it."""
    return {
        "key": alert.key,
        "step": alert.step,
        "kind": alert.kind,
        "severity": alert.severity,
        "detector": alert.detector,
    }


@dataclass
class Request:
    """A checkpoint/stop a rule asked for, waiting for the trainer's next step end."""

    rule: str
    alert: Alert
    actions: tuple[str, ...]


class ActionBook:
    """Which rules fired, and the checkpoint/stop requests not yet carried out.

    Args:
        rules: from :func:`parse_on_alert`.
        record: ``record(step, payload)`` writes one ``events`` row of kind :data:`ACTION_EVENT`.
        failure: ``failure(where, exc)`` counts a guarded failure (``Watch.failure``).
        callback_timeout_s: a callback call still running after this long is reported once (:meth:`check`).
    """

    def __init__(
        self,
        rules: list[Rule],
        record: Callable[[int, dict[str, Any]], Any],
        failure: Callable[[str, BaseException], Any],
        callback_timeout_s: float = CALLBACK_TIMEOUT_S,
    ) -> None:
        self.rules = rules
        self._record = record
        self._failure = failure
        self.callback_timeout_s = float(callback_timeout_s)
        self._calls: queue.Queue[tuple[int, Rule, Alert] | None] = queue.Queue(maxsize=MAX_QUEUED_CALLS)
        self._worker: threading.Thread | None = None
        self._running: tuple[str, float] | None = None  # (callback name, monotonic start) of the call in progress
        self._stuck: tuple[str, float] | None = None  # the running call last reported as stuck
        self._closed = False  # close() gave up waiting: a call that returns later records nothing (the run is closed)
        self._ended = False  # close() ran: the worker ends once it is idle, and no call is queued any more
        self._lock = threading.Lock()
        self._pending: list[Request] = []
        self._fired: set[tuple[str, str]] = set()  # (alert key, rule selector)
        self.trainer_bound = False  # a trainer callback carries out checkpoint/stop (see carry_out)
        self.should_stop = False
        self.should_checkpoint = False
        self.stop_alert: Alert | None = None

    @property
    def controls_training(self) -> bool:
        """Whether any rule checkpoints or stops (a trainer must then synchronise the decision across ranks)."""
        return any(r.named for r in self.rules)

    def bind_trainer(self) -> None:
        """A trainer callback will carry out checkpoint/stop at its next step end (and record the events then)."""
        self.trainer_bound = True

    def on_alerts(self, alerts: list[Alert], step: int) -> None:
        """Fire the rules for new ``alerts`` (live analyser thread); ``step`` is the newest logged step. Checkpoint/stop
        are requested at once; callbacks are queued for the worker (one event per rule and alert when they return),
        so a callback that hangs never holds back a later ``stop``."""
        self.check()
        for alert in alerts:
            for rule in self.rules:
                key = alert.key
                if not rule.matches(alert) or (key, rule.selector) in self._fired:
                    continue
                self._fired.add((key, rule.selector))
                if rule.named:
                    did = self._request(rule, alert)
                    if did:
                        self._event(step, rule.selector, alert, rule.named, did)
                if rule.callbacks:
                    self._submit(step, rule, alert)

    # ---- callbacks: one worker thread, one call at a time, in order ------------------------------------------------
    def _submit(self, step: int, rule: Rule, alert: Alert) -> None:
        with self._lock:
            if self._ended:  # the run is closed: training is over, nothing more is called
                return
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="entropy_watch-on_alert", daemon=True)
                self._worker.start()
        try:
            self._calls.put_nowait((step, rule, alert))
        except queue.Full:
            names = ", ".join(_name(fn) for fn in rule.callbacks)
            self._guard(
                f"on_alert callback {names}",
                RuntimeError(f"not called for alert {alert.key}: {MAX_QUEUED_CALLS} calls wait behind one that hangs"),
            )

    def _work(self) -> None:
        """The worker: one call at a time until :meth:`close`, whose ``None`` (or, behind a call that hung past it, the
        queue found empty) ends it; left running, each closed run of a sweep kept a thread and its whole ``Watch``."""
        while True:
            item = self._calls.get()
            if item is None:
                self._calls.task_done()
                return
            step, rule, alert = item
            try:
                if self._closed:  # queued behind a call that hung past close: training is over, not made
                    continue
                did = [self._call(fn, alert) for fn in rule.callbacks]
                if not self._closed:
                    self._event(step, rule.selector, alert, ("call",), did)
            except Exception as exc:  # noqa: BLE001 - recording failed: counted, the worker goes on
                self._guard(f"on_alert rule {rule.selector!r}", exc)
            finally:
                self._calls.task_done()
            if self._ended and self._calls.empty():
                return

    def _call(self, fn: AlertCallback, alert: Alert) -> str:
        name = _name(fn)
        with self._lock:
            self._running = (name, time.monotonic())
        try:
            fn(alert)
            return f"called {name}(alert)"
        except Exception as exc:  # noqa: BLE001 - user code must not break training
            self._guard(f"on_alert callback {name}", exc)
            return f"called {name}(alert): it raised {type(exc).__name__}"
        finally:
            with self._lock:
                self._running = None

    def _guard(self, where: str, exc: BaseException) -> None:
        if self._closed:  # a call left running at close that fails later: the run is closed, its counters too
            return
        try:
            self._failure(where, exc)
        except Exception:  # noqa: BLE001 - strict=True re-raises: the Live hands it to the training thread
            pass

    def check(self) -> bool:
        """Report a callback call running longer than ``callback_timeout_s`` (once per call: counted in
        ``hooks/errors``, warned once); True while one is. Free when none runs (the training thread asks at every
        logged value): no lock is taken then."""
        if self._running is None:  # read without the lock: a call that starts meanwhile is seen at the next ask
            return False
        with self._lock:
            running = self._running
            if running is None or time.monotonic() - running[1] < self.callback_timeout_s:
                return False
            first, self._stuck = running != self._stuck, running
        if first:
            self._say_stuck(running, "has not returned after {:.0f} s; training, the analysis and other rules go on")
        return True

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until the queued callback calls returned, at most ``timeout_s`` and not at all behind a call that is
        reported stuck (:meth:`check`). True when none is left."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while self._calls.unfinished_tasks:
            if self.check() or time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """At the end of the run: wait for queued callback calls (bounded, see :meth:`drain`); a call still running
        then is reported (counted, warned once) and left to its daemon thread, which ends when it returns. The worker
        thread ends either way: nothing is called after the run closed."""
        try:
            return self._close(timeout_s)
        finally:
            with self._lock:
                self._ended = True
                worker = self._worker
            if worker is not None:
                try:
                    self._calls.put_nowait(None)  # wakes an idle worker; a busy one ends once its queue is empty
                except queue.Full:
                    pass

    def _close(self, timeout_s: float) -> bool:
        if self.drain(timeout_s):
            return True
        with self._lock:
            running = self._running
            first = running is not None and running != self._stuck
            self._stuck = running or self._stuck
            waiting = self._calls.unfinished_tasks - (running is not None)
        if running is not None and (first or waiting > 0):
            also = f"; {waiting} later call(s) behind it are not made" if waiting > 0 else ""
            self._say_stuck(running, "was still running {:.0f} s after it was called when the run closed" + also)
        elif running is None and waiting > 0:
            self._guard("on_alert callbacks", TimeoutError(f"{waiting} call(s) not made: the run closed first"))
        self._closed = True
        return False

    def _say_stuck(self, running: tuple[str, float], what: str) -> None:
        name, t0 = running
        self._guard(f"on_alert callback {name}", TimeoutError(what.format(time.monotonic() - t0)))

    def _request(self, rule: Rule, alert: Alert) -> list[str]:
        with self._lock:
            if "stop" in rule.named and not self.should_stop:
                self.should_stop, self.stop_alert = True, alert
            if "checkpoint" in rule.named:
                self.should_checkpoint = True
            if self.trainer_bound:
                self._pending.append(Request(rule.selector, alert, rule.named))
                return []  # recorded when carried out
        return [f"set watch.should_{a} = True" for a in rule.named]

    def take(self) -> list[Request]:
        """The pending trainer requests, oldest first (and forget them)."""
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def checkpoint_saved(self, step: int, where: str | None = None) -> None:
        """A ``Watch`` loop saved the requested checkpoint: clear the flag and record it."""
        with self._lock:
            was, self.should_checkpoint = self.should_checkpoint, False
        if was:
            did = f"checkpoint saved at step {step}" + (f" to {where}" if where else "")
            self._record(step, {"rule": None, "alert": None, "actions": ["checkpoint"], "did": [did]})

    def carry_out(self, args: Any, state: Any, control: Any) -> None:
        """Carry out pending checkpoint/stop requests on an HF ``TrainerControl`` (at ``on_step_end``): set
        ``control.should_save`` / ``control.should_training_stop`` and record one action event per request.
        Under ``torch.distributed`` the decision is all-reduced first so every rank acts at the same step."""
        if not self.controls_training:
            return
        requests = self.take()
        save = any("checkpoint" in r.actions for r in requests)
        stop = any("stop" in r.actions for r in requests)
        save, stop = _agree(save, stop, args)
        if not (save or stop):
            return
        step = int(state.global_step)
        if save:
            control.should_save = True
        if stop:
            control.should_training_stop = True
        out_dir = getattr(args, "output_dir", None) or "."
        asked: list[Request | None] = list(requests) or [None]  # None: another rank asked
        for r in asked:
            acts = r.actions if r is not None else tuple(a for a, on in (("checkpoint", save), ("stop", stop)) if on)
            did = []
            if "checkpoint" in acts:
                did.append(f"control.should_save = True: the trainer saves {out_dir}/checkpoint-{step}")
            if "stop" in acts:
                did.append(f"control.should_training_stop = True: training ends after step {step}")
            if r is None:
                self._record(step, {"rule": None, "alert": None, "actions": list(acts), "did": did})
            else:
                self._event(step, r.rule, r.alert, r.actions, did)

    def _event(self, step: int, selector: str | None, alert: Alert, actions: tuple[str, ...], did: list[str]) -> None:
        payload = {"rule": selector, "alert": alert_ref(alert), "actions": list(actions), "did": did}
        self._record(step, payload)


def _name(fn: AlertCallback) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _agree(save: bool, stop: bool, args: Any) -> tuple[bool, bool]:
    """Any rank's request holds for all ranks (one MAX all-reduce of two flags; a no-op in one process)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is the hooks' tier
        return save, stop
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return save, stop
    import torch

    device = getattr(args, "device", None)
    if dist.get_backend() != "nccl":
        device = "cpu"
    flags = torch.tensor([float(save), float(stop)], device=device or "cpu")
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return bool(flags[0].item() > 0), bool(flags[1].item() > 0)
