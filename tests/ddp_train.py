"""Run under torchrun: train a tiny model with DDP for the resume test.

Usage: torchrun --nproc_per_node=2 tests/ddp_train.py DATA OUT STEPS STOP_AFTER RESUME.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_MODEL
from planetloc.train.config import load_config
from planetloc.train.trainer import train


def main() -> None:
    data, out, steps, stop_after, resume = sys.argv[1:6]
    cfg = load_config(
        method="planet",
        overrides={
            "data": data,
            "out": out,
            "steps": int(steps),
            "batch_size": 16,
            "log_every": 1,
            "save_every": 2,
            "eval_every": 0,
            "workers": 0,
            "shuffle_buffer": 64,
            **TINY_MODEL,
        },
    )
    stop = int(stop_after) or None
    train(cfg, resume=resume == "1", progress=False, stop_after=stop)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
