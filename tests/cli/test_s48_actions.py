"""Text-mode ``alerts RUN`` and ``show RUN`` end with what to do: for each kind whose alerts stand at warning or
critical, the suggested actions the analysis wrote into its most severe alert (``--json``'s ``actions``: rendered,
never recomputed), one per line, printed as data (never rich markup), whole on a narrow terminal and on a pipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entropy_watch.synthetic import write_to_store

from ..cli_run import run_cli

LOSS_MODE = "[red]vanilla\x1b"  # a writer's string: markup and a control character, printed as data


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collapsing run recorded by verl (its run.json's config as hooks/verl.py keeps it)."""
    root = tmp_path_factory.mktemp("store")
    write_to_store(root, "c", "fast_collapse", n_steps=400)
    path = root / "run=c" / "_run.json"
    meta = json.loads(path.read_text())
    actor = {"clip_ratio_high": 0.2, "entropy_coeff": 0, "policy_loss": {"loss_mode": LOSS_MODE}}
    meta.update(framework="verl", config={"actor_rollout_ref": {"actor": actor}})
    path.write_text(json.dumps(meta))
    return root


def standing(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, list[dict]]:
    ran = run_cli(capsys, "--store", root, "alerts", "c", "--json", *args)
    return ran.code, [a for a in json.loads(ran.out)[0]["alerts"] if a["standing"]]


def block(a: dict) -> list[str]:
    """The lines the text output prints for alert ``a`` (its actions as --json has them; data escaped)."""
    said = [x.replace("\x1b", "\\x1b") for x in a["actions"]]
    return [f"what to do ({a['kind']}, {a['severity']} at step {a['step']}):", *(f"  - {x}" for x in said)]


def test_alerts_prints_what_to_do_under_the_table(
    store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, got = standing(capsys, store)
    top = [a for a in got if a["kind"] == "collapse" and a["severity"] == "critical"][0]
    assert any(
        x.startswith("verl: actor_rollout_ref.actor.policy_loss.loss_mode is [red]vanilla") for x in top["actions"]
    )
    for columns in ("", "40"):  # a pipe (as wide as its content), and a narrow terminal: each line whole
        monkeypatch.setenv("COLUMNS", columns)
        ran = run_cli(capsys, "--store", store, "alerts", "c")
        assert ran.code == code == 2, ran.err  # the exit status is the verdict's, as before
        lines = ran.out.splitlines()
        want = block(top)
        at = lines.index(want[0])
        assert lines[at : at + len(want)] == want, (columns, lines[at:])
        assert "[red]vanilla\\x1b" in ran.out and "\x1b" not in ran.out
        assert ran.out.count("what to do (collapse,") == 1  # one block per kind: its most severe standing alert
        assert "what to do (zero_variance_groups" not in ran.out  # info alerts: nothing to do


def test_alerts_json_and_filters_keep_their_output(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_cli(capsys, "--store", store, "alerts", "c", "--json")
    assert "what to do" not in ran.out and json.loads(ran.out)[0]["alerts"]
    code, got = standing(capsys, store)
    warned = [a for a in got if a["severity"] == "warning"]
    assert warned, "the run has a standing warning too"
    crit = run_cli(capsys, "--store", store, "alerts", "c", "--min-severity", "critical")
    assert crit.code == code and "warning at step" not in crit.out and "critical at step" in crit.out
    late = max(a["step"] for a in got) + 1
    none = run_cli(capsys, "--store", store, "alerts", "c", "--since", str(late))
    assert "what to do" not in none.out  # nothing listed: nothing to do


def test_show_prints_what_to_do_under_the_verdict(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, got = standing(capsys, store)
    top = [a for a in got if a["kind"] == "collapse"][0]  # the verdict's order: most severe first
    ran = run_cli(capsys, "--store", store, "show", "c")
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    want = block(top)
    at = lines.index(want[0])
    assert lines[at : at + len(want)] == want
    assert lines.index(want[0]) > next(i for i, x in enumerate(lines) if x.startswith("verdict: "))
    js = run_cli(capsys, "--store", store, "show", "c", "--json")
    assert "what to do" not in js.out
