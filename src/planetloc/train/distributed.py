"""Process-group helpers for torchrun: who am I, and the global batch of features."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op when run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def gather_with_grad(local: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's features in rank order, differentiably.

    Every rank then computes the loss of the whole global batch. The gather's backward sums
    each feature's gradient over the ranks (W copies of the same loss), and DDP's average
    over ranks divides by W again, so parameters receive exactly the gradient of one process
    on the global batch: negatives from other ranks count, and so do their gradients.
    """
    if not info.enabled:
        return local
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(local.contiguous()), dim=0)


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op when run alone)."""
    if info.enabled:
        dist.barrier()


def gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value``, in rank order (just ``[value]`` when run alone)."""
    if not info.enabled:
        return [value]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, value)
    return out
