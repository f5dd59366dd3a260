"""Great-circle distances and local metric offsets around a point."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius


def haversine_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> np.ndarray:
    """Great-circle distance in metres; broadcasts over numpy arrays."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def offset_latlon(
    lat: float, lon: float, east_m: ArrayLike, north_m: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Lat/lon of points ``east_m``/``north_m`` metres from (lat, lon), local tangent plane.

    Accurate to well under a metre over the few kilometres of a synthetic region.
    """
    east = np.asarray(east_m, dtype=np.float64)
    north = np.asarray(north_m, dtype=np.float64)
    dlat = np.degrees(north / EARTH_RADIUS_M)
    dlon = np.degrees(east / (EARTH_RADIUS_M * np.cos(np.radians(lat))))
    return lat + dlat, ((lon + dlon + 180.0) % 360.0) - 180.0


def valid_latlon(lat: float, lon: float) -> bool:
    """True when lat is in [-90, 90] and lon in [-180, 180] (NaN is invalid)."""
    return bool(-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0)
