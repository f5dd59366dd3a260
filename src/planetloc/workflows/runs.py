"""Training runs that a job reuses: a finished run is kept, an interrupted one resumed."""

from __future__ import annotations

from pathlib import Path

from planetloc.model.checkpoint import CHECKPOINT_NAME, read_checkpoint
from planetloc.train.config import TrainConfig
from planetloc.train.trainer import train


def train_or_reuse(cfg: TrainConfig, *, progress: bool = True) -> Path:
    """Train ``cfg`` unless its run folder already holds it finished; return the checkpoint."""
    ckpt = Path(cfg.out) / CHECKPOINT_NAME
    if ckpt.exists() and read_checkpoint(ckpt).step >= cfg.steps:
        return ckpt
    train(cfg, resume=ckpt.exists(), progress=progress)
    return ckpt
