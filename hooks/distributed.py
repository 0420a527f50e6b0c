"""Collectives for step statistics under ``torch.distributed``: which group to reduce over, SUM/MAX all-reduce,
and all-gathers of rows.

Step statistics are sufficient statistics (sums, counts, histogram bins, maxima), so reducing them over the
data-parallel group gives exactly the numbers of the concatenated batch. Every rank must make the same calls in the
same order: :func:`entropy_watch.hooks.stats.reduce_sums` decides each call from numbers every rank shares (the
reduced totals), never from its own inputs, so a rank without, say, ``group_ids`` cannot deadlock the others, and a
rank whose input is refused joins them with the sums of no tokens (:func:`entropy_watch.hooks.stats.join_refused`).
"""

from __future__ import annotations

from typing import Any

import torch


def reduction_group(process_group: Any = None) -> Any | None:
    """The group to all-reduce over, or None to stay local.

    ``False`` -> local (use it when only some ranks compute statistics: a collective would wait forever);
    ``None`` -> the default (world) group when ``torch.distributed`` is initialised with more than one rank;
    a ``ProcessGroup`` -> that group when initialised.
    """
    if process_group is False:
        return None
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    group = torch.distributed.group.WORLD if process_group is None else process_group
    if torch.distributed.get_world_size(group) <= 1:
        return None
    return group


def collective_device(group: Any) -> torch.device:
    """Where a tensor for ``group``'s collectives must live when no input says: the current CUDA device under NCCL,
    else the CPU."""
    if torch.distributed.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_(tensor: torch.Tensor, op: str, group: Any | None) -> torch.Tensor:
    """In-place all-reduce of ``tensor`` with ``op`` in {"sum", "max"}; a no-op when ``group`` is None."""
    if group is None:
        return tensor
    ops = {"sum": torch.distributed.ReduceOp.SUM, "max": torch.distributed.ReduceOp.MAX}
    torch.distributed.all_reduce(tensor, op=ops[op], group=group)
    return tensor


def all_gather_padded(rows: torch.Tensor, group: Any | None) -> torch.Tensor:
    """Concatenate ``rows (n, ...)``, the same shape on every rank of ``group``, in rank order: ``(world * n, ...)``.
    One collective; returns ``rows`` unchanged when ``group`` is None."""
    if group is None:
        return rows
    gathered = [torch.empty_like(rows) for _ in range(torch.distributed.get_world_size(group))]
    torch.distributed.all_gather(gathered, rows.contiguous(), group=group)
    return torch.cat(gathered)
