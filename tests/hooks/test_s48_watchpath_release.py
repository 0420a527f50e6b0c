"""The statistics worker lets go of a finished job: its step's tensor snapshots are freed once the step is recorded,
not held until the next ``log_tokens`` (which, for the last step of a loop that goes on to evaluate, never comes)."""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path

import torch

from entropy_watch.hooks import Watch
from entropy_watch.hooks.async_stats import StatsWorker


def test_the_worker_drops_its_last_job_once_it_ran() -> None:
    worker = StatsWorker(lambda exc: None)
    big = torch.zeros(1000)
    ref = weakref.ref(big)
    worker.submit(lambda t=big: t.sum())
    del big
    assert worker.drain(10.0)
    gc.collect()
    try:
        assert ref() is None, "the worker thread still holds the last job and its tensor"
    finally:
        worker.close()


def test_a_recorded_steps_snapshots_are_freed(tmp_path: Path) -> None:
    with Watch("rel", store=tmp_path, sample_tokens=0, vocab_size=16) as w:
        assert w._stats is not None, "the background worker is in use"
        refs: list[weakref.ref] = []
        caller = threading.current_thread()
        real = torch.Tensor.clone

        def clone(t: torch.Tensor, *a, **k) -> torch.Tensor:  # the snapshots log_tokens takes of the caller's tensors
            out = real(t, *a, **k)
            if threading.current_thread() is caller:  # not another thread's clones
                refs.append(weakref.ref(out))
            return out

        torch.Tensor.clone = clone  # type: ignore[method-assign]
        try:
            w.log_tokens(0, entropy=torch.rand(4, 8), mask=torch.ones(4, 8), logp=-torch.rand(4, 8))
        finally:
            torch.Tensor.clone = real  # type: ignore[method-assign]
        w.flush()
        gc.collect()
        assert refs and all(r() is None for r in refs), "snapshots still alive after the step was recorded"
