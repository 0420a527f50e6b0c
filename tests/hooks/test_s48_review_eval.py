"""``trainer.evaluate()`` after ``train()`` reopens the run the HF/TRL callback closed at the end of training. When
the user has meanwhile opened a ``Watch`` of their own on that run (to log more), reopening closed it ("a newer Watch
opened its run") and its later logs were lost: the evaluation's scalars go into the open ``Watch`` instead."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from entropy_watch.hooks import Watch
from entropy_watch.hooks.hf import EntropyWatchCallback
from entropy_watch.store import Store


def test_evaluate_after_train_does_not_close_the_users_open_watch(tmp_path: Path) -> None:
    cb = EntropyWatchCallback(run="nb", store=tmp_path, strict=True)
    args, ctl = SimpleNamespace(output_dir=str(tmp_path / "out"), run_name=None, world_size=1), SimpleNamespace()
    state = SimpleNamespace(global_step=0, max_steps=2, is_world_process_zero=True)
    cb.on_train_begin(args, state, ctl)
    for step in (1, 2):
        state.global_step = step
        cb.on_log(args, state, ctl, logs={"loss": 1.0 / step})
    cb.on_train_end(args, state, ctl)
    with Watch("nb", store=tmp_path, strict=True, flush_secs=0.05) as mine:  # the user's own, on the same run
        cb.on_log(args, state, ctl, logs={"eval_loss": 0.5})  # trainer.evaluate()
        assert not mine.closed  # before: closed by the callback's reopen
        mine.log(3, extra=1.0)
        assert mine.errors == 0
    s = Store(tmp_path)
    assert s.series("nb", "extra")[0].tolist() == [3]
    assert s.series("nb", "eval_loss")[1].tolist() == [0.5]
    assert s.series("nb", "loss")[0].tolist() == [1, 2]
    assert cb.watch is not None and cb.watch.closed and cb.watch.errors == 0
    assert s.run_info("nb").state == "finished"
