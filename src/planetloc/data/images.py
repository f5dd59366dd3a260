"""Read and decode images of manifest samples: loose files or members of shards."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from planetloc.data.shards import read_member, split_member_path
from planetloc.errors import PlanetlocError

# A decoded image larger than this many pixels is refused: a "tile" of 40000 x 40000 is a
# decompression bomb, not a tile (Pillow's own guard only warns below twice this size).
MAX_PIXELS = 64_000_000


def content_hash(data: bytes) -> int:
    """64-bit content address of an image's encoded bytes (caches key on it)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def read_image_bytes(path: str | os.PathLike[str]) -> bytes:
    """The raw bytes of an image file, or of ``shard.tar#member``."""
    member = split_member_path(path)
    if member is not None:
        return read_member(*member)
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise PlanetlocError(f"{path}: cannot read image ({err.strerror})") from None


def decode_rgb(
    data: bytes, size: int | tuple[int, int] | None = None, *, source: str = ""
) -> np.ndarray:
    """(H, W, 3) uint8 RGB of encoded image bytes, resized to ``size`` (square or (H, W))."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise PlanetlocError(
                    f"{source}: image of {img.width} x {img.height} pixels is too large"
                )
            img = img.convert("RGB")
            if size is not None:
                h, w = (size, size) if isinstance(size, int) else size
                if img.size != (w, h):
                    img = img.resize((w, h), Image.BILINEAR)
            return np.array(img)  # writable: becomes a tensor
    except PlanetlocError:
        raise
    except Image.UnidentifiedImageError:
        raise PlanetlocError(f"{source}: not an image format this reader knows") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise PlanetlocError(f"{source}: unreadable image ({err})") from None


def load_tile(path: str | os.PathLike[str], size: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image path (file or shard member), resized to ``size``."""
    return decode_rgb(read_image_bytes(path), size, source=str(path))


def stack_tiles(arrays: Sequence[np.ndarray], source: str = "") -> torch.Tensor:
    """(N, 3, H, W) uint8 tensor of equally sized (H, W, 3) arrays."""
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise PlanetlocError(f"{source}: images differ in size {sorted(shapes)}; pass a size")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def load_tiles(
    paths: Sequence[str | os.PathLike[str]], *, size: int | None = None, progress: bool = False
) -> torch.Tensor:
    """(N, 3, H, W) uint8 tiles of ``paths`` (for small sets; large ones stream)."""
    arrays = [
        load_tile(p, size)
        for p in tqdm(paths, desc="loading tiles", unit="tile", disable=not progress, leave=False)
    ]
    return stack_tiles(arrays)
