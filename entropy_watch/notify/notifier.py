"""``Notifier``: alerts and recoveries in, policy-checked Slack / Discord / JSON POSTs out, in the background.

    from entropy_watch.notify import Notifier

    n = Notifier.build(["env:EW_SLACK_URL", "json+https://ops.example/hook"], app_url="http://127.0.0.1:8501")
    n.alert("grpo-s0", alert)        # never blocks: gate (notify.policy) -> payload (notify.payloads) -> queue
    n.close()                        # at the end: sends what is queued (bounded wait)

Used by the in-process live analyser (``entropy_watch.hooks.live``) and by ``entropy-watch watch --notify``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from typing import Any

from entropy_watch.analysis.alert import Alert
from entropy_watch.jsonable import to_jsonable
from entropy_watch.notify.delivery import Delivery
from entropy_watch.notify.digest import Digest, DigestPolicy
from entropy_watch.notify.payloads import Eta, Notice, app_link, render
from entropy_watch.notify.policy import Gate, NotifyPolicy
from entropy_watch.notify.targets import NotifyConfigError, Target, is_http_url, parse_targets

APP_URL_ENV = "ENTROPY_WATCH_APP_URL"
"""Environment variable with the app's base URL (e.g. ``http://127.0.0.1:8501``), used when none is passed."""


def check_app_url(app_url: Any, where: str = "app_url") -> str | None:
    """``app_url`` when it is the app's address (``http(s)://host[:port][/path]``) or None; anything else raises
    :class:`NotifyConfigError` with one line, when the notifier is built (it made every message fail: a link
    that is no URL, or a crash at the first alert)."""
    if app_url is None:
        return None
    if not is_http_url(app_url):
        shown = f"a value of type {type(app_url).__name__}"
        if isinstance(app_url, str):
            shown = "a value without http(s)://host"
        raise NotifyConfigError(f"{where}: {shown} is not the app's address (give e.g. http://127.0.0.1:8501)")
    return app_url


def _num(x: Any, default: float = float("inf")) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else default


TARGETS = {"collapse": "the floor", "explosion": "the critical line"}
"""What an ETA is to, by alert kind, where the evidence does not name it (``eta_target``)."""


def eta_of(alert: Alert) -> Eta | None:
    """The ETA an alert's evidence carries (absolute steps and the interval's coverage, what it is to, and whether
    the quoted entropy is past it already), or None."""
    ev = alert.evidence or {}
    med = ev.get("eta_step_median")
    if not isinstance(med, int | float):
        return None
    target = ev.get("eta_target") if isinstance(ev.get("eta_target"), str) else TARGETS.get(alert.kind, "the floor")
    if "eta_step_lo" in ev or "eta_step_hi" in ev or "eta_interval" in ev:
        lo, hi = _num(ev.get("eta_step_lo")), _num(ev.get("eta_step_hi"))
        now = ev.get("eta_now") is True
        return Eta(float(med), lo, hi, _num(ev.get("eta_interval"), 0.8), target, now, float(alert.step))
    at = _num(ev.get("step"), float("nan"))  # older evidence: the interval relative to the evaluation step
    return Eta(
        float(med), at + _num(ev.get("eta_lo")), at + _num(ev.get("eta_hi")), 0.9, at=at if math.isfinite(at) else None
    )


def eta_from_outlook(outlook: Any) -> Eta | None:
    """The ETA of a verdict's forecast (``Outlook`` or its dict), or None when it is not on course to a level."""
    f = outlook.to_dict() if hasattr(outlook, "to_dict") else outlook
    if not isinstance(f, dict) or not isinstance(f.get("eta_step"), int | float):
        return None
    lo, hi = _num(f.get("eta_lo_step")), _num(f.get("eta_hi_step"))
    target = f.get("target_label") if isinstance(f.get("target_label"), str) else "the floor"
    now = f.get("reached") is True or f.get("ahead") is True  # Outlook.now, from its JSON form
    at = f.get("fitted_at") if isinstance(f.get("fitted_at"), int | float) else None
    return Eta(float(f["eta_step"]), lo, hi, _num(f.get("interval"), 0.8), target, now, at)


def notice_for(run: str, alert: Alert, *, verdict: Any = None, app_url: str | None = None) -> Notice:
    """The notice for one alert. With the run's ``verdict`` (``Verdict`` or its dict) that names this alert's kind
    and severity, the summary is the verdict's headline and the ETA its forecast's; the whole verdict goes into the
    JSON body."""
    d = alert.to_dict()
    key = alert.key
    v = to_jsonable(verdict.to_dict() if hasattr(verdict, "to_dict") else verdict) if verdict is not None else None
    v = v if isinstance(v, dict) else None
    same = v is not None and v.get("kind") == alert.kind and v.get("health") == alert.severity
    headline = v.get("headline") if same and v is not None else None
    eta = eta_from_outlook(v.get("forecast")) if same and v is not None else None
    return Notice(
        event="alert",
        run=run,
        kind=alert.kind,
        severity=alert.severity,
        step=int(alert.step),
        summary=headline if isinstance(headline, str) and headline else alert.message,
        key=key,
        detector=alert.detector,
        eta=eta or eta_of(alert),
        action=alert.actions[0] if alert.actions else None,
        app_link=app_link(app_url, run),
        alert=to_jsonable(d),
        verdict=v,
    )


def recovery_notice(
    run: str, kind: str, step: int, summary: str, *, key: str = "", app_url: str | None = None
) -> Notice:
    """The one message sent when an alerted problem clears."""
    return Notice(
        event="recovery",
        run=run,
        kind=kind,
        severity="info",
        step=int(step),
        summary=summary,
        key=key,
        app_link=app_link(app_url, run),
    )


class Notifier:
    """Targets + policy + background delivery.

    Args:
        targets: where to send (see :mod:`entropy_watch.notify.targets`).
        policy: when to send (:class:`NotifyPolicy`; default: warning and up, 1 h cooldown, 10 per hour).
        app_url: the app's base URL for links (default ``$ENTROPY_WATCH_APP_URL``; none: no link).
        on_error: called with the failure count after each undelivered message (the hooks record
            ``hooks/notify_errors``).
        delivery: the :class:`Delivery` to use (tests); default one built with ``delivery_kwargs`` (``timeout_s``,
            ``retries``, ``backoff_s``, ``on_failure``: how a failure is said, default the training process' wording).
        digest: a store-wide budget (:class:`~entropy_watch.notify.digest.DigestPolicy`): past its ``max_runs`` runs,
            what the policy admits is folded into digests (``watch --notify``; default None: every run on its own,
            the training process' one run). See :meth:`use_digest`.
    """

    def __init__(
        self,
        targets: Iterable[Target],
        *,
        policy: NotifyPolicy | None = None,
        app_url: str | None = None,
        on_error: Callable[[int], Any] | None = None,
        delivery: Delivery | None = None,
        digest: DigestPolicy | None = None,
        **delivery_kwargs: Any,
    ) -> None:
        self._targets = list(targets)
        self.gate = Gate(policy)
        if app_url is not None:
            self.app_url = check_app_url(app_url)
        else:
            self.app_url = check_app_url(os.environ.get(APP_URL_ENV) or None, APP_URL_ENV)
        self.delivery = delivery or Delivery(on_error=on_error, **delivery_kwargs)
        if delivery is not None and on_error is not None:
            self.delivery.on_error = on_error
        self.sent: list[Notice] = []  # what was handed to delivery, in order (small: the gate caps it)
        self.digest: Digest | None = None
        if digest is not None:
            self.use_digest(digest)

    @classmethod
    def build(cls, notify: str | Target | Iterable[str | Target] | Notifier | None, **kwargs: Any) -> Notifier | None:
        """A notifier for ``notify`` (specs, targets or a ready ``Notifier``), or None when there is nothing to
        notify. Raises :class:`~entropy_watch.notify.targets.NotifyConfigError` on a bad spec (before training)."""
        if notify is None or isinstance(notify, Notifier):
            return notify
        targets = parse_targets(notify)
        return cls(targets, **kwargs) if targets else None

    @property
    def targets(self) -> list[Target]:
        return list(self._targets)

    @property
    def secrets(self) -> list[str]:
        """The webhook URLs, for :func:`~entropy_watch.notify.targets.scrub` (never print them)."""
        return [t.url for t in self._targets]

    @property
    def errors(self) -> int:
        """Messages that were not delivered (after retries) or were dropped."""
        return self.delivery.errors

    def alert(self, run: str, alert: Alert, verdict: Any = None) -> Notice | None:
        """Send ``alert`` if the policy admits it; returns the notice sent (None: held back)."""
        return self.send(notice_for(run, alert, verdict=verdict, app_url=self.app_url))

    def recovery(self, run: str, kind: str, step: int, summary: str, key: str = "") -> Notice | None:
        """Send the recovery message for (run, kind) if an alert for it was sent before."""
        return self.send(recovery_notice(run, kind, step, summary, key=key, app_url=self.app_url))

    def prime(self, run: str, verdict: Any) -> None:
        """What ``run``'s ``verdict`` (of the history an earlier process analysed) still holds was sent by that
        process: a later escalation is one, and its recovery is sent (:meth:`Gate.prime`)."""
        for a in getattr(verdict, "standing_alerts", ()):
            self.gate.prime(run, a.kind, a.severity)

    def use_digest(self, policy: DigestPolicy, **kwargs: Any) -> Digest:
        """Fold what the policy admits for runs past ``policy.max_runs`` into digests from now on (``kwargs``:
        :class:`~entropy_watch.notify.digest.Digest`'s ``clock`` and ``timer``, for tests); returns the digest."""
        self.digest = Digest(policy, self._post, app_url=self.app_url, **kwargs)
        return self.digest

    def send(self, notice: Notice) -> Notice | None:
        """Gate ``notice`` and queue it for every target (or fold it into the next digest); never blocks. Returns
        the notice admitted (a folded one too: it is said in the digest), None when held back."""
        admitted = self.gate.admit(notice)
        if admitted is None:
            return None
        if self.digest is None or not self.digest.fold(admitted):
            self._post(admitted)
        return admitted

    def _post(self, notice: Notice) -> None:
        for t in self._targets:
            self.delivery.submit(t, render(t.kind, notice))
        self.sent.append(notice)

    def close(self, timeout_s: float | None = 10.0) -> bool:
        """Send the pending digest, then deliver what is queued, waiting at most ``timeout_s`` (None: until it is
        handled, retries included)."""
        if self.digest is not None:
            self.digest.close()
        return self.delivery.close(timeout_s)

    def __repr__(self) -> str:
        return f"Notifier([{', '.join(t.label for t in self._targets)}])"
