"""``token_entropy`` inside ``torch.compile``: the shifted logits a loss takes (``logits[:, :-1]``) compile whole.

A loss that computes its entropy (a bonus, a regulariser, OpenRLHF's compiled ``compute_entropy``) with
``token_entropy`` is compiled with the model's step. The leading dims of ``logits[:, :-1]`` do not merge into one, and
``token_entropy`` used to find that out from a failing ``view``: under ``torch.compile`` that failure stops the
compiled function (``TorchRuntimeError``) instead of being caught. Backend ``eager``: dynamo's tracing is what is
tested, with no compiler to wait for.
"""

from __future__ import annotations

import pytest
import torch

from entropy_watch.hooks import token_entropy


def _reference(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats, naive, in float64: ``-sum p log p`` over the vocabulary."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _masked_mean_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What a loss does: the entropy of the next-token distributions, a token mean over the completion mask."""
    h = token_entropy(logits[:, :-1])  # (B, T-1): not viewable as (B*(T-1), V)
    return (h * mask).sum() / mask.sum()


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "autograd"])
def test_sliced_logits_compile_without_graph_breaks(grad: bool) -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    compiled = torch.compile(_masked_mean_entropy, backend="eager", fullgraph=True)  # fullgraph: a break is an error
    for batch, length in ((2, 6), (2, 9), (3, 5)):  # a new length and a new batch size: still no break
        logits = (3 * torch.randn(batch, length, 40)).requires_grad_(grad)
        mask = (torch.rand(batch, length - 1) > 0.3).float()
        mask[:, 0] = 1.0
        got = compiled(logits, mask)
        ref_logits = logits.detach().clone().requires_grad_(grad)
        ref = (_reference(ref_logits[:, :-1]) * mask.double()).sum() / mask.double().sum()
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(ref.item(), abs=1e-5)
        if grad:
            got.backward()
            ref.backward()
            assert logits.grad is not None and ref_logits.grad is not None
            torch.testing.assert_close(logits.grad.double(), ref_logits.grad.double(), atol=1e-6, rtol=1e-4)


def test_sliced_and_contiguous_logits_agree_in_eager_mode() -> None:
    """The stride test picks the same blocks as before for every layout a loss passes: the values do not move."""
    torch.manual_seed(1)
    base = torch.randn(3, 7, 33)
    cases = {
        "contiguous": base,
        "shifted": base[:, :-1],
        "strided rows": base[:, ::2],
        "batch of one": base[:1, 1:],
        "transposed lead dims": base.transpose(0, 1),
        "expanded": base[:1].expand(4, 7, 33),
        "empty": base[:0, :-1],
    }
    for name, logits in cases.items():
        got = token_entropy(logits)
        assert got.shape == logits.shape[:-1], name
        torch.testing.assert_close(got.double(), _reference(logits), atol=2e-6, rtol=0, msg=name)


def _entropy_and_logp(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return token_entropy(logits[:, :-1], token_ids=ids)  # type: ignore[return-value]


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "autograd"])
def test_token_ids_compile_without_a_host_read(grad: bool) -> None:
    """With ``token_ids`` the eager range check reads the device once per call: compiled, that read was a graph
    break at every step. Compiled, an id outside the vocabulary gives a NaN log-prob (eager: one-line error)."""
    from entropy_watch.errors import InvalidTensor

    torch.manual_seed(2)
    torch._dynamo.reset()
    compiled = torch.compile(_entropy_and_logp, backend="eager", fullgraph=True)
    logits = (2 * torch.randn(3, 6, 25)).requires_grad_(grad)
    ids = torch.randint(0, 25, (3, 5))
    ent, logp = compiled(logits, ids)
    ref_logp = torch.log_softmax(logits.detach()[:, :-1].double(), -1).gather(-1, ids[..., None]).squeeze(-1)
    torch.testing.assert_close(ent.detach().double(), _reference(logits.detach()[:, :-1]), atol=2e-6, rtol=0)
    torch.testing.assert_close(logp.detach().double(), ref_logp, atol=2e-6, rtol=0)
    if grad:
        (ent.sum() + logp.sum()).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()

    off = ids.clone()
    off[1, 2] = 25  # one id past the vocabulary
    _, logp_off = compiled(logits, off)
    assert torch.isnan(logp_off[1, 2]) and torch.isfinite(logp_off[~torch.isnan(logp_off)]).all()
    assert torch.isnan(logp_off).sum() == 1
    with pytest.raises(InvalidTensor, match="outside"):
        token_entropy(logits.detach()[:, :-1], token_ids=off)
