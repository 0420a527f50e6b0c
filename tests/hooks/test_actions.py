"""``on_alert`` specs and the action book: which rule fires on which alert, what it records, and the trainer side
(``control.should_save`` / ``should_training_stop``, agreed across two real gloo ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from entropy_watch.analysis import Alert
from entropy_watch.hooks.actions import ActionBook, ActionSpecError, parse_on_alert

CRIT_EXPLOSION = Alert(40, "guard.explosion", "explosion", "critical", "exploded")
WARN_COLLAPSE = Alert(30, "collapse.decline", "collapse", "warning", "falling")
CRIT_COLLAPSE = Alert(50, "collapse.decline", "collapse", "critical", "floor")
INFO = Alert(5, "cliff.cusum", "cliff", "info", "note")


def _fires(spec, alert: Alert) -> bool:
    return any(r.matches(alert) for r in parse_on_alert(spec))


def test_selectors() -> None:
    assert _fires({"critical": "stop"}, CRIT_EXPLOSION) and not _fires({"critical": "stop"}, WARN_COLLAPSE)
    assert _fires({"warning": "stop"}, CRIT_COLLAPSE)  # a severity means that one or higher
    assert _fires({"critical:explosion": "stop"}, CRIT_EXPLOSION)
    assert not _fires({"critical:explosion": "stop"}, CRIT_COLLAPSE)
    assert _fires({"collapse,explosion": "stop"}, WARN_COLLAPSE)  # kinds only: warning or higher
    assert not _fires({"collapse,cliff": "stop"}, INFO) and _fires({"info:*": "stop"}, INFO)
    assert _fires("checkpoint+stop", CRIT_COLLAPSE) and not _fires("checkpoint+stop", WARN_COLLAPSE)  # bare: critical
    (rule,) = parse_on_alert({"critical": ["stop", "checkpoint", print]})
    assert rule.named == ("checkpoint", "stop") and rule.callbacks == (print,)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"critical": "chekpoint"}, "unknown action 'chekpoint'"),
        ({"severe": "stop"}, "unknown alert kind 'severe'"),
        ({"loud:collapse": "stop"}, "severity 'loud' is not one of"),
        ({"critical:colapse": "stop"}, "unknown alert kind 'colapse'"),
        ({"critical": 3}, "is not 'checkpoint', 'stop'"),
        ({"critical": []}, "has no action"),
        ({}, "empty mapping"),
    ],
)
def test_bad_specs_raise_one_clear_line(spec, says: str) -> None:
    with pytest.raises(ActionSpecError) as e:
        parse_on_alert(spec)
    assert says in str(e.value) and "\n" not in str(e.value)


def _book(spec, trainer: bool = False) -> tuple[ActionBook, list]:
    events: list = []
    fails: list = []
    book = ActionBook(parse_on_alert(spec), lambda step, p: events.append((step, p)), lambda w, e: fails.append(w))
    if trainer:
        book.bind_trainer()
    return book, events


def test_watch_flags_and_callbacks_record_events() -> None:
    seen: list[Alert] = []

    def boom(alert: Alert) -> None:
        raise RuntimeError("user code failed")

    book, events = _book({"critical": "stop", "warning": [seen.append, boom], "collapse": "checkpoint"})
    book.on_alerts([WARN_COLLAPSE], step=31)
    assert book.drain(5)  # callbacks run on the book's worker thread, one at a time, in order
    assert seen == [WARN_COLLAPSE] and not book.should_stop and book.should_checkpoint
    book.on_alerts([CRIT_EXPLOSION, WARN_COLLAPSE], step=41)  # an alert already acted on does not fire again
    assert book.drain(5)
    assert book.should_stop and book.stop_alert is CRIT_EXPLOSION and seen == [WARN_COLLAPSE, CRIT_EXPLOSION]
    first = next(p for _, p in events if p["rule"] == "warning")
    assert first["rule"] == "warning" and first["actions"] == ["call"]
    assert first["alert"]["key"] == WARN_COLLAPSE.key and first["alert"]["step"] == 30
    assert first["did"][0] == "called list.append(alert)" and "raised RuntimeError" in first["did"][1]
    stop = [p for _, p in events if p["actions"] == ["stop"]]
    assert stop[0]["did"] == ["set watch.should_stop = True"] and stop[0]["alert"]["kind"] == "explosion"
    book.checkpoint_saved(45, "/ckpt/45")
    assert not book.should_checkpoint and events[-1][1]["did"] == ["checkpoint saved at step 45 to /ckpt/45"]


def test_trainer_requests_become_control_flags_at_step_end() -> None:
    book, events = _book({"critical:collapse": "checkpoint+stop", "warning": "checkpoint"}, trainer=True)
    args, state = SimpleNamespace(output_dir="/out"), SimpleNamespace(global_step=52)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    book.carry_out(args, state, control)
    assert not control.should_save and not control.should_training_stop and events == []
    book.on_alerts([CRIT_COLLAPSE], step=50)
    assert events == []  # recorded when carried out
    book.carry_out(args, state, control)
    assert control.should_save and control.should_training_stop
    rules = sorted(p["rule"] for _, p in events)
    assert rules == ["critical:collapse", "warning"] and all(step == 52 for step, _ in events)
    crit = next(p for _, p in events if p["rule"] == "critical:collapse")
    assert crit["did"] == [
        "control.should_save = True: the trainer saves /out/checkpoint-52",
        "control.should_training_stop = True: training ends after step 52",
    ]
    assert book.take() == []


RANK = textwrap.dedent(
    """
    import json, os, sys
    from types import SimpleNamespace
    import torch.distributed as dist
    from entropy_watch.analysis import Alert
    from entropy_watch.hooks.actions import ActionBook, parse_on_alert

    rank, out = int(os.environ["RANK"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=2)
    events = []
    book = ActionBook(parse_on_alert({"critical": "stop"}), lambda s, p: events.append(p), lambda w, e: None)
    book.bind_trainer()
    flags = []
    for step in (1, 2, 3):
        if rank == 0 and step == 2:  # only rank 0 analyses: it alone sees the alert
            book.on_alerts([Alert(2, "guard.floor", "collapse", "critical", "x")], step)
        c = SimpleNamespace(should_save=False, should_training_stop=False)
        book.carry_out(SimpleNamespace(output_dir="o"), SimpleNamespace(global_step=step), c)
        flags.append(c.should_training_stop)
    json.dump({"flags": flags, "events": events}, open(os.path.join(out, f"r{rank}.json"), "w"))
    dist.destroy_process_group()
    """
)


@pytest.mark.dist
def test_stop_is_agreed_across_ranks(tmp_path: Path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path)], env={**os.environ, "RANK": str(r)})
        for r in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    r0, r1 = (json.loads((tmp_path / f"r{r}.json").read_text()) for r in range(2))
    assert r0["flags"] == r1["flags"] == [False, True, False]
    assert r0["events"][0]["rule"] == "critical" and r1["events"][0]["rule"] is None  # rank 1 followed rank 0


def test_hf_callback_validates_its_spec_and_sets_control(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from entropy_watch.hooks.hf import EntropyWatchCallback

    with pytest.raises(ActionSpecError):  # at construction, not inside a guarded callback at train start
        EntropyWatchCallback(run="hf", store=tmp_path, on_alert={"critical": "halt"})
    cb = EntropyWatchCallback(run="hf", store=tmp_path, strict=True, on_alert={"critical": "stop"})
    args = SimpleNamespace(output_dir=str(tmp_path), run_name=None, to_dict=dict, world_size=1)
    state = SimpleNamespace(global_step=3, max_steps=10, is_world_process_zero=True)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    cb.on_train_begin(args, state, control)
    cb.watch.live.actions.on_alerts([CRIT_COLLAPSE], step=3)  # what the live thread does on a critical alert
    cb.on_step_end(args, state, control)
    assert control.should_training_stop and not control.should_save
    cb.watch.close()
