"""Random numbers keyed on where, not on the order they are drawn: vectorised integer hashes.

A region's map is computed lazily, one window at a time. Everything random in it (a block's
land use, a lot's shape, a tree crown, the grain of a surface) must come out the same
whichever window asks for it, so it is a hash of the thing's integer coordinates (block,
lot or pixel indices on the region's global grid) and a key, never a draw from a stream.
The mixing function is the SplitMix64 finaliser: cheap in numpy and with no visible pattern
along rows, columns or diagonals.
"""

from __future__ import annotations

import numpy as np

from planetloc.stable_hash import stable_int

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def subkey(key: int, purpose: str) -> int:
    """An independent 64-bit key for one use (``"lot"``, ``"tree"``...) of a region key."""
    return stable_int(key, purpose)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def hash_u64(key: int, *coords: np.ndarray) -> np.ndarray:
    """64-bit hashes of integer coordinates (broadcast together), one per element."""
    arrays = [np.asarray(c, dtype=np.int64) for c in coords]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    h = np.full(shape, key % 2**64, dtype=np.uint64)
    for a in arrays:
        # int64 -> uint64 keeps the two's-complement bits, so negative indices hash too.
        h ^= a.astype(np.uint64) * _GOLDEN
        h = _mix(h)
    return h


def unit_fields(h: np.ndarray, count: int) -> list[np.ndarray]:
    """Split hashes into ``count`` uniforms in (0, 1), float32, of 64 // count bits each."""
    bits = 64 // count
    mask = np.uint64((1 << bits) - 1)
    scale = np.float32(1.0 / (1 << bits))
    return [
        (((h >> np.uint64(i * bits)) & mask).astype(np.float32) + np.float32(0.5)) * scale
        for i in range(count)
    ]


def unit(key: int, *coords: np.ndarray) -> np.ndarray:
    """One uniform in (0, 1) per element of the broadcast coordinates, float64."""
    h = hash_u64(key, *coords)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))


def gaussian(key: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Approximately standard-normal noise per pixel (sum of four uniforms), float32."""
    parts = unit_fields(hash_u64(key, rows, cols), 4)
    total = parts[0] + parts[1] + parts[2] + parts[3]
    # Four uniforms have mean 2 and variance 1/3.
    return (total - np.float32(2.0)) * np.float32(np.sqrt(3.0))
