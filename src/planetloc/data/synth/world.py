"""Raster map of one region: land cover, heights and surface colours on a metric grid.

The map is north-up: row 0 is the northern edge, column 0 the western edge, one pixel is
``gsd`` metres. A :class:`RegionField` defines the map at every pixel of the region's square
grid and computes only the windows asked for. Nothing in it depends on which window is
computed: streets come from a warped, rotated grid evaluated at each pixel's coordinates,
block and lot attributes from hashes of their indices, and tree crowns and surface grain
from hashes of pixel indices, so a window is exactly the crop of any larger window and a
metropolitan region never has to be held in memory whole. Satellite tiles are crops of
renders of this map, and descriptions are read off the same layers, so what a text says and
what a tile shows come from one world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planetloc.data.synth.pixelhash import gaussian, hash_u64, subkey, unit, unit_fields
from planetloc.data.synth.style import LAND_USES, ROOF_COLOURS, ROOF_NAMES, RegionStyle

# Land-cover classes.
BARE, GRASS, TREE, WATER, ROAD, BUILDING, PLAZA, SPORTS, PARKING, POOL, RAIL, TRACK = range(12)
CLASS_NAMES = (
    "bare",
    "grass",
    "tree",
    "water",
    "road",
    "building",
    "plaza",
    "sports",
    "parking",
    "pool",
    "rail",
    "track",
)
NO_ROOF = 255
MAX_CROWN_PX = 8  # widest tree crown radius; a window is computed with this margin
MAX_BUILDING_M = 120.0
MAX_CROWN_HEIGHT_M = 18.0
LOTS = 8  # most lots along one side of a block
# One lake per this many square metres of region (a 1.5 km region has at most one).
LAKE_AREA_M2 = 9.0e6
_WARP_WAVELENGTH_M = 420.0
_WAVE_TERMS = 6


@dataclass
class RegionMap:
    """Layers of one region, or of a window of it.

    ``height`` is metres above ground (buildings and tree crowns). A window of a larger
    region says where it sits: ``origin`` is the region pixel (row, col) of its first pixel
    and ``region_shape`` the size of the whole region (None when this map is the whole region).
    """

    gsd: float
    cls: np.ndarray  # (H, W) uint8 land-cover class
    height: np.ndarray  # (H, W) float32 metres
    albedo: np.ndarray  # (H, W, 3) float32 surface reflectance, 0..1
    roof: np.ndarray  # (H, W) uint8 index into ROOF_NAMES, NO_ROOF elsewhere
    major_road: np.ndarray  # (H, W) bool, wide roads
    roundabout: np.ndarray  # (H, W) bool, ring roads and their islands
    street_axis_deg: float  # compass bearing of the grid's first street direction
    style: RegionStyle
    origin: tuple[int, int] = (0, 0)
    region_shape: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.cls.shape  # type: ignore[return-value]

    def to_pixel(self, east_m: float, north_m: float) -> tuple[float, float]:
        """(row, col) in this map of a point given in metres from the region's centre."""
        h, w = self.region_shape or self.shape
        return h / 2 - north_m / self.gsd - self.origin[0], w / 2 + east_m / self.gsd - self.origin[
            1
        ]


@dataclass(frozen=True)
class _Waves:
    """A smooth random field of about unit amplitude: a sum of plane waves near one wavelength."""

    terms: tuple[tuple[float, float, float, float], ...]  # (cos, sin, wavenumber, phase)

    @classmethod
    def draw(cls, rng: np.random.Generator, wavelength_m: float) -> _Waves:
        terms = []
        for _ in range(_WAVE_TERMS):
            theta = rng.uniform(0, np.pi)
            k = 2 * np.pi / (wavelength_m * rng.uniform(0.7, 1.4))
            phase = rng.uniform(0, 2 * np.pi)
            terms.append((float(np.cos(theta)), float(np.sin(theta)), float(k), float(phase)))
        return cls(tuple(terms))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        for c, s, k, phase in self.terms:
            out += np.sin(k * (x * c + y * s) + phase)
        return out / np.float32(math.sqrt(len(self.terms) / 2))

    @property
    def bound(self) -> float:
        """Largest absolute value the field can take."""
        return len(self.terms) / math.sqrt(len(self.terms) / 2)


@dataclass(frozen=True)
class _Line:
    """A straight band across the region (rail) or a meandering one (river)."""

    cos: float
    sin: float
    offset_m: float
    half_width_m: float
    meander_m: float = 0.0
    meander_len_m: float = 1.0

    def mask(self, east: np.ndarray, north: np.ndarray) -> np.ndarray:
        across = -east * self.sin + north * self.cos
        centre: np.ndarray | float = self.offset_m
        if self.meander_m:
            along = east * self.cos + north * self.sin
            centre = self.offset_m + self.meander_m * np.sin(along / self.meander_len_m)
        return np.abs(across - centre) < self.half_width_m

    def may_touch(self, box: tuple[float, float, float, float]) -> bool:
        """Whether any point of the box (west, south, east, north) can lie in the band."""
        corners = [(e, n) for e in (box[0], box[2]) for n in (box[1], box[3])]
        across = [-e * self.sin + n * self.cos for e, n in corners]
        reach = self.half_width_m + abs(self.meander_m) + 1.0
        return min(across) - reach < self.offset_m < max(across) + reach


@dataclass(frozen=True)
class _Lake:
    east_m: float
    north_m: float
    radius_m: float
    shore: _Waves

    def mask(self, east: np.ndarray, north: np.ndarray) -> np.ndarray:
        blob = np.hypot(east - self.east_m, north - self.north_m) + 40 * self.shore(east, north)
        return blob < self.radius_m

    def may_touch(self, box: tuple[float, float, float, float]) -> bool:
        de = max(box[0] - self.east_m, 0.0, self.east_m - box[2])
        dn = max(box[1] - self.north_m, 0.0, self.north_m - box[3])
        return math.hypot(de, dn) < self.radius_m + 40 * self.shore.bound + 1.0


@dataclass
class _Layout:
    """Street grid, water and rail at some points: frame coordinates, block indices, masks."""

    u: np.ndarray
    v: np.ndarray
    bu: np.ndarray
    bv: np.ndarray
    lu: np.ndarray
    lv: np.ndarray
    wu: np.ndarray
    wv: np.ndarray
    road: np.ndarray
    major: np.ndarray
    rb_ring: np.ndarray
    rb_island: np.ndarray
    water: np.ndarray
    rail: np.ndarray


class RegionField:
    """The map of one region, defined at every pixel of its ``size_px`` square grid.

    The constructor draws everything that is global to the region (street warp, river, lakes,
    rail line, hash keys) from ``rng``; :meth:`compute` rasterises any window. The grid is
    defined beyond the region's edges too, so windows near the edge need no special case.
    """

    def __init__(
        self, style: RegionStyle, rng: np.random.Generator, *, size_px: int, gsd: float
    ) -> None:
        self.style = style
        self.size_px = int(size_px)
        self.gsd = float(gsd)
        extent_m = self.size_px * self.gsd
        key = int(rng.integers(0, 2**63))
        self._keys = {p: subkey(key, p) for p in ("use", "lot", "rb", "tree", "texture")}
        self._warp = (
            (_Waves.draw(rng, _WARP_WAVELENGTH_M), _Waves.draw(rng, _WARP_WAVELENGTH_M))
            if style.warp_m > 0
            else None
        )
        self._river = None
        if style.river:
            ang = rng.uniform(0, np.pi)
            self._river = _Line(
                cos=float(np.cos(ang)),
                sin=float(np.sin(ang)),
                offset_m=float(rng.uniform(-0.25, 0.25) * extent_m),
                meander_m=60.0,
                meander_len_m=float(rng.uniform(150, 300)),
                half_width_m=float(rng.uniform(18, 45)),
            )
        self._lakes: list[_Lake] = []
        if style.lake:
            for _ in range(max(1, round(extent_m**2 / LAKE_AREA_M2))):
                cx, cy = rng.uniform(-0.3, 0.3, size=2) * extent_m
                shore = _Waves.draw(rng, 200.0)
                radius = float(rng.uniform(70, 160))
                self._lakes.append(_Lake(float(cx), float(cy), radius, shore))
        self._rail = None
        if style.rail:
            ang = rng.uniform(0, np.pi)
            self._rail = _Line(
                cos=float(np.cos(ang)),
                sin=float(np.sin(ang)),
                offset_m=float(rng.uniform(-0.3, 0.3) * extent_m),
                half_width_m=7.0,
            )
        self._cum_use = np.cumsum(np.asarray(style.land_use_weights, dtype=np.float64))
        self._cum_roof = np.cumsum(np.asarray(style.roof_weights, dtype=np.float64))

    @property
    def street_axis_deg(self) -> float:
        return float((90.0 - self.style.orientation_deg) % 180.0)

    @property
    def max_height_m(self) -> float:
        """An upper bound on every height in the map (it limits how far shadows reach)."""
        s = self.style
        tallest = 3.0 * s.height_median_m * math.exp(1.5 * s.height_sigma)
        # Half a metre over the exact bound absorbs float32 rounding of the heights.
        return min(MAX_BUILDING_M, max(tallest, 13.0, MAX_CROWN_HEIGHT_M)) + 0.5

    def _metres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half = self.size_px / 2
        east = ((np.asarray(cols, dtype=np.float64) - half + 0.5) * self.gsd).astype(np.float32)
        north = (-(np.asarray(rows, dtype=np.float64) - half + 0.5) * self.gsd).astype(np.float32)
        return east, north

    def _box(self, east: np.ndarray, north: np.ndarray) -> tuple[float, float, float, float]:
        return float(east.min()), float(north.min()), float(east.max()), float(north.max())

    def block_use(self, bu: np.ndarray, bv: np.ndarray) -> np.ndarray:
        """Land-use index (into LAND_USES) of the blocks with grid indices (bu, bv)."""
        u = unit(self._keys["use"], bu, bv)
        return np.minimum(np.searchsorted(self._cum_use, u, side="right"), len(LAND_USES) - 1)

    def _layout(self, east: np.ndarray, north: np.ndarray) -> _Layout:
        style = self.style
        # Streets are laid in a warped, rotated frame: straight grids when warp is 0.
        if self._warp is not None:
            east_w = east + style.warp_m * self._warp[0](east, north)
            north_w = north + style.warp_m * self._warp[1](east, north)
        else:
            east_w, north_w = east, north
        theta = math.radians(style.orientation_deg)
        u = east_w * math.cos(theta) + north_w * math.sin(theta)
        v = -east_w * math.sin(theta) + north_w * math.cos(theta)
        bu_len, bv_len, road_w = style.block_u_m, style.block_v_m, style.road_width_m
        bu = np.floor(u / bu_len).astype(np.int64)
        bv = np.floor(v / bv_len).astype(np.int64)
        lu = u - (bu * bu_len).astype(np.float32)
        lv = v - (bv * bv_len).astype(np.float32)
        major_u = (bu % style.major_every) == 0
        major_v = (bv % style.major_every) == 0
        wu = np.where(major_u, np.float32(road_w * 1.9), np.float32(road_w))
        wv = np.where(major_v, np.float32(road_w * 1.9), np.float32(road_w))
        road_u = lu < wu
        road_v = lv < wv
        road = road_u | road_v
        major = (road_u & major_u) | (road_v & major_v)

        # Roundabouts at a share of intersections: a ring road around a green island.
        iu = np.round(u / bu_len)
        iv = np.round(v / bv_len)
        ru = iu * bu_len + road_w / 2
        rv = iv * bv_len + road_w / 2
        has_rb = unit(self._keys["rb"], iu.astype(np.int64), iv.astype(np.int64))
        has_rb = has_rb < style.roundabout_rate
        dist = np.hypot(u - ru, v - rv)
        island_r = road_w * 1.1
        rb_ring = has_rb & (dist < island_r + road_w) & (dist >= island_r)
        rb_island = has_rb & (dist < island_r)

        # Water: a meandering river and lakes; bridges keep major roads across the river.
        box = self._box(east, north)
        water = np.zeros(east.shape, dtype=bool)
        if self._river is not None and self._river.may_touch(box):
            water |= self._river.mask(east, north) & ~(major & road)
        for lake in self._lakes:
            if lake.may_touch(box):
                water |= lake.mask(east, north)
        # Rail: a straight double track on ballast, crossing everything but water.
        rail = np.zeros(east.shape, dtype=bool)
        if self._rail is not None and self._rail.may_touch(box):
            rail = self._rail.mask(east, north) & ~water
        return _Layout(u, v, bu, bv, lu, lv, wu, wv, road, major, rb_ring, rb_island, water, rail)

    def streets_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Whether each pixel (row, col) is street pavement (before tree crowns are drawn)."""
        east, north = self._metres(rows, cols)
        s = self._layout(east, north)
        return (s.road | s.rb_ring) & ~s.rb_island & ~s.water & ~s.rail

    def compute(self, r0: int, c0: int, h: int, w: int) -> RegionMap:
        """Rasterise the ``h`` x ``w`` window whose first pixel is region pixel (r0, c0)."""
        m = MAX_CROWN_PX
        rows = np.arange(r0 - m, r0 + h + m, dtype=np.int64)
        cols = np.arange(c0 - m, c0 + w + m, dtype=np.int64)
        east1, north1 = self._metres(rows, cols)
        east, north = np.meshgrid(east1, north1)  # row 0 is north
        style = self.style
        s = self._layout(east, north)
        use = self.block_use(s.bu, s.bv)
        res = LAND_USES.index
        n_rows, n_cols = east.shape
        cls = np.full((n_rows, n_cols), BARE, dtype=np.uint8)
        height = np.zeros((n_rows, n_cols), dtype=np.float32)
        roof = np.full((n_rows, n_cols), NO_ROOF, dtype=np.uint8)
        road = s.road
        iu, iv = s.lu - s.wu, s.lv - s.wv  # coordinates inside the block, past its roads
        inner_u, inner_v = style.block_u_m - s.wu, style.block_v_m - s.wv

        # Buildings: residential, commercial and industrial blocks are cut into lots.
        lot_m = np.select(
            [use == res("commercial"), use == res("industrial")], [38.0, 55.0], default=20.0
        ).astype(np.float32)
        nu = np.maximum(1, np.floor(inner_u / lot_m)).astype(np.int32)
        nv = np.maximum(1, np.floor(inner_v / lot_m)).astype(np.int32)
        li = np.clip(np.floor(iu / (inner_u / nu)), 0, LOTS - 1).astype(np.int64)
        lj = np.clip(np.floor(iv / (inner_v / nv)), 0, LOTS - 1).astype(np.int64)
        fu = iu / (inner_u / nu) - li  # position inside the lot, 0..1
        fv = iv / (inner_v / nv) - lj
        # Six uniforms per lot from one hash: shape, occupancy, height, height class, yard/roof
        # material, and the roof colour drawn from the region's palette.
        lr = unit_fields(hash_u64(self._keys["lot"], s.bu, s.bv, li, lj), 6)
        setback = 0.08 + 0.22 * lr[0]
        built_use = np.isin(use, [res("residential"), res("commercial"), res("industrial")])
        built_lot = built_use & (lr[1] < style.building_density)
        in_footprint = (
            (fu > setback) & (fu < 1 - setback) & (fv > setback * 0.8) & (fv < 1 - setback * 0.8)
        )
        building = built_lot & in_footprint & ~road
        base_h = style.height_median_m * np.exp(style.height_sigma * (lr[2] * 2 - 1) * 1.5)
        tall = (use == res("commercial")) & (lr[3] < 0.3 + style.highrise_share)
        bheight = np.where(
            tall, base_h * 3.0, np.where(use == res("industrial"), 9.0 + 4 * lr[2], base_h)
        )
        bheight = np.clip(bheight, 3.0, MAX_BUILDING_M)
        cls[building] = BUILDING
        height[building] = bheight[building]
        roof_idx = np.minimum(
            np.searchsorted(self._cum_roof, lr[5], side="right"), len(ROOF_NAMES) - 1
        )
        # Industrial roofs are large flat metal or concrete sheets whatever the local palette.
        metal = np.where(
            lr[4] > 0.5, ROOF_NAMES.index("silver metal"), ROOF_NAMES.index("light grey")
        )
        roof_idx = np.where(use == res("industrial"), metal, roof_idx)
        roof[building] = roof_idx[building]

        # Yards: grass or bare earth depending on climate and lot.
        yard = built_use & ~building & ~road
        green_yard = lr[4] < (0.25 + style.vegetation_cover)
        cls[yard & green_yard] = GRASS

        interior = ~road
        cls[interior & (use == res("park"))] = GRASS
        cls[interior & (use == res("plaza"))] = PLAZA
        cls[interior & (use == res("parking"))] = PARKING
        sports = interior & (use == res("sports"))
        cls[sports] = SPORTS
        edge = 0.14
        ring = sports & (
            (iu < inner_u * edge)
            | (iu > inner_u * (1 - edge))
            | (iv < inner_v * edge)
            | (iv > inner_v * (1 - edge))
        )
        cls[ring] = TRACK
        cls[interior & (use == res("vacant"))] = BARE

        # Pools in some residential yards, mostly in warm, wealthy cities.
        pool_lot = (use == res("residential")) & (lr[0] < style.pool_rate)
        pool = pool_lot & yard & (fu > 0.02) & (fu < setback - 0.01) & (fv > 0.3) & (fv < 0.6)
        cls[pool] = POOL

        cls[road] = ROAD
        cls[s.rb_ring] = ROAD
        cls[s.rb_island] = GRASS
        flat = s.rb_ring | s.rb_island | s.water | s.rail
        cls[s.water] = WATER
        cls[s.rail] = RAIL
        height[flat] = 0
        roof[flat] = NO_ROOF
        roundabout = s.rb_ring | s.rb_island

        park = (use == res("park")) & interior
        self._plant_trees(cls, height, rows, cols, s, park)

        core = (slice(m, m + h), slice(m, m + w))
        cls, height, roof = cls[core], height[core], roof[core]
        major = s.major[core]
        fine = gaussian(self._keys["texture"], rows[m - 1 : m + h, None], cols[None, m - 1 : m + w])
        albedo = _albedo(
            cls,
            roof,
            major,
            style,
            fine,
            s.u[core],
            s.v[core],
            s.lu[core],
            s.lv[core],
            s.wu[core],
            s.wv[core],
            self.gsd,
        )
        return RegionMap(
            gsd=self.gsd,
            cls=np.ascontiguousarray(cls),
            height=np.ascontiguousarray(height),
            albedo=albedo,
            roof=np.ascontiguousarray(roof),
            major_road=major & (cls == ROAD),
            roundabout=np.ascontiguousarray(roundabout[core]),
            street_axis_deg=self.street_axis_deg,
            style=style,
            origin=(int(r0), int(c0)),
            region_shape=(self.size_px, self.size_px),
        )

    def _plant_trees(
        self,
        cls: np.ndarray,
        height: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        s: _Layout,
        park: np.ndarray,
    ) -> None:
        """Stamp tree crowns as disks: dense in parks, sparse along streets and in yards.

        A pixel is a crown centre when its hash falls under the local density, so the crowns
        of a window's margin are the same ones its neighbour draws.
        """
        style = self.style
        density = np.select(
            [cls == GRASS, cls == BARE, cls == PLAZA, cls == PARKING],
            [0.035, 0.008, 0.004, 0.003],
            default=0.0,
        ) * (style.vegetation_cover / 0.3)
        density = np.where(park, density * 1.8, density)
        street_side = s.road & ~s.major & ((s.lu > s.wu - 2.5) | (s.lv > s.wv - 2.5))
        density = np.where(street_side, 0.02 * style.vegetation_cover / 0.3, density)
        density *= self.gsd * self.gsd / 4.0  # per-pixel probability of a crown centre
        draw, size, tall = unit_fields(
            hash_u64(self._keys["tree"], rows[:, None], cols[None, :]), 3
        )
        centre_r, centre_c = np.nonzero(draw < density)
        if len(centre_r) == 0:
            return
        radius_px = np.clip(np.round((2.0 + 4.0 * size[centre_r, centre_c]) / self.gsd), 1, 8)
        radius_px = radius_px.astype(np.int64)
        crown_h = (5.0 + 13.0 * tall[centre_r, centre_c]).astype(np.float32)
        n_rows, n_cols = cls.shape
        blocked = (cls == BUILDING) | (cls == WATER) | (cls == RAIL)
        crown = np.zeros(n_rows * n_cols, dtype=np.float32)
        covered = np.zeros(n_rows * n_cols, dtype=bool)
        for rad in np.unique(radius_px):
            pick = radius_px == rad
            dr, dc = _disk_offsets(int(rad))
            rr = centre_r[pick, None] + dr[None, :]
            cc = centre_c[pick, None] + dc[None, :]
            hh = np.broadcast_to(crown_h[pick, None], rr.shape)
            inside = (rr >= 0) & (rr < n_rows) & (cc >= 0) & (cc < n_cols)
            rr, cc, hh = rr[inside], cc[inside], hh[inside]
            ok = ~blocked[rr, cc]
            flat = rr[ok] * n_cols + cc[ok]
            covered[flat] = True
            np.maximum.at(crown, flat, hh[ok])
        covered = covered.reshape(n_rows, n_cols)
        cls[covered] = TREE
        height[covered] = np.maximum(height[covered], crown.reshape(n_rows, n_cols)[covered])


def _disk_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = (xx**2 + yy**2) <= (radius + 0.35) ** 2
    return yy[inside].astype(np.int64), xx[inside].astype(np.int64)


def build_region_map(
    style: RegionStyle, rng: np.random.Generator, *, extent_m: float, gsd: float
) -> RegionMap:
    """Rasterise a whole region of ``extent_m`` x ``extent_m`` metres at ``gsd`` m per pixel."""
    n = int(round(extent_m / gsd))
    return RegionField(style, rng, size_px=n, gsd=gsd).compute(0, 0, n, n)


def _albedo(
    cls: np.ndarray,
    roof: np.ndarray,
    major: np.ndarray,
    style: RegionStyle,
    noise: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    lu: np.ndarray,
    lv: np.ndarray,
    wu: np.ndarray,
    wv: np.ndarray,
    gsd: float,
) -> np.ndarray:
    """Surface colour with texture that matches each material's physical roughness.

    ``noise`` is one row and one column larger than the map (it starts one pixel north-west)
    so that the smoothed grain of the first row and column needs nothing from outside.
    """
    base = np.zeros((len(CLASS_NAMES), 3), dtype=np.float32)
    base[BARE] = style.soil_rgb
    base[GRASS] = style.grass_rgb
    base[TREE] = style.canopy_rgb
    base[WATER] = style.water_rgb
    base[ROAD] = style.asphalt_rgb
    base[PLAZA] = (0.70, 0.67, 0.62)
    base[SPORTS] = (0.25, 0.55, 0.25)
    base[PARKING] = np.asarray(style.asphalt_rgb) * 1.15
    base[POOL] = (0.25, 0.70, 0.85)
    base[RAIL] = (0.45, 0.40, 0.36)
    base[TRACK] = (0.70, 0.33, 0.25)
    albedo = base[cls]
    roofs = np.asarray([ROOF_COLOURS[name] for name in ROOF_NAMES], dtype=np.float32)
    bmask = roof != NO_ROOF
    albedo[bmask] = roofs[roof[bmask]]

    fine = noise[1:, 1:]
    # Roughness: crowns are clumpy and high-frequency, water and asphalt smooth.
    blur = (fine + noise[:-1, 1:] + noise[1:, :-1] + noise[:-1, :-1]) / 2
    rough = np.zeros(len(CLASS_NAMES), dtype=np.float32)
    rough[[BARE, GRASS, TREE, WATER, ROAD, BUILDING, PLAZA, SPORTS, PARKING, POOL, RAIL, TRACK]] = (
        0.07,
        0.05,
        0.16,
        0.008,
        0.015,
        0.02,
        0.03,
        0.02,
        0.02,
        0.01,
        0.08,
        0.02,
    )
    tex = np.where(cls == TREE, fine, blur) * rough[cls]
    albedo *= 1 + tex[..., None] * np.float32(2.0)

    # Pitched roofs: the two slopes of a ridge along the lot's long axis catch light differently.
    # (Sparse details are computed only on the pixels they concern: most of a map is neither.)
    pitched = bmask & (roof != ROOF_NAMES.index("white")) & (roof != ROOF_NAMES.index("light grey"))
    up = np.sin(u[pitched] * (2 * np.pi / 11.0)) > 0
    albedo[pitched] *= np.where(up, np.float32(1.08), np.float32(0.92))[:, None]
    # Road markings: dashed centre lines on major roads, stall lines in parking lots.
    lanes = (cls == ROAD) & major
    lu_, lv_, wu_, wv_, u_, v_ = lu[lanes], lv[lanes], wu[lanes], wv[lanes], u[lanes], v[lanes]
    centre_u = np.abs(lu_ - wu_ / 2) < 0.35 * gsd
    centre_v = np.abs(lv_ - wv_ / 2) < 0.35 * gsd
    dashes = (np.sin(v_ / 3.0) > 0) & centre_u | (np.sin(u_ / 3.0) > 0) & centre_v
    lane_rows, lane_cols = np.nonzero(lanes)
    albedo[lane_rows[dashes], lane_cols[dashes]] = (0.85, 0.82, 0.60)
    lot_rows, lot_cols = np.nonzero(cls == PARKING)
    pu, pv = u[lot_rows, lot_cols], v[lot_rows, lot_cols]
    stalls = np.mod(pu, 2.7) < gsd * 0.5
    albedo[lot_rows[stalls], lot_cols[stalls]] = (0.80, 0.80, 0.78)
    cars = (np.mod(pu, 2.7) > 0.8) & (np.mod(pv, 6.0) < 4.5) & (fine[lot_rows, lot_cols] > 0.4)
    car_colours = np.asarray(
        [(0.8, 0.8, 0.8), (0.1, 0.1, 0.12), (0.6, 0.1, 0.1), (0.2, 0.3, 0.6)], dtype=np.float32
    )
    albedo[lot_rows[cars], lot_cols[cars]] = car_colours[
        np.floor(pu[cars] / 2.7).astype(np.int64) % 4
    ]
    field_rows, field_cols = np.nonzero(cls == SPORTS)
    fu, fv = u[field_rows, field_cols], v[field_rows, field_cols]
    lines = (np.mod(fu, 30.0) < gsd * 0.6) | (np.mod(fv, 45.0) < gsd * 0.6)
    albedo[field_rows[lines], field_cols[lines]] = (0.92, 0.92, 0.92)
    return np.clip(albedo, 0, 1).astype(np.float32)
