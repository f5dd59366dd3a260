"""Raster map of one region: land cover, heights and surface colours on a metric grid.

The map is north-up: row 0 is the northern edge, column 0 the western edge, one pixel is
``gsd`` metres. Satellite tiles are crops of renders of this map, and descriptions are read
off the same layers, so what a text says and what a tile shows come from one world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


@dataclass
class RegionMap:
    """Layers of one region. ``height`` is metres above ground (buildings and tree crowns)."""

    gsd: float
    cls: np.ndarray  # (H, W) uint8 land-cover class
    height: np.ndarray  # (H, W) float32 metres
    albedo: np.ndarray  # (H, W, 3) float32 surface reflectance, 0..1
    roof: np.ndarray  # (H, W) uint8 index into ROOF_NAMES, NO_ROOF elsewhere
    major_road: np.ndarray  # (H, W) bool, wide roads
    roundabout: np.ndarray  # (H, W) bool, ring roads and their islands
    street_axis_deg: float  # compass bearing of the grid's first street direction
    style: RegionStyle

    @property
    def shape(self) -> tuple[int, int]:
        return self.cls.shape  # type: ignore[return-value]

    def to_pixel(self, east_m: float, north_m: float) -> tuple[float, float]:
        """(row, col) of a point given in metres from the map centre."""
        h, w = self.shape
        return h / 2 - north_m / self.gsd, w / 2 + east_m / self.gsd


def _smooth_field(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, wavelength_m: float, terms: int = 6
) -> np.ndarray:
    """Smooth random field in [-1, 1]: a sum of random plane waves around one wavelength."""
    out = np.zeros_like(x)
    for _ in range(terms):
        theta = rng.uniform(0, np.pi)
        k = 2 * np.pi / (wavelength_m * rng.uniform(0.7, 1.4))
        out += np.sin(k * (x * np.cos(theta) + y * np.sin(theta)) + rng.uniform(0, 2 * np.pi))
    return out / np.sqrt(terms / 2)


def _disk_stamps(max_radius_px: int) -> list[np.ndarray]:
    stamps = []
    for r in range(max_radius_px + 1):
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        stamps.append((xx**2 + yy**2) <= (r + 0.35) ** 2)
    return stamps


def build_region_map(
    style: RegionStyle, rng: np.random.Generator, *, extent_m: float, gsd: float
) -> RegionMap:
    """Rasterise a region of ``extent_m`` x ``extent_m`` metres at ``gsd`` metres per pixel."""
    n = int(round(extent_m / gsd))
    coords = (np.arange(n, dtype=np.float32) - n / 2 + 0.5) * gsd
    east, north = np.meshgrid(coords, -coords)  # row 0 is north
    # Streets are laid in a warped, rotated frame: straight grids when warp is 0.
    if style.warp_m > 0:
        east_w = east + style.warp_m * _smooth_field(east, north, rng, 420.0)
        north_w = north + style.warp_m * _smooth_field(east, north, rng, 420.0)
    else:
        east_w, north_w = east, north
    theta = np.radians(style.orientation_deg)
    u = east_w * np.cos(theta) + north_w * np.sin(theta)
    v = -east_w * np.sin(theta) + north_w * np.cos(theta)
    bu_len, bv_len, road_w = style.block_u_m, style.block_v_m, style.road_width_m
    bu = np.floor(u / bu_len).astype(np.int32)
    bv = np.floor(v / bv_len).astype(np.int32)
    lu = u - bu * bu_len
    lv = v - bv * bv_len
    major_u = (bu % style.major_every) == 0
    major_v = (bv % style.major_every) == 0
    wu = np.where(major_u, road_w * 1.9, road_w)
    wv = np.where(major_v, road_w * 1.9, road_w)
    road_u = lu < wu
    road_v = lv < wv
    road = road_u | road_v
    major = (road_u & major_u) | (road_v & major_v)

    # Random attributes of blocks and lots come from lookup tables indexed by block/lot ids.
    table = 64
    block_use = rng.choice(
        len(LAND_USES), size=(table, table), p=np.asarray(style.land_use_weights)
    )
    bi, bj = (bu + table // 2) % table, (bv + table // 2) % table
    use = block_use[bi, bj]
    lots = 8
    lot_rand = rng.random(size=(table, table, lots, lots, 5)).astype(np.float32)
    roof_choice = rng.choice(
        len(ROOF_NAMES), size=(table, table, lots, lots), p=np.asarray(style.roof_weights)
    )

    cls = np.full((n, n), BARE, dtype=np.uint8)
    height = np.zeros((n, n), dtype=np.float32)
    roof = np.full((n, n), NO_ROOF, dtype=np.uint8)
    iu, iv = lu - wu, lv - wv  # coordinates inside the block, past its roads
    inner_u, inner_v = bu_len - wu, bv_len - wv
    res = LAND_USES.index

    # Buildings: residential, commercial and industrial blocks are cut into lots.
    lot_m = np.select(
        [use == res("commercial"), use == res("industrial")], [38.0, 55.0], default=20.0
    ).astype(np.float32)
    nu = np.maximum(1, np.floor(inner_u / lot_m)).astype(np.int32)
    nv = np.maximum(1, np.floor(inner_v / lot_m)).astype(np.int32)
    li = np.clip(np.floor(iu / (inner_u / nu)), 0, lots - 1).astype(np.int32)
    lj = np.clip(np.floor(iv / (inner_v / nv)), 0, lots - 1).astype(np.int32)
    fu = iu / (inner_u / nu) - li  # position inside the lot, 0..1
    fv = iv / (inner_v / nv) - lj
    lr = lot_rand[bi, bj, li, lj]
    setback = 0.08 + 0.22 * lr[..., 0]
    built_use = np.isin(use, [res("residential"), res("commercial"), res("industrial")])
    built_lot = built_use & (lr[..., 1] < style.building_density)
    in_footprint = (
        (fu > setback) & (fu < 1 - setback) & (fv > setback * 0.8) & (fv < 1 - setback * 0.8)
    )
    building = built_lot & in_footprint & ~road
    base_h = style.height_median_m * np.exp(style.height_sigma * (lr[..., 2] * 2 - 1) * 1.5)
    tall = (use == res("commercial")) & (lr[..., 3] < 0.3 + style.highrise_share)
    bheight = np.where(
        tall, base_h * 3.0, np.where(use == res("industrial"), 9.0 + 4 * lr[..., 2], base_h)
    )
    bheight = np.clip(bheight, 3.0, 120.0)
    cls[building] = BUILDING
    height[building] = bheight[building]
    roof_idx = roof_choice[bi, bj, li, lj]
    # Industrial roofs are large flat metal or concrete sheets whatever the local palette.
    metal = np.where(
        lr[..., 4] > 0.5, ROOF_NAMES.index("silver metal"), ROOF_NAMES.index("light grey")
    )
    roof_idx = np.where(use == res("industrial"), metal, roof_idx)
    roof[building] = roof_idx[building]

    # Yards: grass or bare earth depending on climate and lot.
    yard = built_use & ~building & ~road
    green_yard = lr[..., 4] < (0.25 + style.vegetation_cover)
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
    vacant = interior & (use == res("vacant"))
    cls[vacant] = BARE

    # Pools in some residential yards, mostly in warm, wealthy cities.
    pool_lot = (use == res("residential")) & (lr[..., 0] < style.pool_rate)
    pool = pool_lot & yard & (fu > 0.02) & (fu < setback - 0.01) & (fv > 0.3) & (fv < 0.6)
    cls[pool] = POOL

    cls[road] = ROAD

    # Roundabouts at a share of intersections: a ring road around a green island.
    ru = np.round(u / bu_len) * bu_len + road_w / 2
    rv = np.round(v / bv_len) * bv_len + road_w / 2
    ri = (
        (np.round(u / bu_len).astype(np.int32) * 7 + np.round(v / bv_len).astype(np.int32) * 13)
        % 97
    ) / 97.0
    dist = np.hypot(u - ru, v - rv)
    has_rb = ri < style.roundabout_rate
    island_r = road_w * 1.1
    rb_ring = has_rb & (dist < island_r + road_w) & (dist >= island_r)
    rb_island = has_rb & (dist < island_r)
    cls[rb_ring] = ROAD
    cls[rb_island] = GRASS
    height[rb_ring | rb_island] = 0
    roof[rb_ring | rb_island] = NO_ROOF
    roundabout = rb_ring | rb_island

    # Water: a meandering river and/or a lake; bridges keep major roads across.
    if style.river:
        ang = rng.uniform(0, np.pi)
        across = -east * np.sin(ang) + north * np.cos(ang)
        along = east * np.cos(ang) + north * np.sin(ang)
        centre = rng.uniform(-0.25, 0.25) * extent_m + 60 * np.sin(along / rng.uniform(150, 300))
        half_w = rng.uniform(18, 45)
        river = np.abs(across - centre) < half_w
        water = river & ~(major & road)
        cls[water] = WATER
        height[water] = 0
        roof[water] = NO_ROOF
    if style.lake:
        cx, cy = rng.uniform(-0.3, 0.3, size=2) * extent_m
        blob = np.hypot(east - cx, north - cy) + 40 * _smooth_field(east, north, rng, 200.0)
        lake = blob < rng.uniform(70, 160)
        cls[lake] = WATER
        height[lake] = 0
        roof[lake] = NO_ROOF

    # Rail: a straight double track on ballast, crossing everything but water.
    if style.rail:
        ang = rng.uniform(0, np.pi)
        across = -east * np.sin(ang) + north * np.cos(ang) - rng.uniform(-0.3, 0.3) * extent_m
        rail = (np.abs(across) < 7) & (cls != WATER)
        cls[rail] = RAIL
        height[rail] = 0
        roof[rail] = NO_ROOF

    # Trees: crowns stamped as disks; dense in parks, sparse along streets and in yards.
    tree_density = np.select(
        [cls == GRASS, cls == BARE, cls == PLAZA, cls == PARKING],
        [0.035, 0.008, 0.004, 0.003],
        default=0.0,
    ) * (style.vegetation_cover / 0.3)
    park = (use == res("park")) & interior
    tree_density = np.where(park, tree_density * 1.8, tree_density)
    street_side = road & ~major & ((lu > wu - 2.5) | (lv > wv - 2.5))
    tree_density = np.where(street_side, 0.02 * style.vegetation_cover / 0.3, tree_density)
    tree_density *= gsd * gsd / 4.0  # per-pixel probability of a crown centre
    centres = np.argwhere(rng.random(size=(n, n)) < tree_density)
    stamps = _disk_stamps(8)
    radii_m = rng.uniform(2.0, 6.0, size=len(centres))
    crown_h = rng.uniform(5.0, 18.0, size=len(centres)).astype(np.float32)
    for (r0, c0), rad_m, h in zip(centres, radii_m, crown_h, strict=True):
        rad = max(1, min(8, int(round(rad_m / gsd))))
        r_lo, r_hi = max(0, r0 - rad), min(n, r0 + rad + 1)
        c_lo, c_hi = max(0, c0 - rad), min(n, c0 + rad + 1)
        stamp = stamps[rad][r_lo - r0 + rad : r_hi - r0 + rad, c_lo - c0 + rad : c_hi - c0 + rad]
        patch_cls = cls[r_lo:r_hi, c_lo:c_hi]
        ok = stamp & (patch_cls != BUILDING) & (patch_cls != WATER) & (patch_cls != RAIL)
        patch_cls[ok] = TREE
        patch_h = height[r_lo:r_hi, c_lo:c_hi]
        patch_h[ok] = np.maximum(patch_h[ok], h)

    albedo = _albedo(cls, roof, major, style, rng, u, v, lu, lv, wu, wv, gsd)
    return RegionMap(
        gsd=gsd,
        cls=cls,
        height=height,
        albedo=albedo,
        roof=roof,
        major_road=major & (cls == ROAD),
        roundabout=roundabout,
        street_axis_deg=float((90.0 - style.orientation_deg) % 180.0),
        style=style,
    )


def _albedo(
    cls: np.ndarray,
    roof: np.ndarray,
    major: np.ndarray,
    style: RegionStyle,
    rng: np.random.Generator,
    u: np.ndarray,
    v: np.ndarray,
    lu: np.ndarray,
    lv: np.ndarray,
    wu: np.ndarray,
    wv: np.ndarray,
    gsd: float,
) -> np.ndarray:
    """Surface colour with texture that matches each material's physical roughness."""
    n = cls.shape[0]
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

    fine = rng.normal(0, 1, size=(n, n)).astype(np.float32)
    # Roughness: crowns are clumpy and high-frequency, water and asphalt smooth.
    blur = (fine + np.roll(fine, 1, 0) + np.roll(fine, 1, 1) + np.roll(fine, (1, 1), (0, 1))) / 2
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
    albedo = albedo * (1 + tex[..., None] * 2.0)

    # Pitched roofs: the two slopes of a ridge along the lot's long axis catch light differently.
    slope = np.where(np.sin(u * 2 * np.pi / 11.0) > 0, 1.08, 0.92).astype(np.float32)
    pitched = bmask & (roof != ROOF_NAMES.index("white")) & (roof != ROOF_NAMES.index("light grey"))
    albedo[pitched] *= slope[pitched, None]
    # Road markings: dashed centre lines on major roads, stall lines in parking lots.
    centre_u = np.abs(lu - wu / 2) < 0.35 * gsd
    centre_v = np.abs(lv - wv / 2) < 0.35 * gsd
    dashes = (np.sin(v / 3.0) > 0) & centre_u | (np.sin(u / 3.0) > 0) & centre_v
    marks = (cls == ROAD) & major & dashes
    albedo[marks] = (0.85, 0.82, 0.60)
    stalls = (cls == PARKING) & (np.mod(u, 2.7) < gsd * 0.5)
    albedo[stalls] = (0.80, 0.80, 0.78)
    cars = (cls == PARKING) & (np.mod(u, 2.7) > 0.8) & (np.mod(v, 6.0) < 4.5) & (fine > 0.4)
    car_colours = np.asarray(
        [(0.8, 0.8, 0.8), (0.1, 0.1, 0.12), (0.6, 0.1, 0.1), (0.2, 0.3, 0.6)], dtype=np.float32
    )
    albedo[cars] = car_colours[(np.floor(u[cars] / 2.7).astype(np.int64) % 4)]
    sports_lines = (cls == SPORTS) & ((np.mod(u, 30.0) < gsd * 0.6) | (np.mod(v, 45.0) < gsd * 0.6))
    albedo[sports_lines] = (0.92, 0.92, 0.92)
    return np.clip(albedo, 0, 1).astype(np.float32)
