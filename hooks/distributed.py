"""Collectives for step statistics under ``torch.distributed``: which group to reduce over, SUM/MAX all-reduce,
and an all-gather of variable-length rows.

Step statistics are sufficient statistics (sums, counts, histogram bins, maxima), so reducing them over the
data-parallel group gives exactly the numbers of the concatenated batch. Every rank must make the same calls in the
same order: :func:`entropy_watch.hooks.stats.step_stats` always issues the same fixed sequence whatever optional
inputs a rank has, so a rank without, say, ``group_ids`` cannot deadlock the others, and a rank whose input is
refused joins them with the sums of no tokens (:func:`entropy_watch.hooks.stats.join_refused`).
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


def all_gather_rows(rows: torch.Tensor, group: Any | None) -> torch.Tensor:
    """Concatenate ``rows (n_r, ...)`` from every rank of ``group`` in rank order: ``(sum_r n_r, ...)``.

    Ranks may hold different ``n_r`` (zero included): sizes are gathered first, rows padded to the largest, then
    trimmed. Two collectives; ``O(sum n_r)`` bytes. Returns ``rows`` unchanged when ``group`` is None.
    """
    if group is None:
        return rows
    world = torch.distributed.get_world_size(group)
    size = torch.tensor([rows.shape[0]], dtype=torch.int64, device=rows.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    torch.distributed.all_gather(sizes, size, group=group)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = rows.new_zeros((longest, *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in range(world)]
    torch.distributed.all_gather(gathered, padded, group=group)
    return torch.cat([part[:n] for part, n in zip(gathered, counts, strict=True)])
