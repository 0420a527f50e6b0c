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
    specs = _specs(tuple(shape))

    def tensor(name: str, x: torch.Tensor | None) -> Any:
        return _flat(_checked(name, x, specs[name], dev, tuple(shape)), specs[name][0], tuple(shape))

    valid = tensor("mask", mask)
    valid = torch.ones(entropy.numel(), dtype=torch.bool, device=dev) if valid is None else valid != 0
    batch = TokenBatch(
        entropy=entropy.reshape(-1) if entropy.dtype == torch.float64 else entropy.reshape(-1).float(),
        valid=valid,
        ok=valid,
        logp=tensor("logp", logp),
        old_logp=tensor("old_logp", old_logp),
        advantages=tensor("advantages", advantages),
        group_ids=tensor("group_ids", group_ids),
        token_ids=tensor("token_ids", token_ids),
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


OPTIONAL = ("logp", "old_logp", "advantages", "group_ids", "token_ids")  # a step's statistics are whole without them
NEEDS = (("old_logp", "logp"), ("group_ids", "advantages"))  # (name, what it is read with)


class LeftOut(InvalidTensor):
    """Inputs :func:`drop_unusable` left out of a step whose other statistics were recorded (one line).

    ``counted``: ``Watch.failure`` counted it; raised again (strict), an adapter's guard does not count it twice."""

    counted = False


def drop_unusable(like: Any, tensors: dict[str, Any], *, logits: bool = False, mask: Any = None) -> list[str]:
    """Set to None, in ``tensors``, each optional input (:data:`OPTIONAL`) that :func:`prepare_batch` would refuse
    for the tokens of ``like`` (the entropy ``(B, T)``/``(N,)``, or with ``logits`` the logits ``(..., V)``): a wrong
    shape or length, dtype or device; and what needs it (``old_logp`` without ``logp``, unless ``logits`` and
    ``token_ids`` give it; ``group_ids`` without ``advantages``). Returns one line per input left out, naming the
    shapes.

    So a mismatched ``logp`` or ``advantages`` costs the step only its own statistics: the entropy ones and the rest
    are still recorded (``Watch.log_tokens``). Only metadata is read, but for ``token_ids`` that index the logits
    (``logits`` without ``logp``): ids under ``mask == 0`` are never read and become 0 (HF labels hold -100 there),
    and ids outside ``[0, V)`` on a valid token leave them out (one host sync, the one ``token_entropy``'s range check
    makes). A ``like`` that is no tensor of such a shape is left to the caller to refuse."""
    if not isinstance(like, torch.Tensor) or like.dim() - logits not in (1, 2):
        return []
    shape, device = tuple(like.shape[:-1] if logits else like.shape), like.device
    specs, problems = _specs(tuple(shape)), []
    for name in OPTIONAL:
        try:
            _checked(name, tensors.get(name), specs[name], device, tuple(shape))
        except InvalidTensor as exc:
            tensors[name] = None
            problems.append(str(exc).removeprefix("step_stats: "))
    if logits and tensors.get("token_ids") is not None and tensors.get("logp") is None:
        problem = _ids_off_vocab(tensors, int(like.shape[-1]), mask, shape)
        problems += [problem] if problem else []
    own_logp = logits and tensors.get("token_ids") is not None  # log_tokens takes logp of token_ids from the logits
    for name, needs in NEEDS:
        if tensors.get(name) is not None and tensors.get(needs) is None and not (needs == "logp" and own_logp):
            tensors[name] = None
            problems.append(f"{name} is left out with {needs}, which it is read with")
    return problems


def _ids_off_vocab(tensors: dict[str, Any], vocab: int, mask: Any, shape: tuple[int, ...]) -> str | None:
    """``tensors["token_ids"]`` made safe to index ``(..., V)`` logits with: 0 under ``mask == 0``; None (and the
    reason) when a valid token's id is outside ``[0, V)``."""
    ids = tensors["token_ids"]
    if isinstance(mask, torch.Tensor) and tuple(mask.shape) == shape and mask.device == ids.device:
        ids = tensors["token_ids"] = torch.where(mask != 0, ids, 0)
    off = int(((ids < 0) | (ids >= vocab)).sum()) if ids.numel() else 0
    if not off:
        return None
    tensors["token_ids"] = None
    return f"token_ids has {off} id(s) outside [0, {vocab}) on valid tokens (mask them out: -100 is a label's pad)"


def _specs(shape: tuple[int, ...]) -> dict[str, tuple[str, tuple[tuple[int, ...], ...]]]:
    """Each per-token input's kind and accepted shapes for tokens of ``shape`` (``(B, T)`` or ``(N,)``)."""
    full, per_seq, per_seq_col = shape, (shape[0],), (shape[0], 1)
    adv = (full, per_seq, per_seq_col) if len(shape) == 2 else (full,)  # flat: a "sequence" is a token
    return {
        "mask": ("mask", (full,)),
        "logp": ("float", (full,)),
        "old_logp": ("float", (full,)),
        "advantages": ("float", adv),
        "group_ids": ("int", (per_seq,)),
        "token_ids": ("int", (full,)),
    }


def _checked(
    name: str, x: Any, spec: tuple[str, tuple[tuple[int, ...], ...]], dev: torch.device, tokens: tuple[int, ...]
) -> Any:
    """``x`` (or None), checked against ``spec``: a one-line :class:`InvalidTensor` naming the shapes otherwise."""
    if x is None:
        return None
    kind, shapes = spec
    if not isinstance(x, torch.Tensor):
        raise InvalidTensor(f"step_stats: {name} must be a torch.Tensor, got {type(x).__name__}")
    if kind == "float" and not x.is_floating_point():
        raise InvalidTensor(f"step_stats: {name} must be a float tensor, got {x.dtype}")
    if kind == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise InvalidTensor(f"step_stats: {name} must be an integer tensor, got {x.dtype}")
    if tuple(x.shape) not in shapes:
        want = " or ".join(str(s) for s in shapes)
        raise InvalidTensor(
            f"step_stats: {name} has shape {tuple(x.shape)}, expected {want}: the tokens are {tokens} (the entropy's "
            "shape, the logits' without V)"
        )
    if x.device != dev:
        raise InvalidTensor(f"step_stats: {name} is on {x.device} but entropy is on {dev}")
    return x


def _flat(x: torch.Tensor | None, kind: str, shape: tuple[int, ...]) -> Any:
    """A checked input as a flat ``(N,)`` tensor of its kind: a per-sequence value repeated over its tokens."""
    if x is None:
        return None
    if len(shape) == 2 and tuple(x.shape) in ((shape[0],), (shape[0], 1)):
        x = x.reshape(shape[0], 1).expand(shape)  # per-sequence value -> every token of the sequence
    x = x.reshape(-1)
    if kind == "float":
        return x if x.dtype == torch.float64 else x.float()
    return x if kind == "mask" else x.long()
