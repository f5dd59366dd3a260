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
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import numpy as np
from PIL import Image

from planetloc.builder.config import HttpConfig, StreetViewConfig, secret_from_env
from planetloc.builder.fetch import (
    ERROR_BODY_BYTES,
    BadResponse,
    FetchFailed,
    Provider,
    Redactor,
    refused_by_status,
    require_json,
)
from planetloc.builder.imagery import as_jpeg, require_image
from planetloc.errors import PlanetlocError
from planetloc.geo.coords import EARTH_RADIUS_M, haversine_m

log = logging.getLogger("planetloc.builder")

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


# Fields asked of every search hit; the configured thumbnail field is added.
_SEARCH_FIELDS = (
    "id,computed_geometry,geometry,computed_compass_angle,compass_angle,captured_at,is_pano"
)
# Box sizes tried per search before settling for the nearest photo seen so far.
_MAX_SEARCHES = 8
# A box this small that still fills the result cap holds photos all within a metre or two.
_MIN_HALF_WIDTH_M = 1.0
# Fresh signed URLs asked for when a thumbnail host refuses an expired one.
_URL_REFRESHES = 2
_EXPIRED_STATUS = (401, 403, 410)


@dataclass(frozen=True)
class _Candidate:
    distance_m: float
    id: str
    lat: float
    lon: float
    item: dict[str, Any]

    @property
    def is_pano(self) -> bool:
        return self.item.get("is_pano") is True


def _position(item: dict[str, Any]) -> tuple[float, float, str] | None:
    """``(lat, lon, field)``: the corrected ``computed_geometry`` when present, else the raw
    GPS ``geometry`` (GeoJSON points, ``[lon, lat]``)."""
    for key in ("computed_geometry", "geometry"):
        geometry = item.get(key)
        coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
        if not isinstance(coords, list) or len(coords) < 2:
            continue
        try:
            lon, lat = float(coords[0]), float(coords[1])
        except (TypeError, ValueError):
            continue
        if math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180:
            return lat, lon, key
    return None


def _compass(item: dict[str, Any]) -> tuple[float | None, str | None]:
    """The camera heading (degrees from north) and the field it came from, corrected first."""
    for key in ("computed_compass_angle", "compass_angle"):
        value = item.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value) % 360.0, key
    return None, None


def mapillary_refusal(response: httpx.Response) -> str | None:
    """Whether an API answer means the token was refused: an ``OAuthException`` with code
    190 in the error body, whatever the status (the Graph API sends those with 400 and even
    200), or HTTP 401/403."""
    if b"OAuthException" in response.content[:ERROR_BODY_BYTES]:
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if isinstance(error, dict) and (error.get("type"), error.get("code")) == (
            "OAuthException",
            190,
        ):
            message = str(error.get("message", ""))[:200]
            return f"OAuthException 190 ({message}) with HTTP {response.status_code}"
    return refused_by_status(response)


class MapillarySource:
    """Nearest image from the Mapillary API v4 ``/images`` search by bounding box.

    A search answers at most ``limit`` photos in no particular order, so an answer that
    fills the limit may miss the nearest photo: the box is then shrunk (and regrown when a
    complete answer holds nothing close enough) until a complete answer proves which photo
    is nearest. Thumbnail URLs are signed, expire, and live on caching hosts: a refused
    one is replaced by a fresh URL from ``/{image_id}`` rather than read as a bad token.
    """

    def __init__(self, cfg: StreetViewConfig, http: HttpConfig, redactor: Redactor) -> None:
        self.cfg = cfg
        token = secret_from_env(cfg.token_env, "streetview.token_env")
        if not token:
            raise PlanetlocError("streetview.token_env must name the variable holding a token")
        redactor.add(token)
        self.auth = {"Authorization": f"OAuth {token}"}
        self.api = cfg.api_url.rstrip("/")
        self.provider = Provider(
            "streetview",
            http,
            max_concurrency=cfg.max_concurrency,
            rate_per_s=cfg.rate_per_s,
            redactor=redactor,
            refusal=mapillary_refusal,
        )

    async def _query(
        self, lat: float, lon: float, half_m: float, pano_only: bool
    ) -> list[dict[str, Any]]:
        west, south, east, north = _radius_bbox(lat, lon, half_m)
        params: dict[str, Any] = {
            "fields": f"{_SEARCH_FIELDS},{self.cfg.image_field}",
            "bbox": f"{west:.7f},{south:.7f},{east:.7f},{north:.7f}",
            "limit": self.cfg.search_limit,
        }
        if pano_only:
            params["is_pano"] = "true"
        return await self.provider.request(
            "GET", self.api + "/images", _require_image_list, headers=self.auth, params=params
        )

    def _candidates(
        self, items: list[dict[str, Any]], lat: float, lon: float, radius_m: float
    ) -> list[_Candidate]:
        """Usable hits within ``radius_m``, nearest first (ties by id)."""
        out = []
        for item in items:
            where = _position(item)
            if where is None or item.get("id") is None or not item.get(self.cfg.image_field):
                continue
            plat, plon, _ = where
            dist = float(haversine_m(lat, lon, plat, plon))
            if dist <= radius_m:
                out.append(_Candidate(dist, str(item["id"]), plat, plon, item))
        out.sort(key=lambda c: (c.distance_m, c.id))
        return out

    async def _search(
        self, lat: float, lon: float, radius_m: float, pano_only: bool
    ) -> tuple[list[_Candidate], bool]:
        """Photos near a point, nearest first, and whether they are every photo within
        ``radius_m`` (else: those within the last box's half-width).

        The first candidate is the nearest photo within the radius: an answer below the
        limit lists every photo in its box, so a hit within the box's half-width has no
        closer rival anywhere. A box that fills the limit is halved; a complete box with no
        such hit grows back toward the last full one.
        """
        limit = self.cfg.search_limit
        half, complete_below, full_at = radius_m, 0.0, None
        best: list[_Candidate] = []
        for _ in range(_MAX_SEARCHES):
            items = await self._query(lat, lon, half, pano_only)
            found = self._candidates(items, lat, lon, radius_m)
            if len(items) >= limit and half > _MIN_HALF_WIDTH_M:
                full_at, best = half, found
                half = (complete_below + half) / 2
                continue
            if full_at is None:
                return found, True  # the whole radius in one complete answer
            inside = [c for c in found if c.distance_m <= half]
            if inside or len(items) >= limit:
                return inside or found, False
            # Nothing within this box's half-width: the nearest lies further out, no further
            # than a corner hit of this box and no further than the last full box reaches.
            complete_below = half
            half = (half + full_at) / 2
            if found:
                half = min(half, found[0].distance_m)
        log.info(
            "streetview: %d searches near %.6f,%.6f did not settle; taking the nearest seen",
            _MAX_SEARCHES,
            lat,
            lon,
        )
        return best, False

    async def _fresh_url(self, photo_id: str) -> str:
        """A newly signed thumbnail URL for one image (the ``/{image_id}`` entity endpoint)."""
        field_name = self.cfg.image_field

        def check(response: httpx.Response) -> str:
            payload = require_json(response)
            url = payload.get(field_name) if isinstance(payload, dict) else None
            if not isinstance(url, str) or not url:
                raise BadResponse(f"no {field_name} for image {photo_id}")
            return url

        url = f"{self.api}/{quote(photo_id, safe='')}"
        return await self.provider.request(
            "GET", url, check, headers=self.auth, params={"fields": f"id,{field_name}"}
        )

    async def _download(self, choice: _Candidate) -> bytes:
        url = choice.item[self.cfg.image_field]
        attempts: list[str] = []
        refreshes = 0
        while True:
            try:
                # A CDN link: no Authorization header goes there, and its 403 is no verdict
                # on the token.
                return await self.provider.request("GET", url, require_image, credentials=False)
            except FetchFailed as err:
                attempts += err.attempts
                if err.status not in _EXPIRED_STATUS or refreshes == _URL_REFRESHES:
                    raise FetchFailed(err.reason, attempts, err.status, err.body) from None
                log.info(
                    "streetview: signed URL of image %s refused (HTTP %d); asking for a fresh one",
                    choice.id,
                    err.status,
                )
            refreshes += 1
            url = await self._fresh_url(choice.id)

    async def nearest(self, lat: float, lon: float, radius_m: float) -> StreetPhoto | None:
        found, whole = await self._search(lat, lon, radius_m, pano_only=False)
        if not found:
            return None
        choice = found[0]
        if self.cfg.prefer_pano and not choice.is_pano:
            if whole:
                panos = [c for c in found if c.is_pano]
            else:
                # A dense place: the panoramas may not be among the answers seen so far.
                panos = [c for c in (await self._search(lat, lon, radius_m, True))[0] if c.is_pano]
            choice = panos[0] if panos else choice
        data = await self._download(choice)
        image = await asyncio.to_thread(as_jpeg, data)
        compass, compass_field = _compass(choice.item)
        position = _position(choice.item)
        meta = {
            "provider": "mapillary",
            "photo_id": choice.id,
            "is_pano": choice.is_pano,
            "captured_at": choice.item.get("captured_at"),
            "compass_angle": compass,
            "compass_field": compass_field,
            "position_field": position[2] if position else None,
        }
        return StreetPhoto(image, choice.lat, choice.lon, round(choice.distance_m, 2), meta)

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
