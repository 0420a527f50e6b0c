"""p21 review of 14deac2. (1) Under the logit budget, a batch whose valid tokens all fit (padding alone put it above
the budget: nothing left out) lost ratio/max when logp came from the logits (token_ids). (2) A Recorder in a garbage
cycle collected during atexit (after threading joined non-daemon threads) started a close thread nobody waited for:
the run stayed "running" and its rows were lost (233fb1c closed inline there)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from entropy_watch import metrics as M
from entropy_watch.hooks import watch as watch_mod
from entropy_watch.store import Store

B, T, V = 8, 16, 64


def test_a_budget_that_leaves_no_valid_token_out_keeps_ratio_max(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(B, T)
    mask[:, :8] = 1  # half padding: n*V is above the budget, the valid tokens' logits are not
    old = -torch.rand(B, T, generator=g) * 3
    kw = {"logits": torch.randn(B, T, V, generator=g), "mask": mask, "old_logp": old,
          "token_ids": torch.randint(0, V, (B, T), generator=g)}  # fmt: skip
    out = {}
    for budget in (None, int(mask.sum()) * V):
        with watch_mod.Watch(f"r{budget}", store=tmp_path, async_stats=False, max_logits_per_call=budget) as w:
            out[budget] = w.log_tokens(1, **kw)
    exact, budgeted = out[None], out[int(mask.sum()) * V]
    assert M.HOOKS_ENTROPY_SAMPLE not in budgeted  # every valid token was computed
    assert budgeted == exact  # before: ratio/max missing


EXIT = """
import atexit, gc, sys, time
from pathlib import Path
from entropy_watch.recorder import Recorder
from entropy_watch.store import RunWriter
class T: pass
def make():
    rec = Recorder(RunWriter(Path(sys.argv[1]), "r"), flush_secs=60)
    rec.scalars(1, {"loss": 1.0})
    rec.before_close = lambda: time.sleep(0.3)  # a drain, the last analysis pass
    t = T(); t.rec, t.me = rec, t
make()
atexit.register(gc.collect)  # a collection while exit hooks run (one triggered by another hook's allocations)
"""


def test_a_recorder_collected_while_exit_hooks_run_is_closed(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", EXIT, str(tmp_path)], check=True, timeout=60)
    s = Store(tmp_path)
    assert s.run_info("r").state == "finished"  # before: "running"
    assert s.series("r", "loss")[0].tolist() == [1]  # before: []


def test_a_rank_whose_left_out_tokens_have_unknown_ratios_hides_ratio_max() -> None:
    """Ranks pool as the all-reduce does (merge: SUM and MAX slots). Rank B's logp exists on its sample only (tokens 0
    and 1, whose old_logp is not finite); its 6 left-out tokens' ratios are unknown, so the pooled maximum is too."""
    from entropy_watch.hooks.stats import _check_edges, finalize, token_sums
    from entropy_watch.hooks.token_batch import prepare_batch

    edges, ent = _check_edges(None), torch.rand(8) + 1
    a = token_sums(prepare_batch(ent, None, torch.full((8,), -1.0), torch.full((8,), -1.1), None, None), edges)
    sample, logp, old = torch.zeros(8, dtype=torch.bool), torch.zeros(8), torch.full((8,), -3.0)
    sample[:2], logp[:2], old[:2] = True, -1.0, float("nan")
    whole = prepare_batch(ent, torch.ones(8), None, None, None, None)  # step_stats' whole under logp_sampled
    b = token_sums(prepare_batch(ent, sample, logp, old, None, None), edges, whole=whole)
    assert M.RATIO_MAX not in finalize(a.merge(b), edges)[0]  # before: rank A's maximum, as the batch's
