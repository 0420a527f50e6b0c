"""A real two-rank gloo DDP loop with ``Watch``: a rank that passes log-probs as entropies at one step is refused
alone (one warning, on that rank); the run keeps the other rank's tokens at that step and every other step's union."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.histogram import entropy_bin_edges
from entropy_watch.hooks.entropy import token_entropy
from entropy_watch.store import Store

from ..gloo_ranks import run_ranks

pytestmark = [pytest.mark.dist]

WORKER = textwrap.dedent(
    """
    import os, sys, torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from entropy_watch.hooks import Watch

    rank, out = int(os.environ["RANK"]), sys.argv[1]
    dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=2)
    torch.manual_seed(0)
    model = DDP(torch.nn.Sequential(torch.nn.Embedding(13, 8), torch.nn.Linear(8, 13)))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(7 + rank)
    saved = []
    with Watch("neg", store=os.path.join(out, "store"), vocab_size=13, flush_secs=0.05) as w:
        for step in range(3):
            B, T = 2 + rank, 4
            x = torch.randint(0, 13, (B, T), generator=g)
            logits = model(x)
            lp = torch.log_softmax(logits, -1).gather(-1, x[..., None]).squeeze(-1)
            loss = -lp.mean()
            opt.zero_grad(); loss.backward(); opt.step()
            mask = torch.rand(B, T, generator=g) > 0.25
            if rank == 1 and step == 1:  # a bug on one rank: its log-probs passed as entropies
                w.log_tokens(step, entropy=lp.detach(), mask=mask)
            else:
                w.log_tokens(step, logits=logits.detach(), mask=mask)
            saved.append({"logits": logits.detach(), "mask": mask})
        print("errors", w.errors, flush=True)
    torch.save(saved, os.path.join(out, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    """
)


def test_a_rank_passing_log_probs_as_entropies_is_refused_alone(tmp_path: Path):
    outs = run_ranks(WORKER, tmp_path, hung="a refused rank left the other waiting", timeout=180)
    assert "errors 0" in outs[0][0] and "negative" not in outs[0][1], outs[0]  # rank 0's input was fine
    assert "errors 1" in outs[1][0] and outs[1][1].count("entropies are negative") == 1, outs[1]

    dumps = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    def entropy_mean(parts: list[dict]) -> tuple[float, float]:
        h = torch.cat([token_entropy(p["logits"])[p["mask"]] for p in parts])
        return float(h.numel()), float(h.double().mean())

    store = Store(tmp_path / "store")
    steps, counts = store.series("neg", M.TOKENS_COUNT)
    _, means = store.series("neg", M.ENTROPY_MEAN)
    assert steps.tolist() == [0, 1, 2]
    want = [entropy_mean([dumps[0][s], dumps[1][s]] if s != 1 else [dumps[0][s]]) for s in range(3)]
    assert counts.tolist() == [n for n, _ in want]  # step 1: rank 0's tokens (before: the step was lost)
    assert means.tolist() == pytest.approx([m for _, m in want], rel=1e-5)
    assert int(store.hist_matrix("neg", len(entropy_bin_edges(13)))[1][1].sum()) == want[1][0]
