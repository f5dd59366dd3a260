"""Stage 3: a satellite tile centred on each sample, from a tile service or a local folder.

Tile services are addressed by a URL template with ``{z}``, ``{x}``, ``{y}`` (``{-y}`` for
TMS rows, ``{q}`` for Bing quadkeys, WMTS's ``{TileMatrix}``, ``{TileCol}``, ``{TileRow}``),
an optional ``{s}`` subdomain and ``{key}`` read from an environment variable. The tiles
covering the requested ground square are stitched, then cropped and resampled to
``pixels`` x ``pixels``. A tile the service does not have (404/410, or WMTS's 400
``TileOutOfRange`` exception report) means no coverage there, not an error. Local folders
hold north-up images georeferenced by a world file (``.jgw``, ``.pgw``, ``.tfw``, ``.wld``)
or GeoTIFF tie-point and pixel-scale tags.
"""

from __future__ import annotations

import asyncio
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from planetloc.builder.config import HttpConfig, SatelliteConfig, secret_from_env
from planetloc.builder.fetch import FetchFailed, Provider, Redactor
from planetloc.builder.imagery import encode_jpeg, image_of
from planetloc.errors import PlanetlocError
from planetloc.geo import webmercator as wm
from planetloc.geo.coords import offset_latlon

_WMTS_ALIASES = {"{TileMatrix}": "{z}", "{TileCol}": "{x}", "{TileRow}": "{y}"}


class NoCoverage(Exception):
    """The source has no imagery at this point (the sample is dropped, not quarantined)."""


def tile_out_of_range(body: bytes) -> bool:
    """Whether an error body is an OGC ``ExceptionReport`` whose exception code is
    ``TileOutOfRange`` (how WMTS answers a tile outside its tile matrix limits)."""
    if b"TileOutOfRange" not in body:
        return False
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return False
    return any(
        element.tag.rpartition("}")[2] == "Exception"
        and element.get("exceptionCode") == "TileOutOfRange"
        for element in root.iter()
    )


def tile_window(
    lat: float, lon: float, zoom: int, size_m: float, tile_size: int = 256
) -> tuple[float, float, float, float]:
    """Global pixel box ``(x0, y0, x1, y1)`` of a ``size_m`` ground square centred on a point."""
    cx, cy = wm.latlon_to_pixel(lat, lon, zoom, tile_size)
    half = size_m / wm.metres_per_pixel(lat, zoom, tile_size) / 2
    return cx - half, cy - half, cx + half, cy + half


class XYZSource:
    """Stitches tiles from a templated tile service."""

    def __init__(self, cfg: SatelliteConfig, http: HttpConfig, redactor: Redactor) -> None:
        self.cfg = cfg
        template = cfg.url
        for alias, canonical in _WMTS_ALIASES.items():
            template = template.replace(alias, canonical)
        if not any(k in template for k in ("{q}", "{x}")):
            raise PlanetlocError(f"satellite.url {cfg.url!r} has no {{x}}/{{y}} or {{q}} field")
        self.template = template
        self.key = secret_from_env(cfg.key_env, "satellite.key_env")
        if "{key}" in template and not self.key:
            raise PlanetlocError("satellite.url uses {key} but satellite.key_env is not set")
        redactor.add(self.key)
        headers = {cfg.key_header: self.key} if cfg.key_header and self.key else None
        self.provider = Provider(
            "satellite",
            http,
            max_concurrency=cfg.max_concurrency,
            rate_per_s=cfg.rate_per_s,
            redactor=redactor,
            headers=headers,
        )
        # Neighbouring samples share tiles; keep in-flight and recent ones.
        self.tiles: dict[tuple[int, int, int], asyncio.Task[Image.Image]] = {}

    def url(self, z: int, x: int, y: int) -> str:
        values = {
            "{z}": str(z),
            "{x}": str(x),
            "{y}": str(y),
            "{-y}": str(2**z - 1 - y),
            "{q}": wm.quadkey(x, y, z),
            "{key}": self.key or "",
        }
        if self.cfg.subdomains:
            values["{s}"] = self.cfg.subdomains[(x + y) % len(self.cfg.subdomains)]
        out = self.template
        for field, value in values.items():
            out = out.replace(field, value)
        return out

    async def _tile(self, z: int, x: int, y: int) -> Image.Image:
        try:
            return await self.provider.request("GET", self.url(z, x, y), _tile_image)
        except FetchFailed as err:
            # Tile services answer 404/410 for places they do not cover; WMTS answers 400 with
            # a TileOutOfRange exception report. Any other 400 is a real error.
            if err.status in (404, 410):
                raise NoCoverage(f"no tile {z}/{x}/{y} (HTTP {err.status})") from None
            if err.status == 400 and tile_out_of_range(err.body):
                raise NoCoverage(f"no tile {z}/{x}/{y} (WMTS TileOutOfRange)") from None
            raise

    def tile(self, z: int, x: int, y: int) -> asyncio.Task[Image.Image]:
        key = (z, x, y)
        task = self.tiles.get(key)
        if task is None or (task.done() and task.exception() is not None):
            if len(self.tiles) > 512:
                for old in [k for k, t in self.tiles.items() if t.done()][:256]:
                    del self.tiles[old]
            task = asyncio.ensure_future(self._tile(z, x, y))
            self.tiles[key] = task
        return task

    async def fetch(self, lat: float, lon: float) -> tuple[bytes, dict[str, Any]]:
        cfg = self.cfg
        ts = cfg.tile_size
        x0, y0, x1, y1 = tile_window(lat, lon, cfg.zoom, cfg.size_m, ts)
        n = 2**cfg.zoom
        tx0, ty0 = math.floor(x0 / ts), math.floor(y0 / ts)
        tx1, ty1 = math.floor((x1 - 1e-9) / ts), math.floor((y1 - 1e-9) / ts)
        if ty0 < 0 or ty1 >= n:
            raise NoCoverage("the tile window leaves the Web Mercator square")
        coords = [(tx, ty) for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]
        tiles = await asyncio.gather(*(self.tile(cfg.zoom, tx % n, ty) for tx, ty in coords))
        box = (x0 - tx0 * ts, y0 - ty0 * ts, x1 - tx0 * ts, y1 - ty0 * ts)
        image = await asyncio.to_thread(self._stitch, coords, tiles, tx0, ty0, tx1, ty1, box)
        meta = {
            "source": "xyz",
            "zoom": cfg.zoom,
            "size_m": cfg.size_m,
            "native_m_per_px": round(wm.metres_per_pixel(lat, cfg.zoom, ts), 4),
            "tiles": len(coords),
        }
        return image, meta

    def _stitch(
        self,
        coords: list[tuple[int, int]],
        tiles: list[Image.Image],
        tx0: int,
        ty0: int,
        tx1: int,
        ty1: int,
        box: tuple[float, float, float, float],
    ) -> bytes:
        cfg = self.cfg
        ts = cfg.tile_size
        mosaic = Image.new("RGB", ((tx1 - tx0 + 1) * ts, (ty1 - ty0 + 1) * ts))
        for (tx, ty), tile in zip(coords, tiles, strict=True):
            if tile.size != (ts, ts):
                tile = tile.resize((ts, ts), Image.Resampling.BILINEAR)
            mosaic.paste(tile, ((tx - tx0) * ts, (ty - ty0) * ts))
        image = mosaic.resize((cfg.pixels, cfg.pixels), Image.Resampling.LANCZOS, box=box)
        return encode_jpeg(image, cfg.quality)

    async def close(self) -> None:
        await self.provider.close()


def _tile_image(response: Any) -> Image.Image:
    return image_of(response).convert("RGB")


@dataclass
class GeoImage:
    path: Path
    width: int
    height: int
    x0: float  # CRS coordinate of the upper-left corner of the upper-left pixel
    y0: float
    sx: float  # CRS units per pixel (east, south)
    sy: float

    def contains(self, xmin: float, ymin: float, xmax: float, ymax: float) -> bool:
        return (
            xmin >= self.x0
            and xmax <= self.x0 + self.width * self.sx
            and ymax <= self.y0
            and ymin >= self.y0 - self.height * self.sy
        )


_WORLD_SUFFIXES = {".jpg": ".jgw", ".jpeg": ".jgw", ".png": ".pgw", ".tif": ".tfw", ".tiff": ".tfw"}


def read_georeference(path: Path) -> GeoImage | None:
    """The north-up georeference of an image from its world file or GeoTIFF tags, if any."""
    with Image.open(path) as image:
        width, height = image.size
        tags = getattr(image, "tag_v2", None)
        scale = tags.get(33550) if tags else None
        tie = tags.get(33922) if tags else None
    candidates = [path.with_suffix(".wld")]
    if path.suffix.lower() in _WORLD_SUFFIXES:
        candidates.insert(0, path.with_suffix(_WORLD_SUFFIXES[path.suffix.lower()]))
    for world in candidates:
        if world.is_file():
            try:
                a, d, b, e, c, f = (float(v) for v in world.read_text().split()[:6])
            except ValueError:
                raise PlanetlocError(f"{world}: a world file holds six numbers") from None
            if d or b:
                raise PlanetlocError(f"{world}: rotated images are not supported")
            # World files give the centre of the upper-left pixel.
            return GeoImage(path, width, height, c - a / 2, f - e / 2, a, -e)
    if scale and tie:
        i, j, _, x, y, _ = tie[:6]
        sx, sy = scale[0], scale[1]
        return GeoImage(path, width, height, x - i * sx, y + j * sy, sx, sy)
    return None


class LocalSource:
    """Crops tiles from a folder of georeferenced images."""

    def __init__(self, cfg: SatelliteConfig) -> None:
        if not cfg.folder or not Path(cfg.folder).is_dir():
            raise PlanetlocError(f"satellite.folder {cfg.folder!r} is not a folder")
        self.cfg = cfg
        self.images: list[GeoImage] = []
        for path in sorted(Path(cfg.folder).rglob("*")):
            if path.suffix.lower() in _WORLD_SUFFIXES:
                geo = read_georeference(path)
                if geo is not None:
                    self.images.append(geo)
        if not self.images:
            raise PlanetlocError(f"{cfg.folder}: no georeferenced images (world file or GeoTIFF)")

    def window(self, lat: float, lon: float) -> tuple[float, float, float, float]:
        half = self.cfg.size_m / 2
        if self.cfg.crs == "EPSG:3857":
            x, y = wm.lonlat_to_mercator(lat, lon)
            h = half * wm.ground_to_mercator_scale(lat)
            return x - h, y - h, x + h, y + h
        (south, north), (west, east) = (
            arr.tolist() for arr in offset_latlon(lat, lon, [-half, half], [-half, half])
        )
        return west, south, east, north

    def _crop(self, lat: float, lon: float) -> tuple[bytes, dict[str, Any]]:
        xmin, ymin, xmax, ymax = self.window(lat, lon)
        for geo in self.images:
            if geo.contains(xmin, ymin, xmax, ymax):
                box = (
                    (xmin - geo.x0) / geo.sx,
                    (geo.y0 - ymax) / geo.sy,
                    (xmax - geo.x0) / geo.sx,
                    (geo.y0 - ymin) / geo.sy,
                )
                with Image.open(geo.path) as image:
                    rgb = image.convert("RGB")
                size = (self.cfg.pixels, self.cfg.pixels)
                crop = rgb.resize(size, Image.Resampling.LANCZOS, box=box)
                meta = {"source": "local", "file": geo.path.name, "size_m": self.cfg.size_m}
                return encode_jpeg(crop, self.cfg.quality), meta
        raise NoCoverage("no local image covers the tile")

    async def fetch(self, lat: float, lon: float) -> tuple[bytes, dict[str, Any]]:
        return await asyncio.to_thread(self._crop, lat, lon)

    async def close(self) -> None:
        return None


def open_source(
    cfg: SatelliteConfig, http: HttpConfig, redactor: Redactor
) -> XYZSource | LocalSource:
    return XYZSource(cfg, http, redactor) if cfg.provider == "xyz" else LocalSource(cfg)
