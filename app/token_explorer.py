"""The Run page's explorer of sampled tokens (the ``tokens`` table): filters by step range, minimum entropy and text,
one row per token with its context, read on demand (``RunReader.top_tokens``), never tailed.

Token text is data: it is shown in a data frame (never a markup renderer), and what a cell would not show is made
visible (:func:`visible`): a whitespace token such as ``" "`` or ``"\\n"`` — among the most common tokens a model
samples — would otherwise be a blank cell, indistinguishable from another blank, and a bidirectional control would
reorder the cell's text. A cell whose first strong character is right-to-left (an Arabic or Hebrew token, or a
context starting with one) is led by a left-to-right mark (:func:`ltr`): the table draws such a cell right-aligned and
right-to-left, so a wide context cell showed blank (its text drawn past the visible edge) and "␣مرحبا" read "مرحبا␣".
The text filter reads the table's spellings back (:func:`searched`): "␣the" or "␊" copied from the table finds " the"
or a newline.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import streamlit as st

from entropy_watch.app import data
from entropy_watch.app.display import md
from entropy_watch.store.reads import BIG
from entropy_watch.textsafe import FORMAT_RE

SPACE = "\u2423"  # ␣ OPEN BOX: a space, where a token's spaces tell tokens apart (" the" vs "the")
_CONTROL = {c: chr(0x2400 + c) for c in range(0x20)} | {0x7F: "\u2421"}  # ␀…␟, ␡: Unicode's Control Pictures
_PICTURES = {ord(v): chr(k) for k, v in _CONTROL.items()} | {ord(SPACE): " "}
_CODE_RE = re.compile(r"⟨U\+([0-9A-Fa-f]{4,6})⟩")
LRM = "\u200e"  # LEFT-TO-RIGHT MARK: invisible, a strong left-to-right character
_RTL_CELL = re.compile(
    "^[^A-Za-z\xc0-\xd6\xd8-\xf6\xf8-\u02b8\u0300-\u0590\u0800-\u1fff\u200e\u2c00-\ufb1c\ufe00-\ufe6f\ufefd-\uffff]*"
    "[\u0591-\u07ff\ufb1d-\ufdfd\ufe70-\ufefc]"
)
"""A cell the table draws right-to-left: glide-data-grid's own test (``direction``, Streamlit 1.67's data frame), no
left-to-right letter before the first right-to-left one."""


def visible(text: str, spaces: bool = True) -> str:
    """``text`` with what a table cell would not show drawn visibly: control characters (newline, tab, …) as their
    Control Picture (``"\\n"`` -> "␊"), the characters that move or hide text (``entropy_watch.textsafe``: zero-width,
    bidirectional, C1) as ``⟨U+202E⟩``, and with ``spaces`` every space as "␣" (the token column; the context column
    keeps its spaces, it reads as text)."""
    out = text.translate(_CONTROL | ({0x20: SPACE} if spaces else {}))
    return FORMAT_RE.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", out)


def ltr(text: str) -> str:
    """``text`` led by a left-to-right mark where the table would draw it right-to-left (:data:`_RTL_CELL`), else
    unchanged (see the module docstring)."""
    return LRM + text if _RTL_CELL.match(text) else text


def searched(text: str) -> str:
    """The token text the filter ``text`` stands for: the table's spellings read back (:func:`visible`'s Control
    Pictures and "␣" as the characters they show, ``⟨U+202E⟩`` as U+202E) and a left-to-right mark (:func:`ltr`)
    dropped, so a token copied from the table finds itself; plain text is unchanged (a literal substring)."""
    return _CODE_RE.sub(_code, text.replace(LRM, "")).translate(_PICTURES)


def _code(m: re.Match[str]) -> str:
    """The character a ``⟨U+XXXX⟩`` of :func:`visible` stands for; any other (a surrogate, past U+10FFFF) as typed."""
    ch = chr(int(m.group(1), 16)) if int(m.group(1), 16) <= 0x10FFFF else ""
    return ch if ch and FORMAT_RE.fullmatch(ch) else m.group()


def shown_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The explorer's rows as the table shows them: the token and its context made :func:`visible`, left-to-right."""
    out = df.copy()
    out["token"] = [ltr(visible(str(t))) for t in out["token"]]
    out["context"] = [ltr(visible(str(c), spaces=False)) for c in out["context"]]
    return out


def step_bounds(lo: float | None, hi: float | None) -> tuple[int, int]:
    """The explorer's step range from its two inputs: an empty "to step" means up to the newest step (a live run's
    newest too, and any run's when the run picker changes), an empty "from step" from the first."""
    a = int(lo) if lo is not None else 0
    b = int(hi) if hi is not None else BIG
    return min(a, b), max(a, b)


@st.fragment
def tokens_section(root: str, run: str, last_step: int, was_imported: bool) -> None:
    """On-demand explorer of the sampled ``tokens`` table (filters rerun only this section); an imported run (scalar
    metrics only) gets one line instead of filters with nothing to filter. ``last_step``: the run's newest step when
    the page was drawn (only named in the "to step" hint: the range itself is open-ended)."""
    if was_imported:
        st.info("No sampled tokens: imported logs carry only scalar metrics.")
        return
    c = st.columns([1.2, 1.2, 1.2, 2, 1, 1.8])
    lo = c[0].number_input("from step", min_value=0, value=0, step=10, key="tok_lo")
    hi = c[1].number_input(
        "to step",
        min_value=0,
        value=None,
        step=10,
        key="tok_hi",
        placeholder="newest",
        help=f"Empty: up to the run's newest step ({last_step:,} when the page was drawn, later ones as they come).",
    )
    min_h = c[2].number_input("min entropy (nats)", min_value=0.0, value=0.0, step=0.1, key="tok_min")
    text = c[3].text_input(
        "token contains",
        key="tok_text",
        placeholder="e.g. wait",
        help="Case-insensitive, literal (no wildcards or patterns), in the token's text; the table's ␣ ␊ ␉ find a "
        "space, newline, tab; a token stored without text reads #id (e.g. #1234).",
    )
    limit = c[4].number_input("show", min_value=5, max_value=500, value=25, step=5, key="tok_limit")
    mode = c[5].radio(
        "order",
        ["spread over steps", "highest entropy"],
        key="tok_mode",
        help="spread: the tokens asked for shared evenly over the steps (each step's highest-entropy ones), in "
        "step order; highest entropy: the highest of the whole range",
    )
    steps = step_bounds(lo, hi)
    tbl = data.tokens(root, run, steps, float(min_h), searched(text), int(limit), mode == "spread over steps")
    if tbl.num_rows == 0:
        st.info(no_tokens_text(steps, float(min_h), text))
        return
    df = shown_rows(tbl.to_pandas())
    st.dataframe(
        df,
        hide_index=True,
        key="tokens_df",
        column_order=[
            "step",
            "token",
            "token_id",
            "entropy",
            "logp",
            "advantage",
            "clipped",
            "rank",
            "seq",
            "pos",
            "context",
        ],
        column_config={
            "step": st.column_config.NumberColumn(format="%d", pinned=True),
            "token": st.column_config.TextColumn(
                "token",
                help="the token's text (␣ a space, ␊ a newline, ␉ a tab), or #id without a tokenizer",
            ),
            "token_id": st.column_config.NumberColumn("id", format="%d"),
            "entropy": st.column_config.NumberColumn("entropy (nats)", format="%.3f"),
            "logp": st.column_config.NumberColumn("log p (nats)", format="%.3f"),
            "advantage": st.column_config.NumberColumn(format="%.3f"),
            "context": st.column_config.TextColumn("context (token in ⟦ ⟧, … = unsampled)", width="large"),
        },
    )
    seen = np.unique(df["step"].to_numpy())
    st.caption(
        f"{len(df)} tokens from {seen.size} step{'s' if seen.size != 1 else ''} "
        f"({int(seen.min()):,}–{int(seen.max()):,})."
    )


def no_tokens_text(steps: tuple[int, int], min_entropy: float, text: str) -> str:
    """What the token explorer says when no sampled token passes its filters: each filter that is set (the text one
    quoted as data), and which to loosen; markdown, the filter text made literal. With no filter set (every step,
    any entropy, any text) there is nothing to loosen: the run has no sampled token (yet), and it says so."""
    if steps[0] <= 0 and steps[1] >= BIG and min_entropy <= 0 and not text:
        return (
            "This run has no sampled tokens (yet). Runs recorded with `entropy_watch.hooks.Watch` keep the "
            "highest-entropy tokens of every 10th step (`sample_tokens`, 0: none); a hook or an import that logs "
            "only scalars keeps none."
        )
    what = [f"in steps {steps[0]:,}–{steps[1]:,}" if steps[1] < BIG else f"from step {steps[0]:,} on"]
    if min_entropy > 0:
        what.append(f"with entropy ≥ {min_entropy:g} nats")
    loosen = "widen the step range or lower the minimum entropy"
    if text:
        what.append(f"containing “{md(text)}”")
        loosen = "clear or change the text filter, " + loosen
    return (
        f"No sampled tokens match the filters ({', '.join(what)}). Runs recorded with `entropy_watch.hooks.Watch` "
        f"keep the highest-entropy tokens of every 10th step (`sample_tokens`); {loosen}."
    )
