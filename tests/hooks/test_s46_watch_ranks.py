"""Which rank a ``Watch`` is, and whether it reduces, on two real gloo ranks and under a launcher's environment.

- ``process_group=False`` under an initialised group (the documented way to stay local) crashed the constructor
  (``AttributeError: 'bool' object has no attribute 'size'``); it now records each rank's own statistics.
- Ranks that disagree on reducing (one reduces, another not): the reducing ones wait forever in their first
  ``log_tokens``; the rank that constructs later is told, at construction, through the rendezvous store.
- A ``Watch`` made before ``init_process_group`` took world size 1 on every rank: all wrote ``rank=0`` of one run;
  it now takes the launcher's ``RANK`` / ``WORLD_SIZE`` and says why nothing is reduced.
- ``log_tokens`` after ``destroy_process_group`` recorded one rank's tokens alone as the step; it is now refused.
"""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.hooks import Watch
from entropy_watch.store import Store

from ..gloo_ranks import run_ranks

WORKER = textwrap.dedent(
    """
    import json, logging, os, sys
    import torch
    import torch.distributed as dist
    from entropy_watch.hooks import Watch
    from entropy_watch.hooks.accumulate import StepAccumulator

    rank, out = int(os.environ["RANK"]), sys.argv[1]
    store = os.path.join(out, "store")
    logs = []

    class Keep(logging.Handler):
        def emit(self, record):
            logs.append(record.getMessage())

    logging.getLogger("entropy_watch").addHandler(Keep(logging.WARNING))
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=2)
    res = {}

    def case(name, fn):
        del logs[:]
        try:
            res[name] = {"out": fn()}
        except Exception as exc:
            res[name] = {"out": f"{type(exc).__name__}: {exc}"}
        res[name]["logs"] = list(logs)
        dist.barrier()

    def local():  # every rank stays local
        w = Watch("local", store=store, vocab_size=11, process_group=False, async_stats=False)
        got = w.log_tokens(0, entropy=torch.rand(2 + rank, 3))
        w.close()
        return [w.world_size, w.reduce, w.is_writer, got.get("tokens/count"), w.errors]

    def mixed(run, reducer_first):  # rank 0 reduces, rank 1 does not; the barrier orders the constructions
        first = 0 if reducer_first else 1
        if rank != first:
            dist.barrier()
        w = Watch(run, store=store, vocab_size=11, reduce=rank == 0)
        if rank == first:
            dist.barrier()
        w.close()  # no log_tokens: rank 0's would wait forever
        return w.reduce

    def after_destroy():
        w = Watch("after", store=store, vocab_size=11)  # reduces over both ranks
        first = w.log_tokens(0, entropy=torch.rand(2 + rank, 3)).get("tokens/count")
        dist.barrier()
        dist.destroy_process_group()
        second = w.log_tokens(1, entropy=torch.rand(2 + rank, 3))
        errors = w.errors
        acc = StepAccumulator(w)  # the TRL/OpenRLHF adapters' path: refused the same way
        try:
            acc.add(torch.rand(2 + rank, 3), None, step=2)
            accumulated = acc.flush(2).get("tokens/count")
        except RuntimeError as exc:
            accumulated = "refused" if "destroy_process_group" in str(exc) else str(exc)
        w.close()
        return [first, second, errors, accumulated]

    case("local", local)
    case("reducer_first", lambda: mixed("mixed-a", True))
    case("local_first", lambda: mixed("mixed-b", False))
    try:
        res["after"] = {"out": after_destroy()}
    except Exception as exc:
        res["after"] = {"out": f"{type(exc).__name__}: {exc}"}
    res["after"]["logs"] = list(logs)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    """
)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Run WORKER as gloo ranks 0 and 1: (the output folder, each rank's results)."""
    out = tmp_path_factory.mktemp("ranks")
    run_ranks(WORKER, out, hung="a rank hung")
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def _said(logs: list[str], text: str) -> list[str]:
    return [m for m in logs if text in m]


@pytest.mark.dist
def test_process_group_false_under_an_initialised_group_records_each_rank(ranks: tuple[Path, list[dict]]) -> None:
    out, res = ranks
    for r in (0, 1):
        world, reduce, writer, count, errors = res[r]["local"]["out"]
        assert (world, reduce, writer, errors) == (2, False, True, 0), res[r]["local"]
        assert count == (2 + r) * 3  # this rank's tokens only
        assert not _said(res[r]["local"]["logs"], "wait forever")
        steps, values = Store(out / "store").series("local", M.TOKENS_COUNT, rank=r)
        assert steps.tolist() == [0] and values.tolist() == [(2 + r) * 3]


@pytest.mark.dist
def test_ranks_that_disagree_on_reducing_are_told_at_construction(ranks: tuple[Path, list[dict]]) -> None:
    _, res = ranks
    # the rank constructed second sees the first one's setting: the local rank 1 here ...
    assert res[0]["reducer_first"]["out"] is True and res[1]["reducer_first"]["out"] is False
    (said,) = _said(res[1]["reducer_first"]["logs"], "wait forever")
    assert "'mixed-a'" in said and "this rank (1) records its statistics locally" in said
    # ... and the reducing rank 0 here
    (said,) = _said(res[0]["local_first"]["logs"], "wait forever")
    assert "'mixed-b'" in said and "this rank (0) all-reduces" in said


@pytest.mark.dist
def test_log_tokens_after_destroy_process_group_is_refused(ranks: tuple[Path, list[dict]]) -> None:
    out, res = ranks
    for r in (0, 1):
        # 2x3 + 3x3 tokens, then refused and counted; the step accumulator (TRL, OpenRLHF) refuses it too
        assert res[r]["after"]["out"] == [15.0, {}, 1, "refused"], res[r]["after"]
        assert len(_said(res[r]["after"]["logs"], "destroy_process_group")) == 1
    steps, values = Store(out / "store").series("after", M.TOKENS_COUNT)
    assert steps.tolist() == [0] and values.tolist() == [15.0]  # not rank 0's 6 tokens as step 1


def test_a_watch_made_before_init_process_group_writes_its_launcher_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two ranks of a torchrun job (RANK / WORLD_SIZE set, no group yet) each make their Watch: each writes its own
    rank, told why nothing is reduced, instead of both writing rank 0 of the run under a "live writer" warning."""
    assert not torch.distributed.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "2")
    watches = []
    with caplog.at_level(logging.WARNING, logger="entropy_watch"):
        for r in (0, 1):
            monkeypatch.setenv("RANK", str(r))
            watches.append(Watch("c", store=tmp_path, vocab_size=11, flush_secs=3600, async_stats=False))
        for r, w in enumerate(watches):
            w.log_tokens(0, entropy=torch.rand(2 + r, 3))
            w.close()
    got = [(w.rank, w.world_size, w.reduce, w.is_writer) for w in watches]
    assert got == [(0, 2, False, True), (1, 2, False, True)]
    messages = [r.getMessage() for r in caplog.records]
    assert not _said(messages, "live writer")
    said = _said(messages, "torch.distributed is not initialised")
    assert len(said) == 2 and "rank 0 of 2" in said[0] and "rank 1 of 2" in said[1]
    store = Store(tmp_path)
    for r in (0, 1):
        assert store.series("c", M.TOKENS_COUNT, rank=r)[1].tolist() == [(2 + r) * 3]
    assert store.run_meta("c")["world_size"] == 2
