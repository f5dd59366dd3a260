"""Stage 2: the street-level photo nearest each point, with the distance to it recorded.

Providers implement :class:`StreetViewSource`: ``nearest(lat, lon, radius_m)`` returns a
:class:`StreetPhoto` or ``None`` when nothing lies within the radius. Shipped: the Mapillary
v4 API (token sent in the ``Authorization`` header, never in URLs) and a local folder of
geotagged photos or panoramas (EXIF GPS). Others plug in as ``streetview.provider:
"package.module:Class"``; the class is built with ``(StreetViewConfig, HttpConfig,
Redactor)`` and should send its requests through a :class:`planetloc.builder.fetch.Provider`
to inherit retries, limits and the circuit breaker.
"""

from __future__ import annotations

import asyncio
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from planetloc.builder.config import HttpConfig, StreetViewConfig, secret_from_env
from planetloc.builder.fetch import BadResponse, Provider, Redactor, require_json
from planetloc.builder.imagery import as_jpeg, require_image
from planetloc.errors import PlanetlocError
from planetloc.geo.coords import EARTH_RADIUS_M, haversine_m

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")


@dataclass
class StreetPhoto:
    image: bytes  # JPEG
    lat: float
    lon: float
    distance_m: float
    meta: dict[str, Any] = field(default_factory=dict)


class StreetViewSource(Protocol):
    async def nearest(self, lat: float, lon: float, radius_m: float) -> StreetPhoto | None: ...

    async def close(self) -> None: ...


def _radius_bbox(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    dlon = math.degrees(radius_m / (EARTH_RADIUS_M * max(1e-6, math.cos(math.radians(lat)))))
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


class MapillarySource:
    """Nearest image from the Mapillary API v4 ``/images`` search by bounding box."""

    def __init__(self, cfg: StreetViewConfig, http: HttpConfig, redactor: Redactor) -> None:
        self.cfg = cfg
        token = secret_from_env(cfg.token_env, "streetview.token_env")
        if not token:
            raise PlanetlocError("streetview.token_env must name the variable holding a token")
        redactor.add(token)
        self.auth = {"Authorization": f"OAuth {token}"}
        self.provider = Provider(
            "streetview",
            http,
            max_concurrency=cfg.max_concurrency,
            rate_per_s=cfg.rate_per_s,
            redactor=redactor,
        )

    async def nearest(self, lat: float, lon: float, radius_m: float) -> StreetPhoto | None:
        west, south, east, north = _radius_bbox(lat, lon, radius_m)
        fields = ",".join(
            (
                "id,computed_geometry,geometry,captured_at,is_pano,compass_angle",
                self.cfg.image_field,
            )
        )
        params = {
            "fields": fields,
            "bbox": f"{west:.7f},{south:.7f},{east:.7f},{north:.7f}",
            "limit": 100,
        }
        url = self.cfg.api_url.rstrip("/") + "/images"
        payload = await self.provider.request(
            "GET", url, _require_image_list, headers=self.auth, params=params
        )
        best: tuple[tuple[bool, float], dict[str, Any], float, float, float] | None = None
        for item in payload:
            geometry = item.get("computed_geometry") or item.get("geometry") or {}
            coords = geometry.get("coordinates") or []
            if len(coords) < 2 or not item.get(self.cfg.image_field):
                continue
            plon, plat = float(coords[0]), float(coords[1])
            dist = float(haversine_m(lat, lon, plat, plon))
            if dist > radius_m:
                continue
            rank = (not (self.cfg.prefer_pano and bool(item.get("is_pano"))), dist)
            if best is None or rank < best[0]:
                best = (rank, item, plat, plon, dist)
        if best is None:
            return None
        _, item, plat, plon, dist = best
        # The image URL is a CDN link: no Authorization header goes there.
        data = await self.provider.request("GET", item[self.cfg.image_field], require_image)
        image = await asyncio.to_thread(as_jpeg, data)
        meta = {
            "provider": "mapillary",
            "photo_id": str(item.get("id")),
            "is_pano": bool(item.get("is_pano")),
            "captured_at": item.get("captured_at"),
            "compass_angle": item.get("compass_angle"),
        }
        return StreetPhoto(image, plat, plon, round(dist, 2), meta)

    async def close(self) -> None:
        await self.provider.close()


def _require_image_list(response: Any) -> list[dict[str, Any]]:
    payload = require_json(response)
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise BadResponse("expected a JSON object with a 'data' list")
    return [item for item in data if isinstance(item, dict)]


def _dms_to_degrees(dms: Any, ref: str) -> float:
    d, m, s = (float(v) for v in dms)
    value = d + m / 60 + s / 3600
    return -value if ref in ("S", "W") else value


def exif_latlon(path: Path) -> tuple[float, float] | None:
    """Latitude and longitude from a photo's EXIF GPS block, if it has one."""
    try:
        with Image.open(path) as image:
            gps = image.getexif().get_ifd(0x8825)
    except OSError:
        return None
    try:
        lat = _dms_to_degrees(gps[2], gps.get(1, "N"))
        lon = _dms_to_degrees(gps[4], gps.get(3, "E"))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


class LocalPhotoSource:
    """Nearest geotagged photo in a folder (scanned once; a grid index answers queries)."""

    CELL_DEG = 0.01

    def __init__(self, cfg: StreetViewConfig) -> None:
        if not cfg.folder or not Path(cfg.folder).is_dir():
            raise PlanetlocError(f"streetview.folder {cfg.folder!r} is not a folder")
        self.paths: list[Path] = []
        coords: list[tuple[float, float]] = []
        for path in sorted(Path(cfg.folder).rglob("*")):
            if path.suffix.lower() in PHOTO_SUFFIXES:
                found = exif_latlon(path)
                if found:
                    self.paths.append(path)
                    coords.append(found)
        if not self.paths:
            raise PlanetlocError(f"{cfg.folder}: no photos with EXIF GPS positions")
        self.coords = np.asarray(coords)
        self.grid: dict[tuple[int, int], list[int]] = {}
        for i, (lat, lon) in enumerate(coords):
            self.grid.setdefault(self._cell(lat, lon), []).append(i)

    def _cell(self, lat: float, lon: float) -> tuple[int, int]:
        return int(math.floor(lat / self.CELL_DEG)), int(math.floor(lon / self.CELL_DEG))

    def _nearest(self, lat: float, lon: float, radius_m: float) -> StreetPhoto | None:
        reach = (
            int(
                math.ceil(
                    math.degrees(radius_m / EARTH_RADIUS_M)
                    / self.CELL_DEG
                    / max(1e-6, math.cos(math.radians(lat)))
                )
            )
            + 1
        )
        cy, cx = self._cell(lat, lon)
        ids = [
            i
            for dy in range(-reach, reach + 1)
            for dx in range(-reach, reach + 1)
            for i in self.grid.get((cy + dy, cx + dx), ())
        ]
        if not ids:
            return None
        dist = haversine_m(lat, lon, self.coords[ids, 0], self.coords[ids, 1])
        best = int(np.argmin(dist))
        if dist[best] > radius_m:
            return None
        i = ids[best]
        path = self.paths[i]
        image = as_jpeg(path.read_bytes())
        with Image.open(path) as photo:
            is_pano = photo.width >= 2 * photo.height
        meta = {"provider": "local", "file": path.name, "is_pano": is_pano}
        plat, plon = (float(v) for v in self.coords[i])
        return StreetPhoto(image, plat, plon, round(float(dist[best]), 2), meta)

    async def nearest(self, lat: float, lon: float, radius_m: float) -> StreetPhoto | None:
        return await asyncio.to_thread(self._nearest, lat, lon, radius_m)

    async def close(self) -> None:
        return None


def open_source(
    cfg: StreetViewConfig, http: HttpConfig, redactor: Redactor
) -> StreetViewSource | None:
    if cfg.provider == "mapillary":
        return MapillarySource(cfg, http, redactor)
    if cfg.provider == "local":
        return LocalPhotoSource(cfg)
    if cfg.provider == "none":
        return None
    return _plugin(cfg, http, redactor)


def _plugin(cfg: StreetViewConfig, http: HttpConfig, redactor: Redactor) -> StreetViewSource:
    """A user provider named ``module:Class``, built as ``Class(cfg, http, redactor)``."""
    module_name, _, class_name = cfg.provider.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise PlanetlocError(
            f"streetview.provider {cfg.provider!r} cannot be loaded ({err})"
        ) from None
    source = cls(cfg, http, redactor)
    if not callable(getattr(source, "nearest", None)):
        raise PlanetlocError(f"streetview.provider {cfg.provider!r} has no nearest() method")
    return source
