"""Stage 1: points to build samples at, per region, deterministic per seed.

Points are drawn uniformly in a region's bounding box (or from a user-supplied list of
candidates inside it), kept only on land, at least ``min_spacing_m`` apart, up to a quota.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from planetloc.builder.config import SampleConfig
from planetloc.errors import PlanetlocError
from planetloc.geo.coords import EARTH_RADIUS_M
from planetloc.geo.regions import CONTINENTS, Region, get_region, load_catalog
from planetloc.stable_hash import stable_int

_ROUNDS = 6


@dataclass(frozen=True)
class Point:
    id: str
    lat: float
    lon: float
    region: str
    continent: str

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "lat": self.lat,
            "lon": self.lon,
            "region": self.region,
            "continent": self.continent,
        }


def resolve_regions(names: Iterable[str]) -> list[Region]:
    """Regions named by slug, name, continent, or ``all``; catalog order, no repeats."""
    catalog = load_catalog()
    wanted: set[str] = set()
    for raw in names:
        key = raw.strip()
        if not key:
            continue
        if key.lower() == "all":
            wanted.update(r.slug for r in catalog)
            continue
        continent = next((c for c in CONTINENTS if c.lower() == key.lower()), None)
        if continent:
            wanted.update(r.slug for r in catalog if r.continent == continent)
        else:
            wanted.add(get_region(key).slug)
    if not wanted:
        raise PlanetlocError("sample.regions selects no region")
    return [r for r in catalog if r.slug in wanted]


def region_rng(seed: int, slug: str) -> np.random.Generator:
    return np.random.default_rng(stable_int("build", seed, slug))


def read_points_file(path: str | Path) -> np.ndarray:
    """``(n, 2)`` lat/lon from a CSV with lat/lon columns or a GeoJSON of Point features."""
    p = Path(path)
    if not p.is_file():
        raise PlanetlocError(f"{p}: points file not found")
    rows: list[tuple[float, float]] = []
    if p.suffix.lower() in (".geojson", ".json"):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise PlanetlocError(f"{p}: invalid JSON ({err.msg}, line {err.lineno})") from None
        features = data.get("features") if isinstance(data, dict) else None
        if not isinstance(features, list):
            raise PlanetlocError(f"{p}: not a GeoJSON FeatureCollection")
        for i, feature in enumerate(features):
            geom = (feature or {}).get("geometry") or {}
            if geom.get("type") != "Point":
                raise PlanetlocError(f"{p}: feature {i} is not a Point")
            lon, lat = geom["coordinates"][:2]
            rows.append((float(lat), float(lon)))
    else:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = {f.lower(): f for f in reader.fieldnames or []}
            lat_key = fields.get("lat") or fields.get("latitude")
            lon_key = fields.get("lon") or fields.get("lng") or fields.get("longitude")
            if not lat_key or not lon_key:
                raise PlanetlocError(f"{p}: needs 'lat' and 'lon' columns")
            for line, row in enumerate(reader, start=2):
                try:
                    rows.append((float(row[lat_key]), float(row[lon_key])))
                except (TypeError, ValueError):
                    raise PlanetlocError(
                        f"{p}: line {line}: lat/lon {row[lat_key]!r}, {row[lon_key]!r} "
                        "are not numbers"
                    ) from None
    points = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    bad = ~((np.abs(points[:, 0]) <= 90) & (np.abs(points[:, 1]) <= 180))
    if bad.any():
        i = int(np.argmax(bad))
        raise PlanetlocError(f"{p}: point {i} ({points[i, 0]}, {points[i, 1]}) is out of range")
    return points


def _on_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    from global_land_mask import globe

    return np.asarray(globe.is_land(lat, lon), dtype=bool)


def _in_bbox(points: np.ndarray, bbox: tuple[float, float, float, float]) -> np.ndarray:
    west, south, east, north = bbox
    lat, lon = points[:, 0], points[:, 1]
    inside_lon = (lon >= west) & (lon <= east) if west <= east else (lon >= west) | (lon <= east)
    return inside_lon & (lat >= south) & (lat <= north)


def _spaced(candidates: np.ndarray, spacing_m: float, quota: int, ref_lat: float) -> list[int]:
    """Greedy Poisson-disc thinning in candidate order, via a hash grid of cell = spacing."""
    if spacing_m <= 0:
        return list(range(min(quota, len(candidates))))
    m_per_deg = math.pi * EARTH_RADIUS_M / 180
    ys = candidates[:, 0] * m_per_deg
    xs = candidates[:, 1] * m_per_deg * math.cos(math.radians(ref_lat))
    grid: dict[tuple[int, int], list[int]] = {}
    kept: list[int] = []
    limit = spacing_m**2
    for i in range(len(candidates)):
        cx, cy = int(xs[i] // spacing_m), int(ys[i] // spacing_m)
        clash = False
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in grid.get((cx + dx, cy + dy), ()):
                    if (xs[i] - xs[j]) ** 2 + (ys[i] - ys[j]) ** 2 < limit:
                        clash = True
                        break
                if clash:
                    break
            if clash:
                break
        if not clash:
            grid.setdefault((cx, cy), []).append(i)
            kept.append(i)
            if len(kept) == quota:
                break
    return kept


def quota_of(region: Region, cfg: SampleConfig) -> int:
    """Points wanted in ``region``: its entry in ``cfg.quotas`` (by name or slug) or the default."""
    for key, quota in cfg.quotas.items():
        if key.strip().lower() in (region.slug, region.name.lower()):
            return int(quota)
    return cfg.per_region


def sample_region(
    region: Region, cfg: SampleConfig, candidates: np.ndarray | None = None
) -> list[Point]:
    """Up to the region's quota of points (fewer when land or spacing run out)."""
    quota = quota_of(region, cfg)
    rng = region_rng(cfg.seed, region.slug)
    if candidates is not None:
        pool = candidates[_in_bbox(candidates, region.bbox)]
        pool = pool[rng.permutation(len(pool))]
        if cfg.land_only and len(pool):
            pool = pool[_on_land(pool[:, 0], pool[:, 1])]
        kept = _spaced(pool, cfg.min_spacing_m, quota, region.lat) if quota else []
    else:
        # Uniform candidates in rounds until the quota fits (sea and spacing reject many).
        west, south, east, north = region.bbox
        width = (east - west) % 360 or 360.0
        pool = np.empty((0, 2))
        kept = []
        for _ in range(_ROUNDS if quota else 0):
            n = max(quota * 20, 200)
            lat = rng.uniform(south, north, n)
            lon = (west + rng.uniform(0, width, n) + 180.0) % 360.0 - 180.0
            batch = np.stack([lat, lon], axis=1)
            if cfg.land_only:
                batch = batch[_on_land(batch[:, 0], batch[:, 1])]
            pool = np.concatenate([pool, batch])
            kept = _spaced(pool, cfg.min_spacing_m, quota, region.lat)
            if len(kept) >= quota:
                break
    return [
        Point(
            id=f"{region.slug}-{k:05d}",
            lat=round(float(pool[i, 0]), 7),
            lon=round(float(pool[i, 1]), 7),
            region=region.slug,
            continent=region.continent,
        )
        for k, i in enumerate(kept)
    ]
