"""The m gallery points nearest each query point, without a query x gallery distance matrix.

A k-d tree (scipy's, over float64 unit-sphere coordinates, where chord length grows with
great-circle distance) proposes a few more candidates than asked; their float64 haversine
distances decide, and ties are broken by gallery row (a stable sort), so the m-th place is
never arbitrary. Candidates are widened until the first excluded point is provably farther
than the m-th kept one. (A float32 index would not do: chords of points metres apart on unit
vectors lose all their digits to rounding.)
"""

from __future__ import annotations

import numpy as np

from planetloc.geo.coords import haversine_m

# float64 chords on a 6371 km sphere are good to well under a millimetre.
CHORD_TOLERANCE_M = 0.01
QUERY_CHUNK = 4096


def unit_xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(N, 3) float64 unit vectors of points on the sphere."""
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)


class NearestIndex:
    """Exact m-nearest gallery rows by great-circle distance (float64 haversine)."""

    def __init__(
        self,
        lat: np.ndarray,
        lon: np.ndarray,
        distance=haversine_m,
    ) -> None:
        from scipy.spatial import cKDTree

        self.lat = np.asarray(lat, dtype=np.float64)
        self.lon = np.asarray(lon, dtype=np.float64)
        self.distance = distance
        self.tree = cKDTree(unit_xyz(self.lat, self.lon)) if len(self.lat) else None

    def __len__(self) -> int:
        return len(self.lat)

    def nearest(self, lat: np.ndarray, lon: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, metres)`` (Q, min(m, G)) ordered by (distance, row)."""
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        m = min(int(m), len(self))
        if m == 0:
            return np.zeros((len(lat), 0), dtype=np.int64), np.zeros((len(lat), 0))
        rows = np.zeros((len(lat), m), dtype=np.int64)
        dist = np.zeros((len(lat), m), dtype=np.float64)
        for start in range(0, len(lat), QUERY_CHUNK):
            sl = slice(start, start + QUERY_CHUNK)
            rows[sl], dist[sl] = self._chunk(lat[sl], lon[sl], m)
        return rows, dist

    def _chunk(self, lat: np.ndarray, lon: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        q = unit_xyz(lat, lon)
        rows = np.zeros((len(lat), m), dtype=np.int64)
        dist = np.zeros((len(lat), m), dtype=np.float64)
        todo = np.arange(len(lat))
        want = min(len(self), m + 16)
        while len(todo):
            _, cand = self.tree.query(q[todo], k=want)
            cand = np.asarray(cand, dtype=np.int64).reshape(len(todo), want)
            exact = self.distance(lat[todo, None], lon[todo, None], self.lat[cand], self.lon[cand])
            order = np.lexsort((cand, exact), axis=1)
            cand = np.take_along_axis(cand, order, axis=1)
            exact = np.take_along_axis(exact, order, axis=1)
            if want >= len(self):
                done = np.ones(len(todo), dtype=bool)
            else:
                # The proposal is complete when every point outside it is farther than the m-th
                # kept one by more than the spatial index's rounding.
                done = exact[:, -1] > exact[:, m - 1] + CHORD_TOLERANCE_M
            rows[todo[done]] = cand[done, :m]
            dist[todo[done]] = exact[done, :m]
            todo = todo[~done]
            want = min(len(self), want * 4)
        return rows, dist
