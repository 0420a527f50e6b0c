"""A shared store's small JSON files are written by anyone who can write the store (or edited by hand): a number past
float's range (valid JSON: ``1`` and 400 zeros) or nesting deeper than the parser's stack in one run's file made
``ls`` / ``alerts`` fail for the whole store (``int too large to convert to float``, ``maximum recursion depth``), and
such a number in a verl run's stored config made ``alerts RUN`` exit 3 with no alerts. One bad value blocks nothing
around it: the value is unknown, the rest is read."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from entropy_watch.store import layout
from entropy_watch.synthetic import write_to_store

from ..cli_run import Ran

HUGE = "1" + "0" * 400  # an integer JSON number that float() cannot hold


def _store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    write_to_store(root, "g", kind="collapse_exp", seed=1, n_steps=300)
    write_to_store(root, "h", kind="healthy", seed=1, n_steps=300)
    return root


def _set_raw(path: Path, key: str, raw: str) -> None:
    doc = json.loads(path.read_text())
    doc[key] = "@@"
    path.write_text(json.dumps(doc).replace('"@@"', raw))


def test_a_heartbeat_time_past_float_range_does_not_stop_ls(tmp_path: Path, ew: Callable[..., Ran]) -> None:
    root = _store(tmp_path)
    status = next((layout.run_dir(root, "h") / layout.STATUS_DIR).glob("*.json"))
    _set_raw(status, "updated_at", HUGE)
    ran = ew("--store", root, "ls", "--json")
    assert ran.code == 0, ran.err
    assert sorted(r["run"] for r in json.loads(ran.out)) == ["g", "h"]


def test_a_run_json_nested_past_the_parser_stack_does_not_stop_ls(tmp_path: Path, ew: Callable[..., Ran]) -> None:
    root = _store(tmp_path)
    layout.run_json_path(root, "h").write_text("[" * 200_000)
    ran = ew("--store", root, "ls", "--json")
    assert ran.code == 0, ran.err
    assert sorted(r["run"] for r in json.loads(ran.out)) == ["g", "h"]


def test_a_config_number_past_float_range_leaves_the_alerts_standing(tmp_path: Path, ew: Callable[..., Ran]) -> None:
    root = _store(tmp_path)
    path = layout.run_json_path(root, "g")
    doc = json.loads(path.read_text())
    doc["framework"] = "verl"
    doc["config"] = {"actor_rollout_ref": {"actor": {"clip_ratio_high": "@@"}}}
    path.write_text(json.dumps(doc).replace('"@@"', HUGE))
    ran = ew("--store", root, "alerts", "g", "--json")
    assert ran.code == 2, ran.err  # the collapse's critical, as without the odd number
    assert "collapse" in ran.out


def test_a_negative_setting_is_not_quoted_back_as_advice() -> None:
    """``learning_rate: -1e-6`` in run.json gave "learning_rate is -1e-06; try -5e-07": every numeric setting advice
    reads is >= 0, so a negative one is unknown (the generic line stays)."""
    from entropy_watch.analysis.advice import run_facts

    facts = run_facts({"framework": "trl", "training_args": {"learning_rate": -1e-6, "max_grad_norm": 1.0}})
    assert "lr" not in facts and facts["max_grad_norm"] == 1.0
