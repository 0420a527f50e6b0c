"""``watch --notify-runs N``: how many runs of a store get their own notifications within an hour; the others' go out
folded into one digest (notify/digest.py DigestPolicy(max_runs=N); 0: every message in digests). Without the option,
3 (DigestPolicy's default); without --notify it is a usage error (it was silently ignored)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from entropy_watch.cli import app
from entropy_watch.monitor import Monitor
from entropy_watch.store import RunWriter

from ..notify.test_cli_notify import _entropy, _write
from ..notify.webhook import Webhook, serve

RUNS = 4


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with serve() as hook:
        yield hook


def sweep(root: Path, monkeypatch: pytest.MonkeyPatch, webhook: Webhook, *opts: str) -> list[dict]:
    """RUNS runs collapse (critical) and recover after watch's first poll; the bodies the webhook got."""
    runs = []
    for i in range(RUNS):
        w, h = RunWriter(root, f"s{i}"), _entropy(seed=i)
        _write(w, h, 0, 45)
        runs.append((w, h))
    poll = Monitor.poll

    def grown(self: Monitor):  # type: ignore[no-untyped-def]
        if self.passes == 1:
            for w, h in runs:
                _write(w, h, 45, 200)
        return poll(self)

    monkeypatch.setattr(Monitor, "poll", grown)
    args = ["--store", str(root), "watch", "--interval", "0.01", "--iterations", "2", "--notify", webhook.url("/h")]
    r = CliRunner().invoke(app, [*args, *opts])
    assert r.exit_code == 0, r.output
    return webhook.bodies()


def own_runs(bodies: list[dict]) -> set[str]:
    return {b["run"] for b in bodies if b["event"] != "digest"}


def digested(bodies: list[dict]) -> set[str]:
    return {r for b in bodies if b["event"] == "digest" for r in b["runs"]}


@pytest.mark.parametrize("n", [1, 0])
def test_notify_runs_sets_how_many_runs_are_notified_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook: Webhook, n: int
) -> None:
    bodies = sweep(tmp_path, monkeypatch, webhook, "--notify-runs", str(n))
    assert len(own_runs(bodies)) == n, bodies
    assert own_runs(bodies) | digested(bodies) == {f"s{i}" for i in range(RUNS)}  # every run said, none dropped
    assert not own_runs(bodies) & digested(bodies)


def test_without_the_option_three_runs_get_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook: Webhook
) -> None:
    bodies = sweep(tmp_path, monkeypatch, webhook)
    assert len(own_runs(bodies)) == 3 and len(digested(bodies)) == RUNS - 3


def test_notify_runs_without_notify_is_a_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["--store", str(tmp_path), "watch", "--once", "--notify-runs", "2"])
    assert r.exit_code == 2 and "--notify-runs" in r.stderr and "only with --notify" in r.stderr
    r = CliRunner().invoke(app, ["--store", str(tmp_path), "watch", "--once", "--notify-runs", "-1", "--notify", "env"])
    assert r.exit_code == 2 and "--notify-runs" in r.stderr
