"""Windows of a region's map and of its renders, computed in fixed chunks and cached.

A metropolitan region is far too large to rasterise whole (a 15 km region at 1.5 m is
10,000 x 10,000 pixels, several GB of layers). :class:`LazyRegionMap` cuts the region's grid
into ``chunk_px`` squares anchored at its north-west corner, computes a chunk the first time a
window needs it and keeps the most recently used ones; a window is copied out of the chunks it
covers. :class:`LazyScene` does the same for one acquisition: a rendered chunk is shaded from
the chunk's layers and its shadows are cast from the heights of the chunk extended towards
the sun, as far as the tallest possible building can throw a shadow. Memory is therefore set
by the chunk size and the cache length, never by the region's size, and since every chunk is
always computed from the same inputs, any window equals the crop of any larger window.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

from planetloc.data.synth.render import (
    Acquisition,
    Scene,
    cast_shadows,
    scene_of,
    shade,
    shadow_reach_px,
)
from planetloc.data.synth.world import RegionField, RegionMap

LAYERS = ("cls", "height", "albedo", "roof", "major_road", "roundabout")
T = TypeVar("T")


class _LRU(Generic[T]):
    """A small least-recently-used cache of computed chunks."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a chunk cache needs room for at least one chunk, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[tuple[int, int], T] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[int, int], make: Callable[[], T]) -> T:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value


def _chunk_ranges(start: int, length: int, chunk: int) -> list[tuple[int, int, int]]:
    """(chunk index, first pixel inside it, pixel count) of each chunk a range crosses."""
    out = []
    pos, end = start, start + length
    while pos < end:
        index = pos // chunk
        stop = min(end, (index + 1) * chunk)
        out.append((index, pos - index * chunk, stop - pos))
        pos = stop
    return out


class LazyRegionMap:
    """A region's map computed window by window from a :class:`RegionField`."""

    def __init__(self, field: RegionField, *, chunk_px: int = 256, max_chunks: int = 48) -> None:
        self.field = field
        self.chunk_px = int(chunk_px)
        self._cache: _LRU[RegionMap] = _LRU(max_chunks)

    @property
    def shape(self) -> tuple[int, int]:
        return self.field.size_px, self.field.size_px

    @property
    def cached_chunks(self) -> int:
        return len(self._cache)

    def _chunk(self, i: int, j: int) -> RegionMap:
        c = self.chunk_px
        return self._cache.get((i, j), lambda: self.field.compute(i * c, j * c, c, c))

    def check(self, r0: int, c0: int, h: int, w: int) -> None:
        """Refuse a window that leaves the region."""
        n_rows, n_cols = self.shape
        if r0 < 0 or c0 < 0 or r0 + h > n_rows or c0 + w > n_cols or h < 1 or w < 1:
            raise ValueError(
                f"window of {h}x{w} px at ({r0}, {c0}) leaves the {n_rows}x{n_cols} region"
            )

    def layer(self, name: str, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        """One layer (a :class:`RegionMap` field name) of a window, as a new array."""
        self.check(r0, c0, h, w)
        rows = _chunk_ranges(r0, h, self.chunk_px)
        cols = _chunk_ranges(c0, w, self.chunk_px)
        out = None
        at_r = 0
        for i, ri, nr in rows:
            at_c = 0
            for j, cj, nc in cols:
                part = getattr(self._chunk(i, j), name)[ri : ri + nr, cj : cj + nc]
                if out is None:
                    out = np.empty((h, w, *part.shape[2:]), dtype=part.dtype)
                out[at_r : at_r + nr, at_c : at_c + nc] = part
                at_c += nc
            at_r += nr
        assert out is not None
        return out

    def window(self, r0: int, c0: int, h: int, w: int) -> RegionMap:
        """The ``h`` x ``w`` window whose first pixel is region pixel (r0, c0)."""
        layers = {name: self.layer(name, r0, c0, h, w) for name in LAYERS}
        return RegionMap(
            gsd=self.field.gsd,
            street_axis_deg=self.field.street_axis_deg,
            style=self.field.style,
            origin=(int(r0), int(c0)),
            region_shape=self.shape,
            **layers,
        )


class LazyScene:
    """One acquisition of a lazily computed region, rendered chunk by chunk on demand."""

    def __init__(
        self, region_map: LazyRegionMap, acquisition: Acquisition, *, max_chunks: int = 48
    ) -> None:
        self.map = region_map
        self.acquisition = acquisition
        self._cache: _LRU[tuple[np.ndarray, np.ndarray]] = _LRU(max_chunks)
        field = region_map.field
        self._reach = shadow_reach_px(
            field.max_height_m,
            field.gsd,
            acquisition.sun_azimuth_deg,
            acquisition.sun_elevation_deg,
        )

    @property
    def cached_chunks(self) -> int:
        return len(self._cache)

    def _extended(self, start: int, length: int, reach: int, size: int) -> tuple[int, int]:
        lo, hi = start, start + length
        if reach < 0:
            lo += reach
        else:
            hi += reach
        lo, hi = max(lo, 0), min(hi, size)
        return lo, hi

    def _render(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.map.chunk_px
        n_rows, n_cols = self.map.shape
        r0, c0 = i * c, j * c
        h, w = min(c, n_rows - r0), min(c, n_cols - c0)
        # Heights beyond the region's edge are flat ground: nothing there casts a shadow.
        er0, er1 = self._extended(r0, h, self._reach[0], n_rows)
        ec0, ec1 = self._extended(c0, w, self._reach[1], n_cols)
        heights = self.map.layer("height", er0, ec0, er1 - er0, ec1 - ec0)
        acq = self.acquisition
        shadow = cast_shadows(
            heights, self.map.field.gsd, acq.sun_azimuth_deg, acq.sun_elevation_deg
        )
        shadow = np.ascontiguousarray(shadow[r0 - er0 : r0 - er0 + h, c0 - ec0 : c0 - ec0 + w])
        image = shade(self.map.window(r0, c0, h, w), acq, shadow)
        return image, shadow

    def window(self, r0: int, c0: int, h: int, w: int) -> Scene:
        """The rendered ``h`` x ``w`` window whose first pixel is region pixel (r0, c0)."""
        self.map.check(r0, c0, h, w)
        c = self.map.chunk_px
        image = np.empty((h, w, 3), dtype=np.float32)
        shadow = np.empty((h, w), dtype=bool)
        at_r = 0
        for i, ri, nr in _chunk_ranges(r0, h, c):
            at_c = 0
            for j, cj, nc in _chunk_ranges(c0, w, c):
                img, sh = self._cache.get((i, j), lambda i=i, j=j: self._render(i, j))
                image[at_r : at_r + nr, at_c : at_c + nc] = img[ri : ri + nr, cj : cj + nc]
                shadow[at_r : at_r + nr, at_c : at_c + nc] = sh[ri : ri + nr, cj : cj + nc]
                at_c += nc
            at_r += nr
        return scene_of(self.acquisition, image, shadow)
