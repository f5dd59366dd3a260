"""Web Mercator (EPSG:3857) tile arithmetic shared by XYZ, TMS, quadkey and WMTS services."""

from __future__ import annotations

import math

# Web Mercator uses the WGS84 equatorial radius, not the mean radius used for distances.
MERCATOR_RADIUS_M = 6_378_137.0
MAX_LATITUDE = 85.05112877980659


def metres_per_pixel(lat: float, zoom: int, tile_size: int = 256) -> float:
    """Ground metres covered by one pixel at ``lat`` on a ``zoom`` level of ``tile_size`` tiles."""
    return 2 * math.pi * MERCATOR_RADIUS_M * math.cos(math.radians(lat)) / (tile_size * 2**zoom)


def latlon_to_pixel(lat: float, lon: float, zoom: int, tile_size: int = 256) -> tuple[float, float]:
    """Global pixel coordinates (x east, y south) of a point on a zoom level."""
    lat = max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))
    world = tile_size * 2**zoom
    x = (lon + 180.0) / 360.0 * world
    s = math.sin(math.radians(lat))
    y = (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * world
    return x, y


def pixel_to_latlon(x: float, y: float, zoom: int, tile_size: int = 256) -> tuple[float, float]:
    """Inverse of :func:`latlon_to_pixel`."""
    world = tile_size * 2**zoom
    lon = x / world * 360.0 - 180.0
    n = math.pi - 2 * math.pi * y / world
    lat = math.degrees(math.atan(math.sinh(n)))
    return lat, lon


def quadkey(x: int, y: int, zoom: int) -> str:
    """Bing-style quadkey of tile (x, y) at ``zoom``."""
    digits = []
    for level in range(zoom, 0, -1):
        mask = 1 << (level - 1)
        digits.append(str((1 if x & mask else 0) + (2 if y & mask else 0)))
    return "".join(digits)


def ground_to_mercator_scale(lat: float) -> float:
    """Mercator metres per ground metre at ``lat`` (distances stretch by 1/cos(lat)).

    Ground metres follow the same equatorial-radius convention as :func:`metres_per_pixel`,
    which is what tile providers quote.
    """
    return 1.0 / math.cos(math.radians(lat))


def lonlat_to_mercator(lat: float, lon: float) -> tuple[float, float]:
    """EPSG:3857 easting/northing in metres."""
    lat = max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))
    x = MERCATOR_RADIUS_M * math.radians(lon)
    y = MERCATOR_RADIUS_M * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return x, y
