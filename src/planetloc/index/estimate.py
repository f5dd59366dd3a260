"""One location estimate, with an uncertainty radius, from a query's ranked tiles.

The estimate is the score-weighted centre of the best tile's cluster: the ranked tiles within
``CLUSTER_KM`` of the best one, weighted by the softmax of their scores at the model's learned
temperature. Its uncertainty radius is twice the cluster's weighted RMS spread (never less
than half a tile's diagonal, from the gallery's recorded tile size), divided by the share of
the total weight the cluster holds: when other, distant tiles score nearly as well, the
radius says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planetloc.geo.coords import EARTH_RADIUS_M, haversine_m

CLUSTER_KM = 5.0
MAX_RADIUS_M = 20_037_000.0  # half the Earth's circumference: nothing is further away


@dataclass
class Estimate:
    lat: float
    lon: float
    radius_m: float


def half_diagonal_m(tile_size_m: float) -> float:
    return tile_size_m * math.sqrt(2) / 2


def estimate_location(
    lat: np.ndarray, lon: np.ndarray, scores: np.ndarray, scale: float, tile_size_m: float
) -> Estimate:
    """Centre and uncertainty radius from ranked candidate tiles (see the module docstring)."""
    w = np.exp(scale * (scores - scores.max()))
    w /= w.sum()
    best = int(np.argmax(scores))
    cluster = haversine_m(lat[best], lon[best], lat, lon) <= CLUSTER_KM * 1000
    wc = w[cluster] / w[cluster].sum()
    # Average on the unit sphere so a cluster across the antimeridian does not fold.
    phi, lam = np.radians(lat[cluster]), np.radians(lon[cluster])
    xyz = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)
    centre = (wc[:, None] * xyz).sum(0)
    centre /= np.linalg.norm(centre)
    c_lat = float(np.degrees(np.arcsin(np.clip(centre[2], -1, 1))))
    c_lon = float(np.degrees(np.arctan2(centre[1], centre[0])))
    dist = EARTH_RADIUS_M * np.arccos(np.clip(xyz @ centre, -1, 1))
    spread = float(np.sqrt((wc * dist**2).sum()))
    share = float(w[cluster].sum())
    radius = max(half_diagonal_m(tile_size_m), 2.0 * spread) / max(share, 0.05)
    return Estimate(lat=c_lat, lon=c_lon, radius_m=min(radius, MAX_RADIUS_M))
