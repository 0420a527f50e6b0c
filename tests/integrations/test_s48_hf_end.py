"""When ``trainer.train()`` returns, the run the HF/TRL callback made is ``finished``, not ``running`` for as long as
the process lives (a notebook: forever); a later ``train()`` or ``trainer.evaluate()`` of the same trainer still
records into it. A ``Watch`` the caller passed in stays the caller's to close."""

from __future__ import annotations

import gc
from pathlib import Path
from types import SimpleNamespace

import pytest

from entropy_watch.hooks import Watch
from entropy_watch.hooks.hf import EntropyWatchCallback
from entropy_watch.store import Store


def _state(store: Path, run: str) -> str:
    return Store(store).run_info(run).state


def _train(cb: EntropyWatchCallback, steps: int, out: Path) -> None:
    """The callback events of one ``Trainer.train()`` (stand-in state, as tests/hooks/test_s45_loops.py)."""
    args, control = SimpleNamespace(output_dir=str(out), run_name=None, world_size=1), SimpleNamespace()
    state = SimpleNamespace(global_step=0, max_steps=steps, is_world_process_zero=True)
    cb.on_train_begin(args, state, control)
    for step in range(1, steps + 1):
        state.global_step = step
        cb.on_log(args, state, control, logs={"loss": float(step)})
    cb.on_train_end(args, state, control)


def test_the_callbacks_run_is_finished_when_train_returns_and_records_again(tmp_path: Path) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    cb = EntropyWatchCallback(run="nb", store=store, strict=True)
    _train(cb, 3, out)
    assert _state(store, "nb") == "finished", "train() returned: the run is not running any more"
    args = SimpleNamespace(output_dir=str(out), run_name=None, world_size=1)
    cb.on_log(args, SimpleNamespace(global_step=3, is_world_process_zero=True), None, logs={"eval_loss": 0.5})
    assert Store(store).series("nb", "eval_loss")[1].tolist() == [0.5], "trainer.evaluate() after train() recorded"
    assert _state(store, "nb") == "finished" and cb.watch.errors == 0
    _train(cb, 5, out)  # train() again on the same trainer (warned: from step 0 over the first training's steps)
    assert Store(store).series("nb", "loss")[0].tolist() == [1, 2, 3, 4, 5]
    assert _state(store, "nb") == "finished" and cb.watch.errors == 0


def test_a_watch_passed_in_is_not_closed_by_the_callback(tmp_path: Path) -> None:
    with Watch("mine", store=tmp_path, strict=True, flush_secs=0.05) as w:
        cb = EntropyWatchCallback(watch=w, strict=True)
        _train(cb, 2, tmp_path / "out")
        assert not w.closed
        w.log(3, after=1.0)  # the caller goes on recording into its own Watch
        w.flush()
        assert _state(tmp_path, "mine") == "running"
    assert _state(tmp_path, "mine") == "finished"


@pytest.mark.slow
def test_trl_attach_one_line_reads_finished_after_train_and_records_a_second_train(tiny_trl, tmp_path) -> None:
    """The README's one line, handle not kept (/tmp/s48/chk/oneline.py printed ``running [1, 2, 3, 4]``)."""
    from entropy_watch.hooks.trl import attach

    trainer = tiny_trl.build_trainer(str(tmp_path / "out"), max_steps=2)
    attach(trainer, run="oneline", store=tmp_path / "store", flush_secs=0.05)
    gc.collect()
    trainer.train()
    store = Store(tmp_path / "store")
    assert store.run_info("oneline").state == "finished"
    first = sorted(set(store.series("oneline", "entropy/mean")[0].tolist()))
    assert first == [1, 2]
    trainer.args.max_steps = 3
    trainer.train()
    store = Store(tmp_path / "store")
    assert store.run_info("oneline").state == "finished"
    steps, _ = store.series("oneline", "entropy/mean")
    assert sorted(set(steps.tolist())) == [1, 2, 3]
