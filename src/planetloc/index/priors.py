"""Geographic priors: which gallery tiles a search may return, computed on arrays.

A prior narrows the search to a bounding box (``west > east`` crosses the antimeridian), a
radius around a point, named regions, or the m tiles nearest a point (the CVG-Text protocol).
Each is a vectorised mask over the gallery's coordinates; the search then runs only over the
selected rows. A prior is validated once, when it is made, whoever makes it (CLI or HTTP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planetloc.errors import PlanetlocError

MAX_REGIONS = 256
MAX_NEAREST = 100_000


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PlanetlocError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Prior:
    """Constraints on where the answer may be; every set field must hold."""

    bbox: tuple[float, float, float, float] | None = None  # west, south, east, north
    near: tuple[float, float] | None = None  # lat, lon
    radius_km: float | None = None  # with ``near``: within this distance
    nearest: int | None = None  # with ``near``: only the m tiles nearest it
    regions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.near is not None:
            if len(self.near) != 2:
                raise PlanetlocError(f"prior point must be lat,lon, got {self.near!r}")
            lat, lon = (_finite(v, "prior point") for v in self.near)
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise PlanetlocError(f"prior point ({lat}, {lon}) is not a valid lat,lon")
        if (self.radius_km is not None or self.nearest is not None) and self.near is None:
            raise PlanetlocError("a radius or nearest-m prior needs a point (near=LAT,LON)")
        if self.radius_km is not None and not _finite(self.radius_km, "radius_km") > 0:
            raise PlanetlocError(f"radius must be positive, got {self.radius_km} km")
        if self.nearest is not None and (
            isinstance(self.nearest, bool)
            or not isinstance(self.nearest, int)
            or not 1 <= self.nearest <= MAX_NEAREST
        ):
            raise PlanetlocError(f"nearest-m prior needs an integer m in [1, {MAX_NEAREST}]")
        if self.bbox is not None:
            if len(self.bbox) != 4:
                raise PlanetlocError("bounding box needs 4 numbers: west, south, east, north")
            w, s, e, n = (_finite(v, "bounding box") for v in self.bbox)
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
                raise PlanetlocError(
                    f"bounding box {self.bbox} must be west,south,east,north in degrees"
                )
        if len(self.regions) > MAX_REGIONS:
            raise PlanetlocError(f"at most {MAX_REGIONS} regions, got {len(self.regions)}")
        for region in self.regions:
            if not isinstance(region, str) or not 0 < len(region) <= 100:
                raise PlanetlocError("each region must be a name of 1-100 characters")

    @property
    def empty(self) -> bool:
        return self.bbox is None and self.near is None and not self.regions

    def to_dict(self) -> dict[str, Any]:
        return {
            "bbox": list(self.bbox) if self.bbox else None,
            "near": list(self.near) if self.near else None,
            "radius_km": self.radius_km,
            "nearest": self.nearest,
            "regions": list(self.regions),
        }


def select(
    prior: Prior | None, lat: np.ndarray, lon: np.ndarray, region: np.ndarray
) -> np.ndarray | None:
    """Sorted rows allowed by ``prior`` (None: the whole gallery)."""
    if prior is None or prior.empty:
        return None
    mask = np.ones(lat.shape[0], dtype=bool)
    if prior.bbox is not None:
        w, s, e, n = prior.bbox
        in_lon = (lon >= w) & (lon <= e) if w <= e else (lon >= w) | (lon <= e)  # antimeridian
        mask &= (lat >= s) & (lat <= n) & in_lon
    if prior.regions:
        wanted = [r.lower() for r in prior.regions]
        mask &= np.isin(np.char.lower(region.astype(str)), wanted)
    if prior.near is not None:
        from planetloc.geo.coords import haversine_m

        if prior.radius_km is not None:
            dist = haversine_m(prior.near[0], prior.near[1], lat, lon) / 1000.0
            mask &= dist <= prior.radius_km
        if prior.nearest is not None:
            from planetloc.geo.nearest import NearestIndex

            allowed = np.flatnonzero(mask)
            if len(allowed) > prior.nearest:
                near = NearestIndex(lat[allowed], lon[allowed])
                keep, _ = near.nearest([prior.near[0]], [prior.near[1]], prior.nearest)
                mask = np.zeros_like(mask)
                mask[allowed[keep[0]]] = True
    return np.flatnonzero(mask)
