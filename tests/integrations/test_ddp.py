"""Two gloo processes running a real tiny DDP training loop with ``Watch``: rank 0 writes numbers equal to one
process's over the union of the batches; with ``reduce=False`` each rank writes its own ``rank=`` folder.

One launch of the two ranks serves both tests (a module fixture): they train with ``reduce=True`` into one store, then
build the model afresh and train the same steps with ``reduce=False`` into another, each session in its own ``Watch``.
Every process imports torch (~2 s of CPU): two launches of a launcher spawning two ranks imported it six times, this
one twice."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from entropy_watch import metrics as M
from entropy_watch.store import Store

from ..gloo_ranks import run_ranks

pytestmark = [pytest.mark.dist, pytest.mark.slow]

WORKER = textwrap.dedent(
    """
    import os, sys, torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from entropy_watch.hooks import Watch

    def train(rank, root, reduce, dump):
        torch.manual_seed(0)  # same init on every rank
        model = DDP(torch.nn.Sequential(torch.nn.Embedding(13, 16), torch.nn.Linear(16, 13)))
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        g = torch.Generator().manual_seed(100 + rank)  # different data per rank
        saved = []
        with Watch("ddp", store=root, strict=True, reduce=reduce, flush_secs=0.05, vocab_size=13) as w:
            for step in range(3):
                B, T = 3 + rank, 5  # ranks hold different token counts
                x = torch.randint(0, 13, (B, T), generator=g)
                mask = (torch.rand(B, T, generator=g) > 0.3).float()
                adv = torch.randn(B, generator=g)
                logits = model(x)
                lp = torch.log_softmax(logits, -1).gather(-1, x[..., None]).squeeze(-1)
                old = lp.detach() + 0.3 * torch.randn(B, T, generator=g)
                loss = -(torch.exp(lp - old) * adv[:, None] * mask).sum() / mask.sum()
                opt.zero_grad(); loss.backward(); opt.step()
                w.log_tokens(step, logits=logits, mask=mask, logp=lp, old_logp=old, advantages=adv)
                saved.append(dict(logits=logits.detach(), mask=mask, logp=lp.detach(), old=old, adv=adv))
        os.makedirs(dump, exist_ok=True)
        torch.save(saved, f"{dump}/rank{rank}.pt")

    if __name__ == "__main__":
        rank, world, out = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), sys.argv[1]
        dist.init_process_group("gloo", init_method="file://" + os.path.join(out, "rdv"), rank=rank, world_size=world)
        for reduce in (1, 0):
            train(rank, os.path.join(out, f"store{reduce}"), bool(reduce), os.path.join(out, f"dump{reduce}"))
            dist.barrier()  # the next session starts on every rank after this one closed on every rank
        dist.destroy_process_group()
    """
)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[Store, list]]:
    """Per ``reduce``: the store the two ranks wrote and each rank's saved tensors (one launch for both)."""
    out = tmp_path_factory.mktemp("ddp")
    run_ranks(WORKER, out, 2, hung="the DDP ranks hung", timeout=240)
    return {
        bool(reduce): (
            Store(out / f"store{reduce}"),
            [torch.load(out / f"dump{reduce}" / f"rank{r}.pt") for r in (0, 1)],
        )
        for reduce in (1, 0)
    }


def _single(tmp_path, name, batches):
    from entropy_watch.hooks import Watch

    with Watch(name, store=str(tmp_path / "ref"), strict=True, flush_secs=0.05, vocab_size=13) as w:
        for step, parts in enumerate(batches):
            T = parts[0]["mask"].shape[1]
            cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            assert cat["mask"].shape[1] == T
            w.log_tokens(step, logits=cat["logits"], mask=cat["mask"], logp=cat["logp"], old_logp=cat["old"],
                         advantages=cat["adv"])  # fmt: skip
    return Store(tmp_path / "ref")


def _by_rank(store: Store, run: str) -> dict[int, dict[tuple[int, str], float]]:
    t = store.scalars(run).to_pydict()
    out: dict[int, dict[tuple[int, str], float]] = {}
    for r, s, n, v in zip(t["rank"], t["step"], t["name"], t["value"], strict=True):
        out.setdefault(int(r), {})[(int(s), n)] = v
    return out


def test_rank0_writes_the_union(ddp, tmp_path):
    store, dumps = ddp[True]
    ranks = _by_rank(store, "ddp")
    assert set(ranks) == {0}  # one writer
    ref = _by_rank(_single(tmp_path, "union", [[dumps[0][s], dumps[1][s]] for s in range(3)]), "union")[0]
    got = ranks[0]
    names = {n for _, n in ref} - {M.HOOKS_ERRORS, M.HOOKS_DROPPED_TOKENS}
    for key in (k for k in ref if k[1] in names):
        assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-6), key
    n_tokens = sum(float(d[s]["mask"].sum()) for d in dumps for s in range(3))
    assert sum(v for (s, n), v in got.items() if n == M.TOKENS_COUNT) == n_tokens
    hist = store.table("ddp", "hist").to_pydict()
    assert sum(hist["count"]) == n_tokens


def test_each_rank_writes_its_own_folder(ddp, tmp_path):
    store, dumps = ddp[False]
    ranks = _by_rank(store, "ddp")
    assert set(ranks) == {0, 1}
    files = sorted(p.parent.name for p in (store.root / "run=ddp" / "table=scalars").rglob("*.parquet"))
    assert set(files) == {"rank=0", "rank=1"}
    for r in (0, 1):
        ref = _by_rank(_single(tmp_path, f"rank{r}", [[dumps[r][s]] for s in range(3)]), f"rank{r}")[0]
        for key, v in ref.items():
            if key[1] == M.ENTROPY_MEAN or key[1] == M.CLIP_HIGH_FRAC:
                assert ranks[r][key] == pytest.approx(v, rel=1e-5), (r, key)
    assert not np.isclose(ranks[0][(0, M.ENTROPY_MEAN)], ranks[1][(0, M.ENTROPY_MEAN)])
