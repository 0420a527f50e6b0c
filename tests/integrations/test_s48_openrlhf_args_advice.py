"""Advice quotes an OpenRLHF run's current settings, stored by hooks/openrlhf.py (:func:`run_args`) from the args its
``ActorPPOTrainer`` holds (needs /tmp/p20s48/advice_openrlhf.patch applied to entropy_watch/analysis/advice.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")
from entropy_watch.analysis.advice import Facts, actions, run_facts  # noqa: E402
from entropy_watch.hooks import openrlhf  # noqa: E402
from entropy_watch.store import layout  # noqa: E402

from .test_s48_openrlhf_args import FLAGS, KEY, ActorPPOTrainer, _openrlhf_args  # noqa: E402


def test_advice_quotes_the_stored_openrlhf_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTROPY_WATCH_DIR", str(tmp_path))
    monkeypatch.setenv("ENTROPY_WATCH_RUN", "orl-advice")
    openrlhf.set_watch(None)
    openrlhf.wrap_trainer(ActorPPOTrainer)
    try:
        args = _openrlhf_args([*FLAGS, "--logger.wandb.key", KEY])  # entropy_coef 0.002, eps 0.2 0.28
        args.actor.eps_clip_low_high = [0.2, 0.22]
        ActorPPOTrainer(SimpleNamespace(args=args))
        w = openrlhf.get_watch()
        w.log_dict(1, {"entropy/mean": 1.0})
        w.close()
    finally:
        openrlhf.set_watch(None)
    meta = json.loads(layout.run_json_path(tmp_path, "orl-advice").read_text(encoding="utf-8"))
    said = actions("collapse", Facts(run_facts(meta), {}))
    assert said[0].startswith("OpenRLHF: --actor.eps_clip_low_high 0.2 0.28 (now 0.2 0.22;")
    assert "OpenRLHF: --actor.entropy_coef is 0.002; raise it" in said
    assert KEY not in json.dumps(meta) and KEY not in " ".join(said)
