"""Satellite renders of a region map: sun, shadows, season, haze and sensor effects.

A scene is one acquisition (date and time of day). Shadows follow the sun computed for the
region's latitude and the scene's date: a building of height h casts a shadow of length
h / tan(elevation) on the side opposite the sun's azimuth.

Everything but the shadows is computed pixel by pixel, and a shadow can only come from within
:func:`shadow_reach_px` towards the sun, so a window of a region can be rendered on its own
(see :mod:`planetloc.data.synth.chunked`) and equals the crop of a render of the whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image

from planetloc.data.synth.world import GRASS, TREE, RegionMap
from planetloc.geo.sun import local_solar_noon_utc_hour, solar_position

MIN_ELEVATION_DEG = 15.0  # optical satellites rarely acquire with the sun lower than this


@dataclass(frozen=True)
class Scene:
    """One acquisition of a region (or of a window of it): when, where the sun was, the look."""

    when: datetime
    sun_azimuth_deg: float
    sun_elevation_deg: float
    season: str  # "summer", "winter" or "transition", for the hemisphere of the region
    image: np.ndarray  # (H, W, 3) float32 radiance before sensor effects
    shadow: np.ndarray  # (H, W) bool


@dataclass(frozen=True)
class Acquisition:
    """The conditions of one acquisition, without pixels: any window of it can be rendered."""

    when: datetime
    sun_azimuth_deg: float
    sun_elevation_deg: float
    season: str
    haze: float  # share of path radiance in the signal, 0..1


def season_of(lat: float, when: datetime) -> str:
    """Meteorological season of the hemisphere at ``lat``."""
    month = when.month
    north_summer = month in (5, 6, 7, 8)
    north_winter = month in (11, 12, 1, 2)
    if abs(lat) < 15:
        return "summer"  # the tropics have no temperate winter
    if north_summer or north_winter:
        is_summer = north_summer if lat >= 0 else north_winter
        return "summer" if is_summer else "winter"
    return "transition"


def draw_acquisition(lat: float, lon: float, rng: np.random.Generator) -> datetime:
    """A plausible acquisition time: any day of a recent year, mid-morning (sun-synchronous)."""
    day = int(rng.integers(0, 365))
    local_hour = float(rng.uniform(9.5, 11.5))
    noon = local_solar_noon_utc_hour(lon)
    utc_hour = (noon + local_hour - 12.0) % 24.0
    when = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=day, hours=utc_hour)
    # Raise the sun above the floor by moving the acquisition towards local noon if needed.
    for _ in range(12):
        _, elevation = solar_position(lat, lon, when)
        if elevation >= MIN_ELEVATION_DEG:
            break
        when += timedelta(minutes=20)
    return when


def cast_shadows(
    height: np.ndarray, gsd: float, azimuth_deg: float, elevation_deg: float
) -> np.ndarray:
    """Boolean shadow mask: pixels hidden from the sun by something taller along its ray.

    Walks from every pixel towards the sun one pixel at a time; the pixel is shadowed when an
    occluder at ground distance d is taller than the pixel by more than d * tan(elevation).
    """
    tan_el = math.tan(math.radians(max(elevation_deg, 1.0)))
    top = float(height.max())
    if top <= 0:
        return np.zeros(height.shape, dtype=bool)
    steps = int(math.ceil(top / (gsd * tan_el)))
    az = math.radians(azimuth_deg)
    # Towards the sun: east is +column, north is -row.
    d_col, d_row = math.sin(az), -math.cos(az)
    h, w = height.shape
    shadow = np.zeros((h, w), dtype=bool)
    padded = np.zeros((h + 2 * steps + 2, w + 2 * steps + 2), dtype=np.float32)
    pad = steps + 1
    padded[pad : pad + h, pad : pad + w] = height
    for s in range(1, steps + 1):
        dr, dc = int(round(s * d_row)), int(round(s * d_col))
        occluder = padded[pad + dr : pad + dr + h, pad + dc : pad + dc + w]
        shadow |= occluder - height > s * gsd * tan_el
    return shadow


def acquire(lat: float, lon: float, when: datetime, rng: np.random.Generator) -> Acquisition:
    """The sun, season and haze of an acquisition at ``when`` over (lat, lon)."""
    azimuth, elevation = solar_position(lat, lon, when)
    return Acquisition(
        when=when,
        sun_azimuth_deg=azimuth,
        sun_elevation_deg=max(elevation, MIN_ELEVATION_DEG),
        season=season_of(lat, when),
        haze=float(rng.uniform(0.0, 0.08)),
    )


def shadow_reach_px(
    max_height_m: float, gsd: float, azimuth_deg: float, elevation_deg: float
) -> tuple[int, int]:
    """Signed (rows, cols) from a pixel towards the sun within which its occluders can stand.

    Anything farther would have to be taller than ``max_height_m`` to shade it, so a window
    extended this far towards the sun has every shadow of the window itself.
    """
    tan_el = math.tan(math.radians(max(elevation_deg, 1.0)))
    steps = int(math.ceil(max_height_m / (gsd * tan_el)))
    az = math.radians(azimuth_deg)
    d_row, d_col = -math.cos(az), math.sin(az)
    reach_r = int(round(steps * abs(d_row))) + 1
    reach_c = int(round(steps * abs(d_col))) + 1
    return (reach_r if d_row > 0 else -reach_r), (reach_c if d_col > 0 else -reach_c)


def seasonal_albedo(albedo: np.ndarray, cls: np.ndarray, season: str, climate: str) -> np.ndarray:
    """Surface colours (..., 3) of land-cover classes ``cls`` (...) as ``season`` shows them.

    Deciduous crowns lose their leaves and lawns brown in temperate and cold winters, cold
    cities get frost, arid summers dry the vegetation. The satellite view and the street
    view both colour the ground through this.
    """
    out = albedo.copy()
    veg = (cls == TREE) | (cls == GRASS)
    if season == "winter" and climate in ("temperate", "cold"):
        dull = np.asarray([0.42, 0.38, 0.30], dtype=np.float32)
        mix = 0.55 if climate == "temperate" else 0.35
        out[veg] = out[veg] * (1 - mix) + dull * mix
        if climate == "cold":
            out = out * 0.8 + 0.2 * np.float32(0.9)
    elif season == "summer" and climate == "arid":
        out[veg] = out[veg] * 0.85 + np.asarray([0.6, 0.55, 0.4], dtype=np.float32) * 0.15
    return out


def shade(region_map: RegionMap, acquisition: Acquisition, shadow: np.ndarray) -> np.ndarray:
    """Radiance of every pixel of a map (or window) under ``acquisition``, given its shadows.

    Pixel by pixel: season tints vegetation, shadowed ground gets only skylight, haze adds a
    bluish path radiance.
    """
    albedo = seasonal_albedo(
        region_map.albedo, region_map.cls, acquisition.season, region_map.style.climate
    )
    direct = math.sin(math.radians(acquisition.sun_elevation_deg))
    ambient = 0.35
    light = np.where(shadow, ambient, ambient + (1 - ambient) * direct).astype(np.float32)
    haze = acquisition.haze
    image = albedo * light[..., None]
    image = image * (1 - haze) + haze * np.asarray([0.75, 0.8, 0.9], dtype=np.float32)
    return image.astype(np.float32)


def scene_of(acquisition: Acquisition, image: np.ndarray, shadow: np.ndarray) -> Scene:
    """A :class:`Scene` from an acquisition and the pixels rendered under it."""
    return Scene(
        when=acquisition.when,
        sun_azimuth_deg=acquisition.sun_azimuth_deg,
        sun_elevation_deg=acquisition.sun_elevation_deg,
        season=acquisition.season,
        image=image,
        shadow=shadow,
    )


def render_scene(
    region_map: RegionMap, lat: float, lon: float, when: datetime, rng: np.random.Generator
) -> Scene:
    """Render a whole map as seen from above at time ``when`` (nothing casts from outside it)."""
    acq = acquire(lat, lon, when, rng)
    shadow = cast_shadows(
        region_map.height, region_map.gsd, acq.sun_azimuth_deg, acq.sun_elevation_deg
    )
    return scene_of(acq, shade(region_map, acq, shadow), shadow)


def sensor(
    radiance: np.ndarray, *, out_px: int, rng: np.random.Generator, noise: float = 0.012
) -> np.ndarray:
    """What a sensor adds to a square of radiance: a per-tile gain and offset, read noise,
    rounding to 8 bits, and resampling to ``out_px``. Returns uint8 RGB."""
    gain = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    offset = np.float32(rng.uniform(-0.02, 0.02))
    read_noise = rng.standard_normal(size=radiance.shape, dtype=np.float32) * np.float32(noise)
    crop = radiance * gain + offset + read_noise
    tile = (np.clip(crop, 0, 1) * 255 + 0.5).astype(np.uint8)
    if out_px != tile.shape[0]:
        tile = np.asarray(Image.fromarray(tile).resize((out_px, out_px), Image.BILINEAR))
    return tile


def crop_tile(
    scene: Scene,
    row: float,
    col: float,
    *,
    tile_px: int,
    out_px: int,
    rng: np.random.Generator,
    noise: float = 0.012,
) -> np.ndarray:
    """A ``tile_px`` square crop centred at (row, col), resized to ``out_px``, as uint8 RGB.

    Adds what a sensor adds: a per-tile gain and offset, read noise, and rounding to 8 bits.
    """
    r0 = int(round(row - tile_px / 2))
    c0 = int(round(col - tile_px / 2))
    h, w = scene.image.shape[:2]
    if r0 < 0 or c0 < 0 or r0 + tile_px > h or c0 + tile_px > w:
        raise ValueError(f"tile at ({row:.0f}, {col:.0f}) leaves the {h}x{w} map")
    crop = scene.image[r0 : r0 + tile_px, c0 : c0 + tile_px]
    return sensor(crop, out_px=out_px, rng=rng, noise=noise)
