"""A fixed model and global batch shared by the DDP test and its single-process reference."""

from __future__ import annotations

import torch

from planetloc.model.planet import ModelConfig, Planet
from planetloc.model.towers import TextOutput
from planetloc.train.config import TrainConfig

GLOBAL_BATCH = 8


def build() -> tuple[Planet, TrainConfig, TextOutput, torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    mcfg = ModelConfig(
        backbone="tiny-bert-cnn",
        embed_dim=32,
        head_dim=32,
        phys_dim=16,
        heads=2,
        image_size=32,
        token_dropout=0.0,
    )
    model = Planet(mcfg)
    cfg = TrainConfig(model=mcfg, lambda_phy=0.5, batch_size=GLOBAL_BATCH)
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(3, 12, (GLOBAL_BATCH,), generator=gen)
    mask = torch.arange(12)[None, :] < lengths[:, None]
    text = TextOutput(
        tokens=torch.randn(GLOBAL_BATCH, 12, 64, generator=gen),
        mask=mask,
        pooled=torch.randn(GLOBAL_BATCH, 64, generator=gen),
    )
    tiles = torch.randint(0, 256, (GLOBAL_BATCH, 3, 32, 32), generator=gen, dtype=torch.uint8)
    sigs = model.tile_signatures(tiles)
    model.signature_heads.set_statistics(sigs)
    return model, cfg, text, tiles, sigs
