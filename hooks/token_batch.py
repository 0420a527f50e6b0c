"""A step's per-token inputs, checked and flattened (``TokenBatch``).

``prepare_batch`` turns the ``(B, T)`` (or flat ``(N,)``) tensors that ``step_stats`` receives into flat ``(N,)``
views on one device, with the valid-token mask (``mask != 0``) and the token set of the entropy statistics (valid,
finite entropy; each other statistic narrows the valid tokens to its own finite inputs: ``token_sums``). The rows
written to the ``tokens`` table are sampled from a ``TokenBatch`` by ``hooks.stats.sample_token_rows``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from entropy_watch.errors import InvalidTensor


@dataclass
class TokenBatch:
    """Flat per-token tensors, all ``(N,)`` on ``entropy.device``; optional ones are None when not given.

    ``entropy``/``logp``/``old_logp``/``advantages`` float (fp32, or fp64 when given fp64), ``group_ids`` and
    ``token_ids`` int64, ``valid`` bool (the caller's mask), ``ok`` bool (valid with a finite entropy).
    ``seq_len`` is T for ``(B, T)`` input (token ``i`` is sequence ``i // T``, position ``i % T``), 0 for flat input.
    """

    entropy: torch.Tensor
    valid: torch.Tensor
    ok: torch.Tensor
    logp: torch.Tensor | None = None
    old_logp: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    group_ids: torch.Tensor | None = None
    token_ids: torch.Tensor | None = None
    seq_len: int = 0


def prepare_batch(
    entropy: torch.Tensor,
    mask: torch.Tensor | None = None,
    logp: torch.Tensor | None = None,
    old_logp: torch.Tensor | None = None,
    advantages: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    token_ids: torch.Tensor | None = None,
) -> TokenBatch:
    """Check shapes, dtypes and devices (one-line :class:`InvalidTensor` otherwise) and flatten to ``(N,)``.

    ``entropy (B, T)`` or ``(N,)``; ``mask``, ``logp``, ``old_logp``, ``token_ids`` the same shape; ``advantages``
    the same, ``(B,)`` or (for ``(B, T)`` input) ``(B, 1)``; ``group_ids`` ``(B,)`` (``(N,)`` for flat input). Only
    metadata is read: no host sync.
    """
    if not isinstance(entropy, torch.Tensor) or not entropy.is_floating_point() or entropy.dim() not in (1, 2):
        raise InvalidTensor(f"step_stats: entropy must be a float tensor (B, T) or (N,), got {_describe(entropy)}")
    shape, dev = entropy.shape, entropy.device
    per_seq = (shape[0],)  # (B,) for (B, T); (N,) for flat input, where a "sequence" is a token
    per_seq_col = (shape[0], 1)  # (B, 1): a per-sequence value kept broadcastable against (B, T), as losses use it

    def tensor(name: str, x: torch.Tensor | None, kind: str, shapes: tuple[tuple[int, ...], ...]) -> Any:
        if x is None:
            return None
        if not isinstance(x, torch.Tensor):
            raise InvalidTensor(f"step_stats: {name} must be a torch.Tensor, got {type(x).__name__}")
        if kind == "float" and not x.is_floating_point():
            raise InvalidTensor(f"step_stats: {name} must be a float tensor, got {x.dtype}")
        if kind == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
            raise InvalidTensor(f"step_stats: {name} must be an integer tensor, got {x.dtype}")
        if tuple(x.shape) not in shapes:
            want = " or ".join(str(s) for s in shapes)
            raise InvalidTensor(f"step_stats: {name} has shape {tuple(x.shape)}, expected {want}")
        if x.device != dev:
            raise InvalidTensor(f"step_stats: {name} is on {x.device} but entropy is on {dev}")
        if len(shape) == 2 and tuple(x.shape) in (per_seq, per_seq_col):
            x = x.reshape(shape[0], 1).expand(shape)  # per-sequence value -> every token of the sequence
        x = x.reshape(-1)
        if kind == "float":
            return x if x.dtype == torch.float64 else x.float()
        return x if kind == "mask" else x.long()

    full = (tuple(shape),)
    valid = tensor("mask", mask, "mask", full)
    valid = torch.ones(entropy.numel(), dtype=torch.bool, device=dev) if valid is None else valid != 0
    batch = TokenBatch(
        entropy=entropy.reshape(-1) if entropy.dtype == torch.float64 else entropy.reshape(-1).float(),
        valid=valid,
        ok=valid,
        logp=tensor("logp", logp, "float", full),
        old_logp=tensor("old_logp", old_logp, "float", full),
        advantages=tensor(
            "advantages", advantages, "float", (tuple(shape), per_seq, per_seq_col)[: 2 + (len(shape) == 2)]
        ),
        group_ids=tensor("group_ids", group_ids, "int", (per_seq,)),
        token_ids=tensor("token_ids", token_ids, "int", full),
        seq_len=int(shape[1]) if len(shape) == 2 else 0,
    )
    if batch.old_logp is not None and batch.logp is None:
        raise InvalidTensor("step_stats: old_logp needs logp (the ratio is exp(logp - old_logp))")
    if batch.group_ids is not None and batch.advantages is None:
        raise InvalidTensor("step_stats: group_ids needs advantages (a zero group is one whose advantages are equal)")
    batch.ok = valid & torch.isfinite(batch.entropy)
    return batch


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of dtype {x.dtype} and shape {tuple(x.shape)}"
    return type(x).__name__
