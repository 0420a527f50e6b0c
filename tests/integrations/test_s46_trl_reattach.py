"""``attach`` on a trainer that already has entropy_watch attached (real TRL on CPU): refused with one line while
the first run records (a notebook cell run twice), the earlier hook replaced once its run is closed (a second
training of the same trainer, recorded as another run)."""

from __future__ import annotations

import logging

import pytest

from entropy_watch import metrics as M
from entropy_watch.errors import ConfigError
from entropy_watch.store import Store

pytestmark = pytest.mark.slow


def _steps(store: Store, run: str, name: str) -> list[int]:
    return sorted(store.series(run, name)[0].tolist())


def test_attach_twice_is_refused_then_a_closed_runs_hook_is_replaced(tiny_trl, tmp_path, caplog):
    from entropy_watch.hooks.trl import TrlCallback, attach

    trainer = tiny_trl.build_trainer(str(tmp_path / "out"), max_steps=1, gradient_accumulation_steps=2)
    first = attach(trainer, run="first", store=tmp_path / "store", strict=True, flush_secs=0.05)
    wrapped = trainer.compute_loss
    with pytest.raises(ConfigError, match=r"already attached to this trainer \(run 'first'\)") as err:
        attach(trainer, run="first", store=tmp_path / "store", strict=True, flush_secs=0.05)
    assert "\n" not in str(err.value)
    assert trainer.compute_loss is wrapped  # nothing of the refused call was installed
    assert sum(isinstance(cb, TrlCallback) for cb in trainer.callback_handler.callbacks) == 1
    trainer.train()
    first.close()
    store = Store(tmp_path / "store")
    assert _steps(store, "first", M.TOKENS_COUNT) == [1] and first.watch.errors == 0

    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        second = attach(trainer, run="second", store=tmp_path / "store", strict=True, flush_secs=0.05)
        trainer.train()
        second.close()
    assert [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TrlCallback)] == [second.callback]
    assert first.watch.errors == 0 and second.watch.errors == 0  # the closed run is called no more
    assert "'first'" not in caplog.text  # no warning about the closed run: no step logged into it after close
    assert _steps(store, "second", M.TOKENS_COUNT) == [1] and _steps(store, "first", M.TOKENS_COUNT) == [1]
    second.detach()
    assert "compute_loss" not in trainer.__dict__  # both wraps gone: the trainer is as built
