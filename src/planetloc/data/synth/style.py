"""A region's look, derived from where it is: climate, streets, roofs, vegetation, landmarks.

Everything here is drawn from a seeded generator, biased by the region's latitude and
continent so that the world has the regularities real cities have (arid belts near 25 degrees,
grids in North America, terracotta in southern Europe) without being a caricature of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planetloc.geo.regions import Region

# Named colours (sRGB, 0..1). Names are what the descriptions say; values are what is rendered.
ROOF_COLOURS: dict[str, tuple[float, float, float]] = {
    "terracotta": (0.72, 0.36, 0.24),
    "red": (0.62, 0.18, 0.16),
    "dark grey": (0.28, 0.29, 0.31),
    "light grey": (0.62, 0.62, 0.60),
    "white": (0.88, 0.88, 0.85),
    "blue": (0.22, 0.36, 0.62),
    "green": (0.24, 0.45, 0.33),
    "brown": (0.42, 0.30, 0.22),
    "silver metal": (0.70, 0.72, 0.74),
    "rusty brown": (0.55, 0.33, 0.20),
    "black": (0.12, 0.12, 0.13),
    "beige": (0.78, 0.70, 0.55),
}
ROOF_NAMES = tuple(ROOF_COLOURS)

# Relative roof-colour weights per continent (missing names weigh zero).
ROOF_PALETTES: dict[str, dict[str, float]] = {
    "Europe": {
        "terracotta": 4,
        "red": 2,
        "dark grey": 3,
        "light grey": 1,
        "black": 1,
        "white": 0.5,
    },
    "North America": {"dark grey": 4, "light grey": 3, "white": 2, "black": 1.5, "brown": 1.5},
    "Asia": {"blue": 2.5, "light grey": 3, "white": 2, "green": 1, "dark grey": 2, "red": 1},
    "Africa": {"silver metal": 3.5, "rusty brown": 3, "beige": 2, "light grey": 1, "red": 1},
    "South America": {"terracotta": 3, "silver metal": 2, "light grey": 2, "beige": 1.5, "red": 1},
    "Oceania": {"dark grey": 2.5, "red": 2, "terracotta": 2, "white": 1.5, "light grey": 1.5},
}
GRID_PROBABILITY = {
    "North America": 0.85,
    "South America": 0.6,
    "Oceania": 0.75,
    "Asia": 0.5,
    "Europe": 0.25,
    "Africa": 0.45,
}
FACADE_MATERIALS = {
    "Europe": ("brick", "pale stone", "rendered stucco", "old masonry"),
    "North America": ("glass-and-steel", "red brick", "wood siding", "concrete"),
    "Asia": ("concrete", "tiled", "glass", "painted concrete"),
    "Africa": ("concrete block", "painted plaster", "corrugated metal", "mud brick"),
    "South America": ("plastered", "painted concrete", "brick", "colonial stone"),
    "Oceania": ("weatherboard", "brick", "glass", "rendered"),
}
CLIMATES = ("tropical", "arid", "temperate", "cold")
SOIL_COLOURS = {
    "tropical": ("reddish", (0.58, 0.36, 0.25)),
    "arid": ("sandy tan", (0.70, 0.60, 0.45)),
    "temperate": ("brown", (0.47, 0.40, 0.32)),
    "cold": ("grey-brown", (0.45, 0.43, 0.40)),
}
CANOPY = {
    "tropical": ("palm and broadleaf", (0.10, 0.33, 0.12)),
    "arid": ("scrubby olive", (0.38, 0.40, 0.24)),
    "temperate": ("broadleaf", (0.17, 0.38, 0.15)),
    "cold": ("conifer", (0.10, 0.25, 0.15)),
}
GRASS = {
    "tropical": (0.30, 0.52, 0.22),
    "arid": (0.62, 0.58, 0.40),
    "temperate": (0.38, 0.56, 0.26),
    "cold": (0.40, 0.50, 0.32),
}
WATER = {
    "tropical": (0.20, 0.30, 0.25),
    "arid": (0.18, 0.32, 0.40),
    "temperate": (0.12, 0.22, 0.30),
    "cold": (0.10, 0.18, 0.26),
}
# Land-use shares of city blocks: residential, commercial, park, plaza, sports, parking,
# industrial, vacant.
LAND_USES = (
    "residential",
    "commercial",
    "park",
    "plaza",
    "sports",
    "parking",
    "industrial",
    "vacant",
)


@dataclass(frozen=True)
class RegionStyle:
    """Everything that makes one region look like itself."""

    climate: str
    aridity: float
    vegetation_cover: float
    canopy_name: str
    canopy_rgb: tuple[float, float, float]
    grass_rgb: tuple[float, float, float]
    soil_name: str
    soil_rgb: tuple[float, float, float]
    water_rgb: tuple[float, float, float]
    grid: bool
    orientation_deg: float
    block_u_m: float
    block_v_m: float
    road_width_m: float
    major_every: int
    warp_m: float
    roof_weights: tuple[float, ...]
    building_density: float
    height_median_m: float
    height_sigma: float
    highrise_share: float
    land_use_weights: tuple[float, ...]
    river: bool
    lake: bool
    rail: bool
    roundabout_rate: float
    pool_rate: float
    facades: tuple[str, ...]
    asphalt_rgb: tuple[float, float, float]


def derive_style(region: Region, rng: np.random.Generator) -> RegionStyle:
    """Draw a region's style from its latitude, continent and size."""
    abs_lat = abs(region.lat)
    # Subtropical high-pressure belts (~15-35 degrees) are where deserts cluster.
    belt = float(np.exp(-(((abs_lat - 25.0) / 10.0) ** 2)))
    aridity = float(np.clip(0.5 * belt + 0.5 * rng.random(), 0, 1))
    if aridity > 0.7:
        climate = "arid"
    elif abs_lat < 20:
        climate = "tropical"
    elif abs_lat < 48:
        climate = "temperate"
    else:
        climate = "cold"
    cover = {"tropical": 0.45, "arid": 0.08, "temperate": 0.32, "cold": 0.28}[climate]
    cover = float(np.clip(cover * rng.uniform(0.6, 1.4), 0.02, 0.7))
    cont = region.continent
    grid = bool(rng.random() < GRID_PROBABILITY.get(cont, 0.5))
    scale = {"North America": 1.5, "Oceania": 1.3, "Europe": 0.85, "Asia": 1.0}.get(cont, 1.0)
    block_u = float(rng.uniform(55, 95) * scale)
    block_v = float(
        block_u * (rng.uniform(1.4, 2.2) if grid and rng.random() < 0.6 else rng.uniform(0.9, 1.3))
    )
    palette = ROOF_PALETTES.get(cont, ROOF_PALETTES["Europe"])
    weights = np.array([palette.get(n, 0.0) for n in ROOF_NAMES], dtype=np.float64)
    weights = weights * rng.gamma(2.0, 0.5, size=len(weights))  # each city its own mix
    weights = weights / weights.sum()
    big = np.log10(max(region.population, 10_000))
    height_median = float(np.clip(3.0 * (big - 3.2) * rng.uniform(0.8, 1.5), 4.0, 30.0))
    land = np.array([5.0, 1.5 + big / 3, 0.9, 0.35, 0.35, 0.5, 0.5, 0.4 + (climate == "arid")])
    land = land * rng.gamma(3.0, 1 / 3.0, size=len(land))
    soil_name, soil_rgb = SOIL_COLOURS[climate]
    canopy_name, canopy_rgb = CANOPY[climate]
    asphalt = float(rng.uniform(0.22, 0.36))
    return RegionStyle(
        climate=climate,
        aridity=aridity,
        vegetation_cover=cover,
        canopy_name=canopy_name,
        canopy_rgb=_jitter(canopy_rgb, rng, 0.03),
        grass_rgb=_jitter(GRASS[climate], rng, 0.04),
        soil_name=soil_name,
        soil_rgb=_jitter(soil_rgb, rng, 0.04),
        water_rgb=_jitter(WATER[climate], rng, 0.03),
        grid=grid,
        orientation_deg=float(rng.uniform(0, 90)),
        block_u_m=block_u,
        block_v_m=block_v,
        road_width_m=float(rng.uniform(7, 13)),
        major_every=int(rng.integers(3, 6)),
        warp_m=0.0 if grid else float(rng.uniform(15, 45)),
        roof_weights=tuple(float(w) for w in weights),
        building_density=float(rng.uniform(0.55, 0.95)),
        height_median_m=height_median,
        height_sigma=float(rng.uniform(0.35, 0.7)),
        highrise_share=float(np.clip((big - 5.5) * 0.25 + rng.normal(0, 0.05), 0.0, 0.5)),
        land_use_weights=tuple(float(w) for w in land / land.sum()),
        river=bool(rng.random() < 0.4),
        lake=bool(rng.random() < 0.2),
        rail=bool(rng.random() < 0.35),
        roundabout_rate=float(0.25 if cont in ("Europe", "Oceania") else 0.06)
        * float(rng.random() < 0.7),
        pool_rate=float(0.25 if climate in ("arid", "tropical") and big > 6 else 0.03),
        facades=FACADE_MATERIALS.get(cont, FACADE_MATERIALS["Europe"]),
        asphalt_rgb=(asphalt, asphalt, asphalt * 1.03),
    )


def _jitter(
    rgb: tuple[float, float, float], rng: np.random.Generator, amount: float
) -> tuple[float, float, float]:
    out = np.clip(np.asarray(rgb) + rng.normal(0, amount, size=3), 0, 1)
    return (float(out[0]), float(out[1]), float(out[2]))
