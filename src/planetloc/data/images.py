"""Load satellite tiles of manifest samples into uint8 tensors."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from planetloc.data.manifest import Manifest
from planetloc.data.schema import Sample
from planetloc.errors import PlanetlocError


def load_tile(path: str, size: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB, optionally resized to ``size`` x ``size``."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img)
    except OSError as err:
        raise PlanetlocError(f"{path}: unreadable image ({err})") from None


def load_tiles(
    manifest: Manifest, samples: list[Sample], *, size: int | None = None, progress: bool = True
) -> torch.Tensor:
    """(N, 3, H, W) uint8 tiles of ``samples``; every tile must have the same size."""
    arrays = [
        load_tile(str(manifest.resolve(s.sat_path)), size)
        for s in tqdm(samples, desc="loading tiles", unit="tile", disable=not progress, leave=False)
    ]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise PlanetlocError(
            f"{manifest.path}: tiles differ in size {sorted(shapes)}; pass a size to resize"
        )
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
