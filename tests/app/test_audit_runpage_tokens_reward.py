"""Defects a browser audit of the Run page's panels found: the token explorer's "to step" kept the first run's last
step for the whole session (a run picked next, or a live run's new steps, were cut at it), whitespace tokens showed
as blank cells, and the reward-vs-entropy chart drew the entropy–reward law the detector fitted on one reward series
over the points of another (eval/pass@1 points, the law of reward/mean)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.app.run_tabs import TABS
from entropy_watch.store import RunWriter, Store

from .conftest import decode, figures, run_watch_loop
from .test_pages import app

SHORT, LONG = "tok-short", "tok-long"


@pytest.fixture(scope="module")
def two_token_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Watch runs with sampled tokens every 10th step: 12 steps (tokens at 0, 10) and 35 (0, 10, 20, 30)."""
    root = tmp_path_factory.mktemp("tok") / "store"
    run_watch_loop(root, SHORT, steps=12)
    run_watch_loop(root, LONG, steps=35)
    return root


def test_token_range_follows_the_run_picked(monkeypatch: pytest.MonkeyPatch, two_token_runs: Path) -> None:
    at = app(monkeypatch, two_token_runs, "views/run.py", {"run": SHORT})
    assert sorted(set(at.dataframe[-1].value["step"])) == [0, 10]
    at.selectbox(key="run_select").set_value(LONG).run()
    assert not at.exception, [e.message for e in at.exception]
    sampled = sorted(set(Store(two_token_runs).table(LONG, "tokens").column("step").to_pylist()))
    assert sampled == [0, 10, 20, 30]
    assert sorted(set(at.dataframe[-1].value["step"])) == sampled, "the second run's tokens are cut at the first's end"


def test_token_range_reaches_steps_logged_after_the_page_was_drawn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A live run: the explorer (its own fragment) reruns with the page's first last step; new steps must show."""
    root = tmp_path / "store"
    w = RunWriter(root, "live")
    for s in range(3):
        w.write("scalars", {"step": [s], "name": [M.ENTROPY_MEAN], "value": [1.0]})
    w.write("tokens", {"step": [0], "seq": [0], "pos": [0], "token_id": [1], "token_text": ["early"], "entropy": [1.0]})
    at = app(monkeypatch, root, "views/run.py", {"run": "live"})
    assert list(at.dataframe[-1].value["token"]) == ["early"]
    w.write("tokens", {"step": [50], "seq": [0], "pos": [0], "token_id": [2], "token_text": ["late"], "entropy": [2.0]})
    w.close()
    at.radio(key="tok_mode").set_value("highest entropy").run()  # a filter change reruns the explorer alone
    assert list(at.dataframe[-1].value["token"]) == ["late", "early"]


class Tok:
    """A tokenizer whose pieces are whitespace, markup and a bidi override: what a real vocabulary holds."""

    pieces = (" ", "\n", "\t", " the", "<|im_start|>", "[/INST]", "a\u202eb", "<b>x</b>")

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


@pytest.fixture(scope="module")
def text_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from entropy_watch.hooks import Watch

    root = tmp_path_factory.mktemp("text") / "store"
    v = len(Tok.pieces)
    ids = torch.arange(v).repeat(2).view(2, v)  # every piece sampled, two sequences
    with Watch("text", store=root, strict=True, token_every=1, sample_tokens=2 * v, vocab_size=v) as w:
        for step in range(3):
            logits = torch.randn(2, v, v, generator=torch.Generator().manual_seed(step))
            w.log_tokens(step, logits=logits, token_ids=ids, tokenizer=Tok())
    return root


def test_whitespace_and_control_tokens_are_visible(monkeypatch: pytest.MonkeyPatch, text_store: Path) -> None:
    at = app(monkeypatch, text_store, "views/run.py", {"run": "text"})
    at.number_input(key="tok_limit").set_value(100).run()
    at.radio(key="tok_mode").set_value("highest entropy").run()
    df = at.dataframe[-1].value
    shown = set(df["token"])
    assert {"␣", "␊", "␉", "␣the", "<|im_start|>", "[/INST]", "a⟨U+202E⟩b", "<b>x</b>"} <= shown, shown
    assert not any(t.strip() == "" for t in shown), "a whitespace token is a blank cell"
    assert all("\n" not in c and "\u202e" not in c for c in df["context"])
    at.text_input(key="tok_text").set_value("im_start").run()  # the search reads the stored text, not the shown one
    assert set(at.dataframe[-1].value["token"]) == {"<|im_start|>"}


def test_reward_chart_plots_the_series_its_law_was_fitted_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """eval/pass@1 logged twice, reward/mean every step: the detector reads reward/mean (the analysis does not read
    eval/*), so the chart must plot reward/mean under that fit, not two eval points under reward/mean's curve."""
    root = tmp_path / "store"
    n = 200
    t = np.arange(n)
    rng = np.random.default_rng(0)
    h = 1.5 * np.exp(-t / 60.0) + 0.05 + rng.normal(0, 0.01, n)
    r = 0.9 - 0.2 * np.exp(h) + rng.normal(0, 0.01, n)
    w = RunWriter(root, "evals")
    w.write("scalars", {"step": np.r_[t, t], "name": [M.ENTROPY_MEAN] * n + [M.REWARD_MEAN] * n, "value": np.r_[h, r]})
    w.write("scalars", {"step": [0, n - 1], "name": [M.pass_at_k(1)] * 2, "value": [0.3, 0.6]})
    w.close()
    at = app(monkeypatch, root, "views/run.py", {"run": "evals"})
    at.session_state["run_tab"] = TABS[2]
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    fig = figures(at)["reward"]
    assert fig["layout"]["title"]["text"] == "reward/mean vs entropy"
    points = next(d for d in fig["data"] if d.get("name") == "steps")
    assert decode(points["y"]) == pytest.approx(r)
    law = next(d for d in fig["data"] if str(d.get("name", "")).startswith("R = "))
    assert "R²" in law["name"], json.dumps(law)[:200]
