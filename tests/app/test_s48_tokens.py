"""The token explorer as a researcher looking for forking tokens uses it: "show 25" shows 25 tokens shared over the
sampled steps (not one per step), a token copied from the table finds itself in the text filter ("␣Wait", "␊"), the
filter is a literal substring ("%", "_" are not wildcards), a right-to-left token's context is not drawn as a blank
right-to-left cell, and a run with no sampled token at all says so instead of asking to loosen filters never set."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import streamlit

from entropy_watch import metrics as M
from entropy_watch.store import RunWriter

from .test_pages import app, texts

RUN, EMPTY = "forks", "no-tokens"
TEXTS = [" Wait", "\n", "50%", "a_b", "مرحبا", "x", "y", "z", "'", "ab"]


def write_token_store(root: Path) -> Path:
    """``RUN``: tokens at steps 0, 10, 20, ten a step (one per sequence, so each context is the token alone);
    ``EMPTY``: scalars only."""
    w = RunWriter(root, RUN)
    w.write("scalars", {"step": list(range(21)), "name": [M.ENTROPY_MEAN] * 21, "value": [1.0] * 21})
    n = len(TEXTS)
    for step in (0, 10, 20):
        w.write(
            "tokens",
            {
                "step": [step] * n,
                "seq": list(range(n)),
                "pos": [0] * n,
                "token_id": list(range(n)),
                "token_text": TEXTS,
                "entropy": [1.0 + 0.1 * i for i in range(n)],
            },
        )
    w.close()
    w = RunWriter(root, EMPTY)
    w.write("scalars", {"step": list(range(5)), "name": [M.ENTROPY_MEAN] * 5, "value": [1.0] * 5})
    w.close()
    return root


@pytest.fixture(scope="module")
def token_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_token_store(tmp_path_factory.mktemp("s48tok") / "store")


def test_show_25_shows_25_tokens_shared_over_the_steps(monkeypatch: pytest.MonkeyPatch, token_store: Path) -> None:
    at = app(monkeypatch, token_store, "views/run.py", {"run": RUN})
    df = at.dataframe[-1].value
    assert len(df) == 25, "25 asked, 30 sampled: 25 shown (one per step showed 3)"
    assert sorted(Counter(df["step"]).values()) == [8, 8, 9]
    assert "25 tokens from 3 steps" in texts(at, "caption")
    at.number_input(key="tok_limit").set_value(5).run()
    assert len(at.dataframe[-1].value) == 5 and set(at.dataframe[-1].value["step"]) == {0, 10, 20}


@pytest.mark.parametrize(
    ("typed", "found"),
    [("␣Wait", {"␣Wait"}), ("␊", {"␊"}), ("%", {"50%"}), ("_", {"a_b"}), ("'", {"'"}), ("A", {"␣Wait", "a_b", "ab"})],
)
def test_the_text_filter_finds_what_the_table_shows_literally(
    monkeypatch: pytest.MonkeyPatch, token_store: Path, typed: str, found: set[str]
) -> None:
    at = app(monkeypatch, token_store, "views/run.py", {"run": RUN})
    at.text_input(key="tok_text").set_value(typed).run()
    assert set(at.dataframe[-1].value["token"]) == found


def _glide_rtl() -> re.Pattern[str]:
    """The data frame's own test of a right-to-left cell, read from the installed Streamlit's JavaScript bundle."""
    js = Path(streamlit.__file__).parent / "static" / "static" / "js"
    for f in sorted(js.glob("*.js")):
        m = re.search(r"RegExp\(`(\^\[\^A-Za-z[^`]*)`\)", f.read_text(encoding="utf-8", errors="replace"))
        if m:
            return re.compile(m.group(1))
    pytest.skip("this Streamlit's data frame has no right-to-left test")


def test_a_right_to_left_token_and_its_context_are_drawn_left_to_right(
    monkeypatch: pytest.MonkeyPatch, token_store: Path
) -> None:
    rtl = _glide_rtl()
    assert rtl.match("⟦مرحبا⟧"), "the bundle's test is the one that drew these cells right-to-left"
    at = app(monkeypatch, token_store, "views/run.py", {"run": RUN})
    at.text_input(key="tok_text").set_value("مرحبا").run()
    df = at.dataframe[-1].value
    assert len(df) == 3
    for cell in [*df["token"], *df["context"]]:
        assert not rtl.match(cell), f"{cell!r} is drawn right-aligned, right-to-left (a wide context: blank)"
        assert cell.lstrip("\u200e") in ("مرحبا", "⟦مرحبا⟧")


def test_a_run_without_sampled_tokens_says_so(monkeypatch: pytest.MonkeyPatch, token_store: Path) -> None:
    at = app(monkeypatch, token_store, "views/run.py", {"run": EMPTY})
    said = texts(at, "info")
    assert "This run has no sampled tokens" in said and "widen the step range" not in said
    at.number_input(key="tok_min").set_value(2.0).run()  # a filter set: then it is named, and loosening helps
    assert "No sampled tokens match the filters" in texts(at, "info")


def test_the_filter_reads_every_shown_spelling_back() -> None:
    from entropy_watch.app.token_explorer import ltr, searched, visible

    for token in [*TEXTS, "\t\r\n", "a\u202eb\u200b", "\x00\x1b[31m\x7f\x85", " مرحبا", "plain"]:
        assert searched(ltr(visible(token))) == token
    for typed in ["⟨U+D800⟩", "⟨U+FFFFFF⟩", "⟨U+0041⟩", "50%_.*"]:  # no surrogate reaches the query; else as typed
        assert searched(typed) == typed
