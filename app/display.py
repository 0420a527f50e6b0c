"""Display-side helpers of the app: the step window a user picked, the smoothing users know from TensorBoard and
W&B, how numbers and H/H_ref ratios read, and data text made literal for Streamlit's markdown (:func:`md`). Pure (no
Streamlit); the store's reads already arrive downsampled (``entropy_watch.store.reads``), this only reshapes them for
the eye."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from entropy_watch.analysis.alert import fmt_nats as alert_fmt_nats
from entropy_watch.analysis.alert import fmt_ratio as alert_fmt_ratio
from entropy_watch.store.reads import BIG


@dataclass(frozen=True)
class Window:
    """The step range the user picked: ``lo..hi`` inclusive (None = open end), or the ``last`` N steps of a run."""

    lo: int | None = None
    hi: int | None = None
    last: int | None = None

    def bounds(self, last_step: int | None) -> tuple[int, int]:
        """Concrete inclusive bounds for a run whose newest step is ``last_step``."""
        if self.last is not None and last_step is not None:
            return max(0, int(last_step) - int(self.last) + 1), BIG
        return (int(self.lo) if self.lo is not None else -BIG), (int(self.hi) if self.hi is not None else BIG)

    def x_range(
        self, last_step: int | None, ahead: float | None = None, eta: float | None = None
    ) -> tuple[float, float] | None:
        """The step axis range every chart of a run shows: None for all steps (Plotly's autorange, which also spans
        a forecast and its ETA); the last N steps up to ``last_step``; a step range cut at ``last_step`` (a range past
        the run's end would squeeze the data into a corner). A window that reaches ``last_step`` stretches right
        over what lies ahead: to ``ahead`` (where the drawn forecast ends) by at most half its width (the window
        stays two thirds of the chart), and always past ``eta`` (the step the verdict's forecast reaches its target,
        :func:`eta_reach`), so the ETA line is never off the chart; a step range that ends earlier is as asked."""
        if last_step is None or (self.last is None and self.lo is None and self.hi is None):
            return None
        lo, hi = self.bounds(last_step)
        lo, hi = max(lo, 0), min(hi, int(last_step))
        if hi <= lo:  # a range that starts past the run's end: the range as asked (the charts are empty)
            return float(lo), float(max(self.hi if self.hi is not None else lo, lo + 1))
        right = float(hi)
        if hi >= int(last_step):
            width = int(self.last) if self.last is not None else hi - lo
            if ahead is not None and math.isfinite(ahead) and ahead > hi:
                right = min(ahead, hi + width / 2)
            right = eta_reach(lo, right, eta)
        return float(lo), right


ETA_PAD = 0.03
"""Share of the step axis left right of a forecast's ETA line, so the line is not drawn on the plot's edge."""


def eta_reach(lo: float, hi: float, eta: float | None) -> float:
    """The right end of a step axis from ``lo`` to ``hi`` that shows the ETA line at step ``eta`` (None: ``hi``)."""
    if eta is None or not math.isfinite(eta):
        return float(hi)
    return float(max(hi, eta + ETA_PAD * max(eta - lo, 1.0)))


_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
WORD_JOINER = "\u2060"
SHORTCODE_COLON = re.compile(r":(?=//|[\w+\-/]+[:\[])")  # ":smile:", ":red[", ":material/x:", "http://"
EMAIL_AT = re.compile(r"@(?=[\w\-]+\.)")  # GFM's bare e-mail link: "me@evil.example"
_WWW = re.compile(r"(www)(?=\\\.)", re.IGNORECASE)


def md(text: object) -> str:
    """``text`` (run, metric and column names, notes, alert messages, paths: anything from data) made literal for
    Streamlit's markdown (``st.markdown``, ``st.caption``, ``st.title``, ``st.error``…, expander and page-link labels):
    no links, emphasis, headings, HTML, ``$…$`` maths, ``:emoji:`` shortcodes or ``:red[…]`` directives.

    Every ASCII punctuation character is backslash-escaped (CommonMark renders an escaped one as itself), and an
    invisible word joiner (U+2060) breaks what Streamlit and GFM find in the text *after* the escapes are resolved,
    where escapes alone do not stop them: a ``:`` that opens a shortcode, a directive or ``http://``, an ``@`` before
    a domain, ``www.``. Only there: a run name such as ``exp:1`` or ``run@host`` copied from the page is the name."""
    raw = EMAIL_AT.sub("@" + WORD_JOINER, SHORTCODE_COLON.sub(":" + WORD_JOINER, str(text)))
    return _WWW.sub(r"\1" + WORD_JOINER, _MD_PUNCT.sub(r"\\\1", raw))


NAME_CHARS = 46
NAME_HEAD = 14
MAX_NAME_CHARS = 200
"""A name from a link quoted at most this long (a run name is at most 200 bytes): a longer one is no run's, and is
elided (:func:`short_name`) rather than filling the page."""


def short_name(name: str, limit: int = NAME_CHARS) -> str:
    """``name`` in at most ``limit`` characters, its middle elided: its first :data:`NAME_HEAD`, "…", then its end
    (run names share long ``owner__repo__`` prefixes; what tells them apart is at the end)."""
    if len(name) <= limit:
        return name
    return f"{name[:NAME_HEAD]}…{name[-(limit - NAME_HEAD - 1) :]}"


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average with ``weight`` in [0, 1) (0 = off), skipping
    non-finite values (they stay NaN). ``values`` (n,) -> (n,)."""
    v = np.asarray(values, dtype=np.float64)
    if weight <= 0 or v.size == 0:
        return v
    out = np.full(v.shape, np.nan)
    last, k = 0.0, 0
    for i, x in enumerate(v):
        if not math.isfinite(x):
            continue
        last = last * weight + (1.0 - weight) * x
        k += 1
        out[i] = last / (1.0 - weight**k)
    return out


def fmt_nats(x: float | None) -> str:
    """Entropy in nats as the verdict's headline writes it (``entropy_watch.analysis.alert.fmt_nats``: "0.00031",
    "0.06", "4.05"); "—" when missing."""
    return "—" if x is None or not math.isfinite(x) else alert_fmt_nats(x)


def fmt_ratio(r: float | None) -> str:
    """H/H_ref as the headline writes it: a share ("13%", "0.04%") below two-fold, a multiple ("2.4×") from there
    (``entropy_watch.analysis.verdict`` words the ratio this way); "—" when missing."""
    if r is None or not math.isfinite(r):
        return "—"
    return alert_fmt_ratio(r)


HEALTH_TONES: dict[str, str] = {
    "ok": "#d5eed8",
    "info": "#d6e4f5",
    "warning": "#fde0bf",
    "critical": "#f6c6c6",
}
"""Cell colour of each verdict health (green, blue, orange, red); none for too-short or no verdict."""


def verdict_tone(health: str | None, kind: str | None, unsettled: bool = False) -> tuple[str, str]:
    """``(word, colour)`` that goes beside a run's H/H_ref: the verdict's own kind ("collapse", "saturation", ...;
    "spiking" where its explosion is unsettled, its median back down while its points still explode) and its
    health's colour (:data:`HEALTH_TONES`); no word for ok, ("", "") without a verdict. Taken from the verdict, never
    from thresholds on the ratio: a band of its own would be a second verdict (a warning collapse at 45% of H_ref
    read "normal" in green, a benign saturation at 2% "collapsed" in red)."""
    if health is None or health not in HEALTH_TONES:
        return "", ""
    if unsettled:
        return "spiking", HEALTH_TONES[health]
    return ("" if health == "ok" else (kind or "").replace("_", " ")), HEALTH_TONES[health]
