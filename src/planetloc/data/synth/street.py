"""Ground-level 360-degree street views of a region map, seen from a described standing point.

The panorama is rendered from the same layers as the satellite scene and the description, so
all three show one place: facades take their heights from ``height`` and their materials from
the region style, the ground its colour from ``albedo``, shadows on the ground come from the
scene's ``shadow`` mask and the facades are lit by the scene's sun.

Panorama convention (equirectangular, ``W`` x ``H`` pixels)::

    column x looks at compass bearing  heading + ((x + 0.5) / W - 0.5) * 360
    row y looks at elevation           (H / 2 - (y + 0.5)) * 360 / W   (degrees, up positive)

so the centre of the image looks along ``observer.heading_deg``, columns increase clockwise
(to the right), the horizon lies at the vertical centre and a pixel spans the same angle
vertically as horizontally (512 x 128 covers 360 degrees by +-45 degrees).
:func:`column_of_bearing`, :func:`bearing_of_column`, :func:`row_of_elevation` and
:func:`elevation_of_row` convert between the two.

Rendering is a y-buffer ("voxel space") ray march over the height map, vectorised over all
columns: every column's ray is sampled at the same distances, a sample of height ``h`` at
distance ``d`` covers the rows from the projection of its top down to what nearer samples
already covered, and each pixel keeps the nearest sample that covered it. Walls and trunks
stand on the ground; tree crowns hang between a top and a bottom, so they get a second pair
of y-buffers (one from above, one from below) and the view stays open under them. Ground
pixels are coloured from the exact ground point of their row, interpolated between map
cells. Everything is seen from ``eye_height_m`` above the ground, so roofs, all higher than
the eye, are never seen. Rays stop where they leave the map or pass ``max_range_m``; haze
fades distant things towards the sky behind them (the horizon's colour below the horizon),
into which they melt at the maximum range.

Facades have a window per bay and per ``storey_m`` storey, in one of the region style's
materials per building; a facade facing the sun's azimuth is lit, others are in skylight.
Texture (wall grain, leaf clumps, bark) is keyed on region pixels, not drawn, so a building
looks the same from every standing point, and a window of a larger region (``origin`` set)
renders exactly as the region does, provided it reaches ``max_range_m`` around the observer.
The generator passed in draws only the haze density, white balance and read noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from planetloc.data.synth.describe import Observer
from planetloc.data.synth.pixelhash import hash_u64, unit_fields
from planetloc.data.synth.render import Scene, seasonal_albedo
from planetloc.data.synth.world import BUILDING, POOL, ROAD, TREE, WATER, RegionMap
from planetloc.errors import PlanetlocError
from planetloc.stable_hash import stable_int

OUTSIDE = 255  # class of window cells beyond the map's edge

# Facade materials (names as in style.FACADE_MATERIALS): wall colour, window colour, the share
# of a bay's width that is glass and the share of a storey's height that is glass.
FACADE_LOOKS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float, float]]
FACADE_LOOKS = {
    "brick": ((0.55, 0.30, 0.22), (0.16, 0.18, 0.21), 0.45, 0.50),
    "red brick": ((0.58, 0.24, 0.18), (0.16, 0.18, 0.21), 0.45, 0.50),
    "pale stone": ((0.80, 0.76, 0.66), (0.18, 0.19, 0.22), 0.40, 0.50),
    "rendered stucco": ((0.86, 0.80, 0.68), (0.20, 0.21, 0.24), 0.40, 0.45),
    "old masonry": ((0.62, 0.57, 0.48), (0.15, 0.15, 0.17), 0.35, 0.45),
    "glass-and-steel": ((0.55, 0.60, 0.64), (0.30, 0.42, 0.52), 0.88, 0.85),
    "wood siding": ((0.74, 0.70, 0.62), (0.17, 0.18, 0.20), 0.35, 0.45),
    "concrete": ((0.62, 0.62, 0.60), (0.20, 0.22, 0.25), 0.50, 0.50),
    "tiled": ((0.82, 0.83, 0.80), (0.22, 0.26, 0.30), 0.45, 0.50),
    "glass": ((0.50, 0.58, 0.62), (0.28, 0.42, 0.50), 0.90, 0.85),
    "painted concrete": ((0.80, 0.74, 0.62), (0.20, 0.22, 0.25), 0.45, 0.50),
    "concrete block": ((0.64, 0.63, 0.60), (0.14, 0.14, 0.15), 0.30, 0.40),
    "painted plaster": ((0.86, 0.76, 0.58), (0.16, 0.16, 0.18), 0.35, 0.45),
    "corrugated metal": ((0.60, 0.58, 0.55), (0.14, 0.14, 0.15), 0.20, 0.35),
    "mud brick": ((0.66, 0.52, 0.38), (0.12, 0.11, 0.10), 0.25, 0.35),
    "plastered": ((0.84, 0.78, 0.66), (0.17, 0.18, 0.20), 0.40, 0.45),
    "colonial stone": ((0.74, 0.68, 0.56), (0.15, 0.14, 0.14), 0.35, 0.55),
    "weatherboard": ((0.86, 0.86, 0.82), (0.17, 0.18, 0.20), 0.35, 0.45),
    "rendered": ((0.84, 0.81, 0.74), (0.18, 0.20, 0.23), 0.45, 0.50),
}
DEFAULT_LOOK = FACADE_LOOKS["concrete"]
# Painted walls come in a city's range of colours rather than one.
PAINT_COLOURS = np.asarray(
    [
        (0.90, 0.80, 0.55),
        (0.85, 0.60, 0.50),
        (0.62, 0.76, 0.80),
        (0.80, 0.84, 0.68),
        (0.92, 0.90, 0.84),
        (0.86, 0.68, 0.72),
    ],
    dtype=np.float32,
)
# Share of a tree's height below its crown, by climate (palms are tall, conifers low).
CROWN_BASE = {"tropical": 0.45, "arid": 0.3, "temperate": 0.35, "cold": 0.15}
TRUNK_RADIUS_M = 0.25
UNDERSIDE_RANGE_M = 40.0  # crown undersides are drawn up to this distance
TRUNK_RGB = np.asarray((0.24, 0.18, 0.12), dtype=np.float32)
PAVEMENT_RGB = np.asarray((0.56, 0.55, 0.52), dtype=np.float32)
# The satellite render's seasonal vegetation colours (browned in winter, dried in summer).
MARK_HALF_WIDTH_M = 0.08  # road markings are about 15 cm wide
# Distance at which haze hides 63% of a surface, by climate (dust and humid air scatter more).
VISIBILITY_M = {"arid": 2500.0, "tropical": 3000.0, "temperate": 5000.0, "cold": 8000.0}
_KEYS = {
    purpose: stable_int("street view", purpose)
    for purpose in ("crown", "bark", "material", "wall", "leaves")
}
OFF_MAP_HEIGHT = np.float32(-1e6)  # projects below the image: what stands there is never seen


@dataclass(frozen=True)
class StreetViewConfig:
    """Size, viewpoint and reach of a street panorama."""

    width: int = 512
    height: int = 128
    eye_height_m: float = 1.7
    max_range_m: float = 150.0
    # Ray steps grow with distance like a pixel's footprint, bounded in map pixels: small
    # enough near the eye not to step over a one-pixel crown, at most this far apart.
    min_step_px: float = 0.5
    max_step_px: float = 0.8
    storey_m: float = 3.2  # the storey height the descriptions count floors with
    noise: float = 0.01  # sensor read noise, as a fraction of full scale

    def check(self) -> None:
        """Raise :class:`PlanetlocError` naming the first unusable setting."""
        for name in ("eye_height_m", "max_range_m", "min_step_px", "max_step_px", "storey_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise PlanetlocError(f"street view {name} must be a positive number, got {value}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise PlanetlocError(f"street view noise must be >= 0, got {self.noise}")
        if self.width < 8:
            raise PlanetlocError(f"street view width must be at least 8 px, got {self.width}")
        if not 2 <= self.height < self.width / 2:
            raise PlanetlocError(
                f"street view height must be 2 px to under half the width ({self.width}) so "
                f"the view stays within +-90 degrees, got {self.height}"
            )
        if self.min_step_px > self.max_step_px:
            raise PlanetlocError(
                f"street view min_step_px ({self.min_step_px}) exceeds "
                f"max_step_px ({self.max_step_px})"
            )


def column_of_bearing(bearing_deg: float, heading_deg: float, width: int) -> float:
    """Fractional column whose centre looks at compass ``bearing_deg``, in [-0.5, width - 0.5)."""
    relative = (bearing_deg - heading_deg + 180.0) % 360.0
    return relative / 360.0 * width - 0.5


def bearing_of_column(column: float, heading_deg: float, width: int) -> float:
    """Compass bearing in [0, 360) that (fractional) ``column`` looks at."""
    return (heading_deg + ((column + 0.5) / width - 0.5) * 360.0) % 360.0


def row_of_elevation(elevation_deg: float, height: int, width: int) -> float:
    """Fractional row whose centre looks at ``elevation_deg`` above the horizon."""
    return height / 2 - elevation_deg * width / 360.0 - 0.5


def elevation_of_row(row: float, height: int, width: int) -> float:
    """Elevation in degrees above the horizon that (fractional) ``row`` looks at."""
    return (height / 2 - (row + 0.5)) * 360.0 / width


@dataclass(frozen=True)
class _Geometry:
    """What depends only on the configuration and the map's pixel size."""

    dist: np.ndarray  # (S,) sample distances along every ray, metres
    ground_row: np.ndarray  # (S,) row (continuous) where the ground at each distance appears
    rel_bearing: np.ndarray  # (W,) bearing of each column relative to the heading, radians
    elevation: np.ndarray  # (H,) elevation of each row centre, radians
    ground_dist: np.ndarray  # (H,) distance of the ground seen by each row, inf above horizon
    rad_per_px: float
    radius_px: int  # half-size of the map window the rays can reach


@lru_cache(maxsize=16)
def _geometry(cfg: StreetViewConfig, gsd: float) -> _Geometry:
    rad_per_px = 2 * math.pi / cfg.width
    dists = []
    d = 0.25 * gsd
    while d <= cfg.max_range_m:
        dists.append(d)
        d += min(max(d * rad_per_px, cfg.min_step_px * gsd), cfg.max_step_px * gsd)
    dist = np.asarray(dists, dtype=np.float32)
    horizon = cfg.height / 2
    ground_row = (horizon + np.arctan(cfg.eye_height_m / dist) / rad_per_px).astype(np.float32)
    rel_bearing = ((np.arange(cfg.width) + 0.5) / cfg.width - 0.5) * 2 * math.pi
    elevation = (horizon - (np.arange(cfg.height) + 0.5)) * rad_per_px
    with np.errstate(divide="ignore"):
        ground_dist = np.where(
            elevation < 0, cfg.eye_height_m / np.tan(np.minimum(-elevation, 1.5)), np.inf
        )
    geo = _Geometry(
        dist=dist,
        ground_row=ground_row,
        rel_bearing=rel_bearing.astype(np.float32),
        elevation=elevation.astype(np.float32),
        ground_dist=ground_dist.astype(np.float32),
        rad_per_px=rad_per_px,
        radius_px=int(math.ceil(cfg.max_range_m / gsd)) + 3,
    )
    for array in (geo.dist, geo.ground_row, geo.rel_bearing, geo.elevation, geo.ground_dist):
        array.flags.writeable = False  # shared between calls through the cache
    return geo


def _noise(purpose: str, *coords: np.ndarray) -> np.ndarray:
    """Uniform (0, 1] float32 per element, keyed on integer coordinates: texture that stays
    on its place in the world whichever window or view renders it, and needs no generator."""
    return unit_fields(hash_u64(_KEYS[purpose], *coords), 1)[0]


def _box_sum(mask: np.ndarray, k: int) -> np.ndarray:
    """Count of set cells in the k x k box (k odd) around each cell of a boolean array."""
    pad = k // 2
    a = np.pad(mask.astype(np.int16), pad)
    n_rows, n_cols = mask.shape
    rows = a[0:n_rows].copy()
    for i in range(1, k):
        rows += a[i : i + n_rows]
    out = rows[:, 0:n_cols].copy()
    for j in range(1, k):
        out += rows[:, j : j + n_cols]
    return out


def _box_max(a: np.ndarray, k: int) -> np.ndarray:
    """Maximum over the k x k box (k odd) around each cell."""
    pad = k // 2
    p = np.pad(a, pad, constant_values=-np.inf)
    n_rows, n_cols = a.shape
    rows = p[0:n_rows].copy()
    for i in range(1, k):
        np.maximum(rows, p[i : i + n_rows], out=rows)
    out = rows[:, 0:n_cols].copy()
    for j in range(1, k):
        np.maximum(out, rows[:, j : j + n_cols], out=out)
    return out


def _crop(layer: np.ndarray, r0: int, c0: int, size: int, fill: float | int) -> np.ndarray:
    """``layer[r0 : r0 + size, c0 : c0 + size]``, filled with ``fill`` beyond its edges."""
    out = np.full((size, size, *layer.shape[2:]), fill, dtype=layer.dtype)
    h, w = layer.shape[:2]
    rs0, rs1 = max(r0, 0), min(r0 + size, h)
    cs0, cs1 = max(c0, 0), min(c0 + size, w)
    if rs0 < rs1 and cs0 < cs1:
        out[rs0 - r0 : rs1 - r0, cs0 - c0 : cs1 - c0] = layer[rs0:rs1, cs0:cs1]
    return out


def _seasonal(albedo: np.ndarray, cls: np.ndarray, season: str, climate: str) -> np.ndarray:
    """Planar surface colours (3, N) of classes ``cls`` (N,) as the satellite shows ``season``."""
    out = seasonal_albedo(np.ascontiguousarray(albedo.T), cls, season, climate)
    return np.ascontiguousarray(out.T, dtype=np.float32)


@dataclass(frozen=True)
class _Light:
    sun: np.ndarray  # (3,) unit vector towards the sun: east, north, up
    direct: float  # direct sunlight on a surface facing the sun
    ambient: float  # skylight on any surface
    zenith: np.ndarray  # (3, 1) sky colour overhead
    horizon: np.ndarray  # (3, 1) sky colour at the horizon
    glow: np.ndarray  # (3, 1) colour of the light scattered around the sun
    visibility_m: float  # distance at which haze hides 63% of a surface


def _light(scene: Scene, climate: str, rng: np.random.Generator) -> _Light:
    el = math.radians(scene.sun_elevation_deg)
    az = math.radians(scene.sun_azimuth_deg)
    sun = np.asarray(
        [math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)], dtype=np.float32
    )
    high = float(np.clip((scene.sun_elevation_deg - 10.0) / 50.0, 0.0, 1.0))
    # A low sun shines through more air: weaker, warmer light and a warmer, paler horizon.
    zenith = np.asarray([0.30, 0.48, 0.80]) * (1 - high) + np.asarray([0.22, 0.42, 0.85]) * high
    horizon = np.asarray([0.90, 0.80, 0.68]) * (1 - high) + np.asarray([0.76, 0.84, 0.93]) * high
    glow = np.asarray([1.0, 0.85, 0.60]) * (1 - high) + np.asarray([1.0, 0.97, 0.88]) * high
    # Dust and humid summer air scatter more than clear cold air.
    visibility = VISIBILITY_M.get(climate, 5000.0) * (0.7 if scene.season == "summer" else 1.0)
    visibility *= float(rng.uniform(0.6, 1.4))
    if climate == "arid":
        horizon = horizon * 0.8 + np.asarray([0.85, 0.78, 0.64]) * 0.2
    return _Light(
        sun=sun,
        direct=0.45 + 0.35 * high,
        ambient=0.42,
        zenith=zenith.astype(np.float32)[:, None],
        horizon=horizon.astype(np.float32)[:, None],
        glow=glow.astype(np.float32)[:, None],
        visibility_m=visibility,
    )


def _sky(light: _Light, elevation: np.ndarray, bearing: np.ndarray) -> np.ndarray:
    """Sky colour (3, rows, columns) for row elevations and column bearings in radians."""
    e = np.maximum(elevation, 0)[:, None]
    up = 1 - np.exp(-e / np.float32(0.3))  # (rows, 1)
    base = light.horizon[:, :, None] + (light.zenith - light.horizon)[:, :, None] * up
    cos_gamma = np.sin(e) * light.sun[2] + np.cos(e) * (
        np.sin(bearing) * light.sun[0] + np.cos(bearing) * light.sun[1]
    )
    # The chord between the view and the sun on the unit sphere: near the sun, the angle.
    chord = np.sqrt(np.maximum(2 - 2 * cos_gamma, 0))
    glow = 0.45 * np.exp(-chord / np.float32(0.12)) + 0.15 * np.exp(-chord / np.float32(0.6))
    glow = np.where(chord < np.float32(0.012), np.float32(1), glow)  # the sun's disc
    return (base + (light.glow[:, :, None] - base) * glow).astype(np.float32)


def _haze(dist: np.ndarray, light: _Light, max_range: float) -> np.ndarray:
    """Share of a surface's colour replaced by haze at ``dist`` metres: 1 at the max range."""
    air = 1 - np.exp(-dist / np.float32(light.visibility_m))
    # The range limit is hidden by a fog that thickens over the last part of the range.
    t = np.clip((dist / np.float32(max_range) - 0.45) / 0.55, 0, 1)
    fog = t * t * (3 - 2 * t)
    return np.clip(air + fog - air * fog, 0, 1).astype(np.float32)


@dataclass(frozen=True)
class _Window:
    """The square of the map around the observer that the rays can reach.

    Flat layers are indexed by ``row * size + col``; colours are planar, (3, size * size).
    """

    size: int
    row0: int  # region row of window row 0 (textures are tied to region pixels)
    col0: int
    cls: np.ndarray  # uint8, OUTSIDE beyond the map
    albedo: np.ndarray  # (3, n) seasonal surface colour
    ground: np.ndarray  # (3, n) lit colour of the ground, road markings painted over
    light: np.ndarray  # (n,) light falling on the ground
    roof: np.ndarray  # uint8
    solid: np.ndarray  # float32 height of buildings and trunks, very negative off the map
    trunk: np.ndarray  # bool, cells holding a tree's trunk
    crown_top: np.ndarray  # float32, very negative off crowns
    crown_bottom: np.ndarray  # float32, very high off crowns
    built: np.ndarray  # (size, size) int16 buildings in the 5 x 5 box around each cell
    leafy: np.ndarray  # (size, size) int16 crowns in the 5 x 5 box around each cell
    mark: np.ndarray  # bool, road-marking cells
    mark_bearing: np.ndarray  # float32 radians, direction of the marking line in a cell

    def region_pixel(self, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Region (row, col) of flat window cells."""
        rows, cols = np.divmod(cell, self.size)
        return rows + self.row0, cols + self.col0


def _window(
    region_map: RegionMap, scene: Scene, obs: Observer, radius: int, light: _Light
) -> _Window:
    size = 2 * radius + 1
    r0, c0 = obs.row - radius, obs.col - radius
    style = region_map.style
    cls = _crop(region_map.cls, r0, c0, size, OUTSIDE)
    flat_cls = cls.ravel()
    height = _crop(region_map.height, r0, c0, size, 0.0).astype(np.float32)
    albedo = _crop(region_map.albedo, r0, c0, size, 0.0).reshape(-1, 3).T
    albedo = _seasonal(albedo, flat_cls, scene.season, style.climate)
    shadow = _crop(scene.shadow, r0, c0, size, False)
    building = cls == BUILDING
    tree = cls == TREE

    # Road markings are a cell wide on the map but a hand wide on the street: the ground is
    # asphalt under them, and each is drawn as a thin line along the street axis it follows.
    red, blue = albedo[0].reshape(size, size), albedo[2].reshape(size, size)
    mark = (cls == ROAD) & (red > 0.55) & (blue < red - 0.1)
    axis = math.radians(region_map.street_axis_deg)
    runs = []
    for bearing in (axis, axis + math.pi / 2):
        dr, dc = -round(math.cos(bearing)), round(math.sin(bearing))
        runs.append(np.roll(mark, (dr, dc), (0, 1)) | np.roll(mark, (-dr, -dc), (0, 1)))
    mark_bearing = np.where(runs[1] & ~runs[0], axis + math.pi / 2, axis).astype(np.float32)

    # Asphalt under the markings, pavement at the foot of a wall, shaded grass and earth
    # under a crown.
    kind = np.full(cls.shape, -1, dtype=np.int8)
    kind[mark] = 0
    kind[building] = 1
    kind[tree] = 2
    asphalt = np.asarray(style.asphalt_rgb, dtype=np.float32)[:, None]
    asphalt = _seasonal(asphalt, np.full(1, ROAD), scene.season, style.climate)[:, 0]
    under = (np.asarray(style.grass_rgb) + np.asarray(style.soil_rgb)) * 0.4
    cover = np.stack([asphalt, PAVEMENT_RGB, under]).astype(np.float32)  # (3 kinds, rgb)
    covered = np.flatnonzero(kind.ravel() >= 0)
    which = kind.ravel().take(covered)
    lit = np.float32(light.ambient) + np.float32(light.direct * light.sun[2]) * ~(shadow | tree)
    lit = lit.ravel()
    ground = albedo.copy()
    for c in range(3):
        ground[c][covered] = cover[:, c].take(which)
        ground[c] *= lit

    solid = np.where(tree, np.float32(0), height)
    solid[cls == OUTSIDE] = OFF_MAP_HEIGHT
    crown_top = np.full_like(height, OFF_MAP_HEIGHT)
    crown_bottom = np.full_like(height, -OFF_MAP_HEIGHT)
    trunk = np.zeros(cls.shape, dtype=bool)
    leafy = _box_sum(tree, 5)
    cells = np.flatnonzero(tree)
    if len(cells):
        t_rows, t_cols = np.divmod(cells, size)
        # Crowns are rounded (lower towards their rim, with a ragged outline) and hang above
        # a clear trunk whose share of the height depends on the kind of tree.
        fill = _box_sum(tree, 3).take(cells) / np.float32(9)
        ragged = _noise(
            "crown", t_rows + r0 + region_map.origin[0], t_cols + c0 + region_map.origin[1]
        )
        h = height.take(cells)
        base = CROWN_BASE.get(style.climate, 0.35)
        crown_top.ravel()[cells] = h * (0.7 + 0.3 * fill) * (0.9 + 0.2 * ragged)
        crown_bottom.ravel()[cells] = h * (base + (1 - base) * 0.5 * (1 - fill))
        # One trunk under each crown's fullest point.
        key = np.full(cls.shape, -1.0, dtype=np.float32)
        key.ravel()[cells] = leafy.take(cells) + ragged
        trunk = tree & (key >= _box_max(key, 5))
        solid[trunk] = crown_bottom[trunk] + np.float32(1.0)

    return _Window(
        size=size,
        row0=r0 + region_map.origin[0],
        col0=c0 + region_map.origin[1],
        cls=flat_cls,
        albedo=albedo,
        ground=ground,
        light=lit,
        roof=_crop(region_map.roof, r0, c0, size, 0).ravel(),
        solid=solid.ravel(),
        trunk=trunk.ravel(),
        crown_top=crown_top.ravel(),
        crown_bottom=crown_bottom.ravel(),
        built=_box_sum(building, 5),
        leafy=leafy,
        mark=mark.ravel(),
        mark_bearing=mark_bearing.ravel(),
    )


def _first_rows(
    height_m: np.ndarray, dist: np.ndarray, eye: float, rows: int, rad_per_px: float
) -> np.ndarray:
    """First image row (from the top) whose centre lies at or below ``height_m`` at ``dist``."""
    top = rows / 2 - np.arctan((height_m - np.float32(eye)) / dist) / np.float32(rad_per_px)
    return np.clip(np.ceil(top - 0.5), 0, rows).astype(np.int16)


def _nearest_cover(first: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The y-buffer: for every pixel, the nearest ray sample whose top reaches down to it.

    ``first`` (steps, columns) holds the first row each sample covers. Returns the flat
    (step * columns + column) index of every sample that raised its column's cover (a
    segment), and for every pixel (rows, columns) its segment's number in that list, or the
    list's length where nothing covers it.
    """
    n_cols = first.shape[1]
    ybuf = _running_min(first)
    prev = np.empty_like(ybuf)
    prev[0] = rows
    prev[1:] = ybuf[:-1]
    seg = np.flatnonzero(ybuf < prev)
    owner = np.full(rows * n_cols, len(seg), dtype=np.int32)
    # A segment's number grows with distance along its column, so the smallest number among
    # the segments whose cover starts at or above a row is the nearest one.
    owner[ybuf.take(seg).astype(np.int32) * n_cols + seg % n_cols] = np.arange(
        len(seg), dtype=np.int32
    )
    return seg, _running_min(owner.reshape(rows, n_cols))


def _running_min(a: np.ndarray) -> np.ndarray:
    """``np.minimum.accumulate(a, axis=0)``, row by row: for these shapes twice as fast."""
    out = a.copy()
    for i in range(1, len(out)):
        np.minimum(out[i - 1], out[i], out=out[i])
    return out


@dataclass(frozen=True)
class _Rays:
    """Every column's ray sampled at the shared distances."""

    flat: np.ndarray  # (S, W) window cell of each sample
    dir_e: np.ndarray  # (W,) east component of each column's direction
    dir_n: np.ndarray  # (W,) north component


def render_panorama(
    region_map: RegionMap,
    scene: Scene,
    observer: Observer,
    cfg: StreetViewConfig | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A 360-degree street-level panorama, (height, width, 3) uint8, in the module's convention.

    ``rng`` draws the haze density, white balance and sensor noise; without one a generator
    seeded from the standing point is used, so the same inputs always give the same bytes.
    """
    cfg = cfg or StreetViewConfig()
    cfg.check()
    n_rows, n_cols = region_map.shape
    if not (0 <= observer.row < n_rows and 0 <= observer.col < n_cols):
        raise PlanetlocError(
            f"observer at row {observer.row}, col {observer.col} is outside the "
            f"{n_rows}x{n_cols} region map"
        )
    if not math.isfinite(observer.heading_deg):
        raise PlanetlocError(
            f"observer heading must be a finite number, got {observer.heading_deg}"
        )
    if scene.shadow.shape != region_map.shape:
        raise PlanetlocError(
            f"scene shadow mask is {scene.shadow.shape}, the region map {region_map.shape}"
        )
    if rng is None:
        rng = np.random.default_rng(
            stable_int("street", observer.row, observer.col, observer.heading_deg)
        )
    gsd = float(region_map.gsd)
    geo = _geometry(cfg, gsd)
    light = _light(scene, region_map.style.climate, rng)
    win = _window(region_map, scene, observer, geo.radius_px, light)
    H, W = cfg.height, cfg.width

    bearing = (geo.rel_bearing + np.float32(math.radians(observer.heading_deg))).astype(np.float32)
    dir_e, dir_n = np.sin(bearing), np.cos(bearing)
    centre = np.float32(geo.radius_px + 0.5)  # the observer stands at its cell's centre
    step = geo.dist[:, None] / np.float32(gsd)
    # Truncation is floor here: window coordinates are positive.
    flat = (centre - step * dir_n).astype(np.int32) * win.size
    flat += (centre + step * dir_e).astype(np.int32)
    rays = _Rays(flat=flat, dir_e=dir_e, dir_n=dir_n)

    solid_h, solid_seg, solid_owner, solid_px, d_solid = _trace_solids(win, geo, cfg, gsd, rays)
    crown_seg, crown_owner, crown_px = _trace_crowns(win, geo, cfg, rays, d_solid)

    # Start from what lies behind everything: the sky, and the horizon's colour below it.
    # Haze fades each surface towards that, so at the maximum range things melt into it.
    image = np.empty((3, H, W), dtype=np.float32)
    n_sky = int(np.count_nonzero(geo.elevation >= 0))
    image[:, :n_sky] = _sky(light, geo.elevation[:n_sky], bearing)
    image[:, n_sky:] = _sky(light, np.zeros(1, dtype=np.float32), bearing)
    image = image.reshape(3, H * W)

    below = (geo.elevation < 0)[:, None]
    pixels = np.flatnonzero(below & ~solid_px & ~crown_px)
    if len(pixels):
        rows, cols = np.divmod(pixels, W)
        rgb, d = _ground(win, geo, light, cfg, gsd, rows, cols, rays)
        _put(image, pixels, rgb, _haze(d, light, cfg.max_range_m))

    pixels = np.flatnonzero(solid_px & ~crown_px)
    if len(pixels):
        rows, cols = np.divmod(pixels, W)
        rgb, d = _solids(
            win, geo, light, cfg, gsd, region_map, rays, solid_seg, solid_h,
            solid_owner.take(pixels), rows,
        )  # fmt: skip
        _put(image, pixels, rgb, _haze(d, light, cfg.max_range_m))

    pixels = np.flatnonzero(crown_px)
    if len(pixels):
        rows, cols = np.divmod(pixels, W)
        rgb, d = _crowns(win, geo, light, cfg, rays, crown_seg, crown_owner.take(pixels), rows)
        _put(image, pixels, rgb, _haze(d, light, cfg.max_range_m))

    # What a camera adds: a white balance of its own and read noise, then 8-bit rounding.
    image *= (rng.uniform(0.94, 1.06, size=3) * 255).astype(np.float32)[:, None]
    image += np.float32(0.5)
    if cfg.noise > 0:
        # Uniform noise of standard deviation ``noise`` of full scale: width sqrt(12) * noise.
        grain = rng.integers(-128, 128, size=image.shape, dtype=np.int8)
        image += grain * np.float32(cfg.noise * math.sqrt(12) * 255 / 256)
    np.clip(image, 0, 255, out=image)
    return np.ascontiguousarray(image.astype(np.uint8).reshape(3, H, W).transpose(1, 2, 0))


def _put(image: np.ndarray, pixels: np.ndarray, rgb: np.ndarray, haze: np.ndarray) -> None:
    """Write colours (3, N) at flat ``pixels``, faded by ``haze`` towards what lies behind."""
    for c in range(3):
        behind = image[c].take(pixels)
        image[c][pixels] = rgb[c] + (behind - rgb[c]) * haze


def _trace_solids(
    win: _Window, geo: _Geometry, cfg: StreetViewConfig, gsd: float, rays: _Rays
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Y-buffer of walls, trunks and ground: each pixel's segment, and where walls show.

    Returns each sample's standing height, the segments, each pixel's segment, which pixels
    show something standing, and each pixel's distance (inf for sky).
    """
    H = cfg.height
    solid = win.solid.take(rays.flat)
    hits = np.flatnonzero(win.trunk.take(rays.flat))
    if len(hits):
        # A trunk is a thin post at its cell's centre: rays that pass it by see past it.
        cell = rays.flat.take(hits)
        col = hits % cfg.width
        off_e = (cell % win.size - geo.radius_px).astype(np.float32) * np.float32(gsd)
        off_n = (geo.radius_px - cell // win.size).astype(np.float32) * np.float32(gsd)
        miss = np.abs(rays.dir_e.take(col) * off_n - rays.dir_n.take(col) * off_e)
        solid.ravel()[hits[miss > TRUNK_RADIUS_M]] = 0
    dist = geo.dist[:, None]
    seg, owner = _nearest_cover(_first_rows(solid, dist, cfg.eye_height_m, H, geo.rad_per_px), H)
    steps = seg // cfg.width
    seg_h = np.append(solid.take(seg), np.float32(0))
    seg_base = np.append(geo.ground_row.take(steps), np.float32(0))
    seg_d = np.append(geo.dist.take(steps), np.float32(np.inf))
    # A sample standing above the ground covers down to its foot; below that, nearer ground.
    rows = np.arange(H, dtype=np.float32)[:, None] + np.float32(0.5)
    standing = (seg_h.take(owner) > 0) & (rows < seg_base.take(owner))
    d_solid = np.where(standing, seg_d.take(owner), geo.ground_dist[:, None])
    return solid, seg, owner, standing, d_solid


def _trace_crowns(
    win: _Window, geo: _Geometry, cfg: StreetViewConfig, rays: _Rays, d_solid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crowns hang between a top and a bottom, in front of the solid scene or hidden by it.

    A pixel's crown is the nearest sample that covers it from above (its top reaches down to
    the pixel) unless the view passes under it, or else the nearest that covers it from below
    (its underside reaches up to the pixel) unless the view passes over it; a crown seen
    between two nearer ones is missed. Returns the segments (flat sample index, one blank
    standing for "none" after each list), each pixel's segment and which pixels show a crown.
    """
    H, W = cfg.height, cfg.width
    # Only the steps between the nearest and the farthest crown sample are traced.
    top = win.crown_top.take(rays.flat)
    steps = np.flatnonzero((top > 0).any(axis=1))
    if not len(steps):
        return np.zeros(1, dtype=np.int64), np.zeros(d_solid.shape, np.int32), d_solid < -1
    lo, hi = int(steps[0]), int(steps[-1]) + 1
    flat = rays.flat[lo:hi]
    dist = geo.dist[lo:hi, None]
    # Off crowns the top lies far below and the bottom far above: they cover nothing.
    first = _first_rows(top[lo:hi], dist, cfg.eye_height_m, H, geo.rad_per_px)
    a_seg, a_owner = _nearest_cover(first, H)
    # Undersides are looked up at only near by: farther away they are slivers at the horizon.
    near = max(int(np.searchsorted(geo.dist[lo:hi], UNDERSIDE_RANGE_M)), 1)
    end = _first_rows(
        win.crown_bottom.take(flat[:near]), dist[:near], cfg.eye_height_m, H, geo.rad_per_px
    )
    b_seg, b_owner = _nearest_cover(H - end, H)  # as above, counted from the bottom up
    b_owner = b_owner[::-1]
    a_steps = a_seg // W
    a_end = _first_rows(
        win.crown_bottom.take(flat.take(a_seg)),
        geo.dist.take(a_steps + lo),
        cfg.eye_height_m,
        H,
        geo.rad_per_px,
    )
    rows = np.arange(H, dtype=np.int16)[:, None]
    from_above = rows < np.append(a_end, np.int16(0)).take(a_owner)
    from_below = rows >= np.append(first.take(b_seg), np.int16(H)).take(b_owner)
    seg = np.concatenate([a_seg, [0], b_seg, [0]]) + lo * W
    owner = np.where(from_above, a_owner, b_owner + (len(a_seg) + 1))
    d = geo.dist.take(seg // W)
    d[[len(a_seg), -1]] = np.inf
    return seg, owner, (from_above | from_below) & (d.take(owner) < d_solid)


def _ground(
    win: _Window,
    geo: _Geometry,
    light: _Light,
    cfg: StreetViewConfig,
    gsd: float,
    rows: np.ndarray,
    cols: np.ndarray,
    rays: _Rays,
) -> tuple[np.ndarray, np.ndarray]:
    """Colour (3, N) of the ground point each pixel sees, and the distance to haze it by.

    Interpolated between cell centres, as near the eye a map cell spans many pixels. Ground
    off the map is all haze.
    """
    d_m = np.minimum(geo.ground_dist.take(rows), np.float32(cfg.max_range_m + 4 * gsd))
    d = d_m / np.float32(gsd)
    dir_e, dir_n = rays.dir_e.take(cols), rays.dir_n.take(cols)
    last = np.float32(win.size - 1.001)
    # Window coordinates of the point, shifted by half a cell so that cell centres are integers.
    pr = np.clip(np.float32(geo.radius_px) - d * dir_n, 0, last)
    pc = np.clip(np.float32(geo.radius_px) + d * dir_e, 0, last)
    r0, c0 = pr.astype(np.int32), pc.astype(np.int32)
    fr, fc = pr - r0, pc - c0
    i00 = r0 * win.size + c0
    i10 = i00 + win.size
    rgb = np.empty((3, len(rows)), dtype=np.float32)
    for c in range(3):
        g = win.ground[c]
        top = g.take(i00) + (g.take(i00 + 1) - g.take(i00)) * fc
        bottom = g.take(i10) + (g.take(i10 + 1) - g.take(i10)) * fc
        rgb[c] = top + (bottom - top) * fr
    rn, cn = (pr + 0.5).astype(np.int32), (pc + 0.5).astype(np.int32)
    nearest = rn * win.size + cn
    cls = win.cls.take(nearest)

    painted = np.flatnonzero(win.mark.take(nearest))
    if len(painted):
        # A line through the cell's centre: cover the pixel by the share of its footprint
        # that the line fills, so distant lines fade instead of breaking into dots.
        line = win.mark_bearing.take(nearest.take(painted))
        off_e = (pc.take(painted) - cn.take(painted)) * np.float32(gsd)
        off_n = (rn.take(painted) - pr.take(painted)) * np.float32(gsd)
        across = np.abs(off_e * np.cos(line) - off_n * np.sin(line))
        footprint = np.maximum(d_m.take(painted) * np.float32(geo.rad_per_px), 0.01)
        cover = np.clip((MARK_HALF_WIDTH_M + footprint / 2 - across) / footprint, 0, 1)
        cover *= np.minimum(1, 2 * MARK_HALF_WIDTH_M / footprint)
        cell = nearest.take(painted)
        lit = win.light.take(cell)
        for c in range(3):
            paint = win.albedo[c].take(cell) * lit
            rgb[c][painted] += (paint - rgb[c].take(painted)) * cover

    wet = np.flatnonzero((cls == WATER) | (cls == POOL))
    if len(wet):
        # Water mirrors the sky, more so at grazing angles (Schlick's Fresnel term).
        grazing = np.minimum(np.float32(cfg.eye_height_m) / np.maximum(d_m.take(wet), 0.01), 1)
        mirror = (0.02 + 0.98 * (1 - grazing) ** 5) * np.float32(0.8)
        for c in range(3):
            rgb[c][wet] += (light.horizon[c, 0] - rgb[c].take(wet)) * mirror
    haze_d = np.where(cls == OUTSIDE, np.float32(np.inf), d_m)
    return rgb, np.minimum(haze_d, np.float32(cfg.max_range_m))


def _compact(seg: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The segment numbers that ``seg`` uses, and ``seg`` renumbered into that list."""
    used = np.zeros(count, dtype=bool)
    used[seg] = True
    return np.flatnonzero(used), (np.cumsum(used) - 1).take(seg)


def _outward_normal(
    count: np.ndarray, cell: np.ndarray, size: int, de: np.ndarray, dn: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal outward normal (east, north) at window cells from a box count of a mask.

    Outlines of rotated footprints are pixel staircases; the gradient of the box count gives
    a surface's true direction, so a facade is lit evenly instead of in stripes. Also returns
    how far (in cells) the outline lies out from the cell centre and the cosine between the
    normal and the ray. Where the count gives no direction, or one facing away from the eye,
    the surface faces the eye.
    """
    flat = count.ravel()
    cell = np.clip(cell, size + 1, flat.size - size - 2)
    grad_c = (flat.take(cell + 1) - flat.take(cell - 1)).astype(np.float32) / 2
    grad_r = (flat.take(cell + size) - flat.take(cell - size)).astype(np.float32) / 2
    norm = np.sqrt(grad_c * grad_c + grad_r * grad_r)
    safe = np.maximum(norm, np.float32(1e-6))
    n_e, n_n = -grad_c / safe, grad_r / safe
    facing = n_e * de + n_n * dn
    bad = (facing > -0.05) | (norm < 0.5)
    n_e = np.where(bad, -de, n_e)
    n_n = np.where(bad, -dn, n_n)
    facing = np.where(bad, np.float32(-1), facing)
    # The count falls by ``norm`` per cell across the outline, which lies where it is half.
    half = np.float32(12.5)
    edge = np.where(bad, 0, np.clip((flat.take(cell) - half) / np.maximum(norm, 1), -1.5, 1.5))
    return n_e, n_n, edge.astype(np.float32), facing


def _solids(
    win: _Window,
    geo: _Geometry,
    light: _Light,
    cfg: StreetViewConfig,
    gsd: float,
    region_map: RegionMap,
    rays: _Rays,
    seg: np.ndarray,
    solid: np.ndarray,
    owner: np.ndarray,
    rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Colour (3, N) and distance of wall and trunk pixels; ``owner`` is each one's segment."""
    used, owner = _compact(owner, len(seg) + 1)
    seg = seg.take(used)
    steps, cols = np.divmod(seg, cfg.width)
    cell = rays.flat.take(seg)
    # Per segment: where the ray met the wall and which way the wall faces.
    de, dn = rays.dir_e.take(cols), rays.dir_n.take(cols)
    n_e, n_n, edge, facing = _outward_normal(win.built, cell, win.size, de, dn)
    off_e = (cell % win.size - geo.radius_px).astype(np.float32)
    off_n = (geo.radius_px - cell // win.size).astype(np.float32)
    # The wall is the plane through the outline: meeting the ray with it keeps window bays
    # still on the facade as the view turns.
    plane = (off_e * n_e + off_n * n_n + edge) * np.float32(gsd)
    d_step = geo.dist.take(steps)
    d_hit = np.maximum(np.clip(plane / facing, d_step - 2 * gsd, d_step), np.float32(0.05))
    # Position along the facade, measured from the eye: the blurred normal wobbles a little,
    # and measuring from a far origin would magnify the wobble into jumping window bays.
    along = d_hit * (de * n_n - dn * n_e)
    height = solid.take(seg)
    trunk = win.trunk.take(cell)
    sun_away = np.maximum(-(de * light.sun[0] + dn * light.sun[1]), 0)

    d = d_hit.take(owner)
    z = np.float32(cfg.eye_height_m) + d * np.tan(geo.elevation.take(rows))
    out = np.empty((3, len(rows)), dtype=np.float32)
    is_trunk = trunk.take(owner)
    wall = np.flatnonzero(~is_trunk)
    if len(wall):
        o = owner.take(wall)
        out[:, wall] = _facades(
            win, light, cfg, region_map, cell.take(o), z.take(wall), along.take(o),
            height.take(o), n_e.take(o), n_n.take(o),
        )  # fmt: skip
    bark = np.flatnonzero(is_trunk)
    if len(bark):
        o = owner.take(bark)
        abs_r, abs_c = win.region_pixel(cell.take(o))
        grain = _noise("bark", abs_r, abs_c, (z.take(bark) / 0.2).astype(np.int32))
        # Seen with the sun behind the eye a trunk is lit; against the sun it is in its shade.
        lit = (light.ambient + 0.5 * light.direct * sun_away.take(o)) * (0.8 + 0.4 * grain)
        out[:, bark] = TRUNK_RGB[:, None] * lit
    return out, d


def facade_material_index(height_m: np.ndarray, roof: np.ndarray, count: int) -> np.ndarray:
    """Which of a style's ``count`` facade materials each building cell is built of.

    A building's cells share their height and roof colour (``RegionMap.height`` and
    ``roof``), so the whole building gets one material, the same in every view; a text that
    names the facades around a point can count these to agree with the street view.
    """
    return _building_draws(np.asarray(height_m), np.asarray(roof), count)[0]


def _building_draws(
    height_m: np.ndarray, roof: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per building cell: material index, a uniform for its tone, a uniform for its bays."""
    key = (np.round(height_m * 4).astype(np.int64), roof.astype(np.int64))
    pick, tone, bays = unit_fields(hash_u64(_KEYS["material"], *key), 3)
    return np.minimum((pick * count).astype(np.int64), count - 1), tone, bays


def _facades(
    win: _Window,
    light: _Light,
    cfg: StreetViewConfig,
    region_map: RegionMap,
    cell: np.ndarray,
    z: np.ndarray,
    along: np.ndarray,
    height: np.ndarray,
    n_e: np.ndarray,
    n_n: np.ndarray,
) -> np.ndarray:
    """Walls (3, N) with a window per bay and storey, lit on the side that faces the sun."""
    materials = region_map.style.facades or ("concrete",)
    roof = win.roof.take(cell)
    m, tone, bay_pick = _building_draws(height, roof, len(materials))
    looks = [FACADE_LOOKS.get(name, DEFAULT_LOOK) for name in materials]
    wall_table = np.asarray([lk[0] for lk in looks], dtype=np.float32).T
    glass_table = np.asarray([lk[1] for lk in looks], dtype=np.float32).T
    bay_share = np.asarray([lk[2] for lk in looks], dtype=np.float32)
    storey_share = np.asarray([lk[3] for lk in looks], dtype=np.float32)
    painted = np.asarray(["painted" in name for name in materials])
    wall = wall_table.take(m, axis=1)
    paint = np.flatnonzero(painted.take(m))
    if len(paint):
        colour = (tone.take(paint) * len(PAINT_COLOURS)).astype(np.int32)
        colour = np.minimum(colour, len(PAINT_COLOURS) - 1)
        wall[:, paint] = PAINT_COLOURS.T.take(colour, axis=1)

    level = z / np.float32(cfg.storey_m)
    frac_z = level - np.floor(level)
    bay = 2.8 + 1.4 * bay_pick
    frac_a = along / bay
    frac_a -= np.floor(frac_a)
    window = (
        (np.abs(frac_a - 0.5) < bay_share.take(m) / 2)
        & (np.abs(frac_z - 0.55) < storey_share.take(m) / 2)
        & (z < height - 0.5)  # parapet
        & (z > 0.4)
    )
    # A vertical wall facing the sun's azimuth takes cos(elevation) of the direct light.
    lit = light.ambient + light.direct * np.maximum(n_e * light.sun[0] + n_n * light.sun[1], 0)
    abs_r, abs_c = win.region_pixel(cell)
    texture = 0.94 + 0.12 * _noise("wall", abs_r, abs_c, (z / 0.25).astype(np.int32))
    texture *= 0.9 + 0.2 * tone
    rgb = wall * (lit * texture)
    # Glass shows a dark interior and a faint reflection of the sky; floor slabs show as
    # darker bands.
    pane = glass_table.take(m, axis=1) * (0.9 * lit) + light.horizon * np.float32(0.06)
    rgb = np.where(window, pane, rgb)
    return rgb * np.where(frac_z < 0.04, np.float32(0.85), np.float32(1))


def _crowns(
    win: _Window,
    geo: _Geometry,
    light: _Light,
    cfg: StreetViewConfig,
    rays: _Rays,
    seg: np.ndarray,
    owner: np.ndarray,
    rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Colour (3, N) and distance of crown pixels: clumps of leaves lit from the sun's side."""
    used, owner = _compact(owner, len(seg))
    seg = seg.take(used)
    steps, cols = np.divmod(seg, cfg.width)
    cell = rays.flat.take(seg)
    n_e, n_n, _, _ = _outward_normal(
        win.leafy, cell, win.size, rays.dir_e.take(cols), rays.dir_n.take(cols)
    )
    cell = cell.take(owner)
    d = geo.dist.take(steps).take(owner)
    top, bottom = win.crown_top.take(cell), win.crown_bottom.take(cell)
    z = np.float32(cfg.eye_height_m) + d * np.tan(geo.elevation.take(rows))
    rel = np.clip((z - bottom) / np.maximum(top - bottom, np.float32(0.1)), 0, 1)
    # A round crown's surface tilts up towards its top and down towards its underside.
    up = rel * np.float32(1.6) - np.float32(0.8)
    side = np.sqrt(1 - up * up)
    sunlit = (n_e.take(owner) * light.sun[0] + n_n.take(owner) * light.sun[1]) * side
    sunlit = np.maximum(sunlit + up * light.sun[2], 0)
    abs_r, abs_c = win.region_pixel(cell)
    # Clumps of leaves half a metre high: some in their neighbours' shade, each its own tone.
    hidden, tone = unit_fields(hash_u64(_KEYS["leaves"], abs_r, abs_c, (z * 2).astype(np.int32)), 2)
    lit = light.ambient * (0.6 + 0.4 * rel) + light.direct * sunlit * (hidden > 0.3)
    shade = (0.65 + 0.5 * tone) * lit
    return win.albedo[:, cell] * shade, d


def perspective_view(
    panorama: np.ndarray,
    *,
    yaw_deg: float = 0.0,
    fov_deg: float = 90.0,
    width: int = 256,
    height: int = 256,
) -> np.ndarray:
    """A level pinhole-camera image of horizontal field ``fov_deg`` resampled from a panorama.

    ``yaw_deg`` turns the camera clockwise from the panorama's centre (its heading). The
    image is resampled bilinearly and must fit within the panorama's vertical extent.
    """
    if panorama.ndim != 3 or panorama.shape[2] != 3 or panorama.shape[0] < 2:
        raise PlanetlocError(f"panorama must be an (H >= 2, W, 3) image, got {panorama.shape}")
    if not (math.isfinite(fov_deg) and 0 < fov_deg < 180):
        raise PlanetlocError(f"fov_deg must be between 0 and 180 degrees, got {fov_deg}")
    if not math.isfinite(yaw_deg):
        raise PlanetlocError(f"yaw_deg must be a finite number, got {yaw_deg}")
    if width < 1 or height < 1:
        raise PlanetlocError(f"perspective view size must be positive, got {width}x{height}")
    p_h, p_w = panorama.shape[:2]
    focal = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    reach = math.degrees(math.atan((height / 2) / focal))
    extent = p_h / 2 * 360.0 / p_w
    if reach > extent + 1e-6:
        raise PlanetlocError(
            f"a {width}x{height} view with a {fov_deg} degree field reaches {reach:.1f} degrees "
            f"up, beyond the panorama's +-{extent:.1f}"
        )
    x = (np.arange(width) + 0.5 - width / 2) / focal
    y = (np.arange(height) + 0.5 - height / 2) / focal
    yaw = np.degrees(np.arctan(x))[None, :] + yaw_deg
    pitch = np.degrees(np.arctan2(-y[:, None], np.sqrt(1 + x[None, :] ** 2)))
    col = (yaw / 360.0 + 0.5) * p_w - 0.5
    row = np.clip(p_h / 2 - pitch * p_w / 360.0 - 0.5, 0, p_h - 1)
    c0 = np.floor(col).astype(np.int64)
    r0 = np.minimum(np.floor(row).astype(np.int64), p_h - 2)
    fc = (col - c0)[..., None]
    fr = (row - r0)[..., None]
    c0w, c1w = c0 % p_w, (c0 + 1) % p_w
    src = panorama.astype(np.float32)
    top = src[r0, c0w] * (1 - fc) + src[r0, c1w] * fc
    bottom = src[r0 + 1, c0w] * (1 - fc) + src[r0 + 1, c1w] * fc
    out = top * (1 - fr) + bottom * fr
    if np.issubdtype(panorama.dtype, np.integer):
        info = np.iinfo(panorama.dtype)
        return np.clip(np.round(out), info.min, info.max).astype(panorama.dtype)
    return out.astype(panorama.dtype)
