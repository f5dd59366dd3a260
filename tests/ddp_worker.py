"""Run under torchrun: the loss and gradients of one global batch, computed by DDP ranks.

Usage: torchrun --nproc_per_node=2 tests/ddp_worker.py OUT.pt. Rank 0 writes the loss and
the gradient of every trainable parameter to OUT.pt; tests compare them with one process.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch import nn

from planetloc.train.distributed import init_from_env
from planetloc.train.trainer import TrainStep, compute_loss

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from ddp_batch import build


def main() -> None:
    info = init_from_env("cpu")
    model, cfg, text, tiles, sigs = build()
    step = nn.parallel.DistributedDataParallel(TrainStep(model))
    per = tiles.shape[0] // info.world_size
    idx = torch.arange(info.rank * per, (info.rank + 1) * per)
    local_text = type(text)(tokens=text.tokens[idx], mask=text.mask[idx], pooled=text.pooled[idx])
    parts = compute_loss(
        step,
        model,
        cfg,
        local_text,
        tiles[idx],
        {k: v[idx] for k, v in sigs.items()},
        None,
        info,
        0,
    )
    parts.total.backward()
    if info.is_main:
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": parts.total.detach(), "grads": grads}, sys.argv[1])
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
