"""Counting the device-to-host reads a piece of code makes (each a wait for the device on a GPU): :class:`HostReads`."""

from __future__ import annotations

from typing import Any

import torch


class HostReads(torch.overrides.TorchFunctionMode):
    """Counts the device-to-host reads made under it (``with HostReads() as reads: ...; reads.reads``)."""

    READS = (torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.__float__, torch.Tensor.__int__)

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.reads += func in self.READS
        return func(*args, **(kwargs or {}))
