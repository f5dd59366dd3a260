"""Geographic priors: which gallery tiles a search may return, computed on arrays.

A prior narrows the search to a bounding box, a radius around a point, named regions (or
countries), or the m tiles nearest a point (the CVG-Text protocol). Each is a vectorised
mask over the gallery's coordinates; the search then runs only over the selected ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planetloc.errors import PlanetlocError
from planetloc.geo.coords import valid_latlon


@dataclass(frozen=True)
class Prior:
    """Constraints on where the answer may be; every set field must hold."""

    bbox: tuple[float, float, float, float] | None = None  # west, south, east, north
    near: tuple[float, float] | None = None  # lat, lon
    radius_km: float | None = None  # with ``near``: within this distance
    nearest: int | None = None  # with ``near``: only the m tiles nearest it
    regions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.near is not None and not valid_latlon(*self.near):
            raise PlanetlocError(f"prior point {self.near} is not a valid lat,lon")
        if (self.radius_km is not None or self.nearest is not None) and self.near is None:
            raise PlanetlocError("a radius or nearest-m prior needs a point (near=LAT,LON)")
        if self.radius_km is not None and not self.radius_km > 0:
            raise PlanetlocError(f"radius must be positive, got {self.radius_km} km")
        if self.nearest is not None and self.nearest < 1:
            raise PlanetlocError(f"nearest-m prior needs m >= 1, got {self.nearest}")
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (valid_latlon(s, w) and valid_latlon(n, e) and s <= n):
                raise PlanetlocError(
                    f"bounding box {self.bbox} must be west,south,east,north in degrees"
                )

    @property
    def empty(self) -> bool:
        return self.bbox is None and self.near is None and not self.regions


def _distance_km(lat: np.ndarray, lon: np.ndarray, point: tuple[float, float]) -> np.ndarray:
    from planetloc.geo.coords import haversine_m

    return haversine_m(point[0], point[1], lat, lon) / 1000.0


def select(
    prior: Prior | None,
    lat: np.ndarray,
    lon: np.ndarray,
    region: np.ndarray,
    country: np.ndarray | None = None,
) -> np.ndarray | None:
    """Sorted ids allowed by ``prior`` (None: the whole gallery)."""
    if prior is None or prior.empty:
        return None
    mask = np.ones(lat.shape[0], dtype=bool)
    if prior.bbox is not None:
        w, s, e, n = prior.bbox
        in_lon = (lon >= w) & (lon <= e) if w <= e else (lon >= w) | (lon <= e)  # antimeridian
        mask &= (lat >= s) & (lat <= n) & in_lon
    if prior.regions:
        wanted = {r.lower() for r in prior.regions}
        names = np.char.lower(region.astype(str))
        hit = np.isin(names, list(wanted))
        if country is not None:
            hit |= np.isin(np.char.lower(country.astype(str)), list(wanted))
        mask &= hit
    if prior.near is not None:
        dist = _distance_km(lat, lon, prior.near)
        if prior.radius_km is not None:
            mask &= dist <= prior.radius_km
        if prior.nearest is not None:
            allowed = np.flatnonzero(mask)
            if len(allowed) > prior.nearest:
                keep = allowed[np.argpartition(dist[allowed], prior.nearest - 1)[: prior.nearest]]
                mask = np.zeros_like(mask)
                mask[keep] = True
    return np.flatnonzero(mask)
