"""``index build``: a trained model encodes a gallery into an index folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from planetloc.data.table import read_table
from planetloc.devices import pick_device
from planetloc.errors import PlanetlocError
from planetloc.index.search import SearchParams
from planetloc.index.store import BuildOptions, build_index
from planetloc.model.checkpoint import load_model, read_checkpoint
from planetloc.model.inference import Encoder


def build_gallery_index(
    *,
    checkpoint: str,
    gallery: str,
    out: Path,
    kind: str = "flat",
    factory: str | None = None,
    dtype: str = "float16",
    splits: tuple[str, ...] | None = None,
    shard_size: int = 4096,
    batch_size: int = 128,
    tile_size_m: float | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Encode the gallery rows (``splits``, default all) and build the index; its info."""
    info = read_checkpoint(checkpoint)
    table = read_table(gallery, splits=splits, with_meta=True, meta_keys=("tile_m",))
    if not len(table):
        raise PlanetlocError(f"{table.path}: no gallery tiles (splits {list(splits or [])})")
    params = SearchParams(kind="factory", factory=factory) if factory else SearchParams(kind=kind)
    device = pick_device(device)
    encoder = Encoder(load_model(info), device=device, tile_batch_size=batch_size)
    folder = build_index(
        encoder,
        info.fingerprint,
        table,
        np.arange(len(table)),
        out,
        options=BuildOptions(
            search=params, dtype=dtype, shard_size=shard_size, tile_size_m=tile_size_m
        ),
        checkpoint=str(info.path.resolve()),
        progress=progress,
    )
    return json.loads((folder / "index.json").read_text(encoding="utf-8"))
