"""What a describer standing on a SynthCORE street notices, as a record free of wording.

The observer stands on a street at a point of the region map, facing along it. What lies
ahead, behind, left and right within about 90 m is measured from the land-cover, height and
roof layers, together with the street itself, the buildings, vegetation, water, the sun's
shadows and a few things no satellite can see (a bus stop, traffic noise). ``observe``
returns all of it as an :class:`Observation`.

The record is also where the difficulty acts, so that every text style written from one
record agrees on the facts:

- cue selection: each cue is kept with the difficulty's probability; kept cues are listed in
  ``Observation.cues``, the others in ``Observation.spare`` (a style may fall back on those
  to reach its minimum length);
- deliberate errors: with the difficulty's probability a sector is told on the opposite
  side, the building height is scaled, or the dominant roof colour is replaced. The record
  holds the wrong value (that is what gets written) and ``Observation.errors`` says what was
  changed, while ``Observation.measured`` keeps the true measurements.

Cue names: ``street`` (always kept), ``facing``, the four sectors ``ahead``, ``right``,
``behind``, ``left``, ``heights``, ``roofs``, ``facades``, ``no_buildings``,
``vegetation``, ``climate``, ``water``, ``pool``, ``shadow``, ``shade`` and one
``extra:<key>`` per unseen detail (keys in :data:`EXTRAS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from planetloc.data.synth.render import Scene
from planetloc.data.synth.style import ROOF_NAMES
from planetloc.data.synth.world import (
    BARE,
    BUILDING,
    GRASS,
    NO_ROOF,
    PARKING,
    PLAZA,
    POOL,
    RAIL,
    ROAD,
    SPORTS,
    TREE,
    WATER,
    RegionMap,
)
from planetloc.errors import PlanetlocError

DIFFICULTY = {
    # (probability a cue is mentioned, probability a mentioned cue is wrong)
    "easy": (0.95, 0.0),
    "medium": (0.75, 0.04),
    "hard": (0.55, 0.10),
}
VIEW_RADIUS_M = 90.0
NEAR_RADIUS_M = 12.0
SECTORS = ("ahead", "right", "behind", "left")
OPPOSITE = {"left": "right", "right": "left", "ahead": "behind", "behind": "ahead"}
COMPASS8 = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
AXES = ("north-south", "northeast-southwest", "east-west", "northwest-southeast")
# What can dominate a sector, in the order the measurement tests for it.
SECTOR_KINDS = (
    "water",
    "sports_field",
    "parking",
    "plaza",
    "rail",
    "dense_trees",
    "buildings",
    "lawn",
    "bare_ground",
    "scattered_trees",
)
HEIGHT_CLASSES = ("low", "mid", "tall", "tower")
TREE_COVERS = ("dense", "scattered", "few", "none")
# Details a satellite cannot show; each style words them its own way.
EXTRAS = (
    "traffic_noise",
    "bus_stop",
    "cyclist",
    "food_smell",
    "power_lines",
    "pedestrians",
    "street_signs",
    "parked_cars",
    "delivery_van",
    "awnings",
    "worn_sidewalk",
    "traffic_light",
    "birds",
    "scooters",
    "graffiti",
    "warm_air",
)
EXTRAS_MENTIONED = 3  # unseen details a description draws before cue selection
# The order cues are listed in a record (a style reorders them as it tells them).
FACT_CUES = (
    "street",
    "facing",
    "left",
    "right",
    "ahead",
    "behind",
    "heights",
    "roofs",
    "facades",
    "no_buildings",
    "vegetation",
    "climate",
    "water",
    "pool",
    "shadow",
    "shade",
)
GENERAL_CUES = FACT_CUES[6:]  # what is said of the whole scene rather than of one side


@dataclass(frozen=True)
class Observer:
    """Where the describer stands and which way it faces (compass bearing, degrees)."""

    row: int
    col: int
    heading_deg: float


@dataclass(frozen=True)
class SectorView:
    """What dominates one quarter of the view.

    ``kind`` is one of :data:`SECTOR_KINDS`. Buildings carry their typical storey count,
    roof colour (a name of ``style.ROOF_NAMES``, None when no roof was seen) and facade
    material; bare ground carries the soil's colour name.
    """

    kind: str
    storeys: int = 0
    roof: str | None = None
    facade: str | None = None
    soil: str | None = None


@dataclass(frozen=True)
class Observation:
    """Everything one description may tell, before any wording is chosen.

    Sector views are keyed by side (``ahead``/``right``/``behind``/``left``); a side where
    nothing stands out is absent. ``storeys`` is 0 and ``roofs`` empty when there are
    hardly any buildings. ``shadow_side`` is where shadows point relative to the viewer,
    ``shadow_toward`` the compass direction they point to. ``extras`` lists every unseen
    detail that fits the place, the mentioned ones first (see ``cues``).
    """

    heading_deg: float
    facing: str
    street_axis: str
    major_street: bool
    junction: str  # "none", "intersection" or "roundabout"
    sectors: dict[str, SectorView]
    storeys: int
    roofs: tuple[str, ...]
    facade: str | None
    tree_cover: str
    canopy: str
    leafless: bool
    climate: str
    soil: str
    season: str
    water_near: bool
    pool: bool
    shadow_side: str
    shadow_toward: str
    shadow_length: str  # "long", "medium" or "short"
    shade: bool
    extras: tuple[str, ...]
    cues: tuple[str, ...]
    spare: tuple[str, ...]
    errors: tuple[str, ...]
    difficulty: str
    measured: dict[str, float] = field(repr=False)


@cache
def _window_geometry(radius_px: int) -> tuple[np.ndarray, np.ndarray]:
    dr, dc = np.mgrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    dist = np.hypot(dr, dc).astype(np.float32)
    bearing = (np.degrees(np.arctan2(dc, -dr)) + 360.0) % 360.0  # row grows southward
    return dist, bearing.astype(np.float32)


def compass_name(bearing_deg: float) -> str:
    """The nearest of the eight compass points to a bearing in degrees."""
    return COMPASS8[int(((bearing_deg % 360) + 22.5) // 45) % 8]


def axis_name(bearing_deg: float) -> str:
    """The street axis (e.g. ``north-south``) nearest to a bearing in degrees."""
    return AXES[int(((bearing_deg % 180) + 22.5) // 45) % 4]


def storeys(height_m: float) -> int:
    """Storey count of a building of ``height_m`` metres (3.2 m a storey, at least one)."""
    return max(1, int(round(height_m / 3.2)))


def height_class(floors: int) -> str:
    """One of :data:`HEIGHT_CLASSES` for a storey count."""
    if floors <= 2:
        return "low"
    if floors <= 6:
        return "mid"
    if floors <= 15:
        return "tall"
    return "tower"


def choose_heading(
    region_map: RegionMap, row: int, col: int, rng: np.random.Generator
) -> tuple[float, bool]:
    """Face along the street the point lies on; also say whether it is an intersection.

    Tests both street axes of the grid by how much road lies along each within 30 m.
    """
    coverage = []
    reach = int(30 / region_map.gsd)
    for axis in (region_map.street_axis_deg, region_map.street_axis_deg + 90.0):
        rad = math.radians(axis)
        steps = np.arange(-reach, reach + 1)
        rr = np.clip(np.round(row - steps * math.cos(rad)).astype(int), 0, region_map.shape[0] - 1)
        cc = np.clip(np.round(col + steps * math.sin(rad)).astype(int), 0, region_map.shape[1] - 1)
        coverage.append(float(np.mean(region_map.cls[rr, cc] == ROAD)))
    best = int(np.argmax(coverage))
    axis = region_map.street_axis_deg + 90.0 * best
    heading = (axis + 180.0 * rng.integers(0, 2)) % 360.0
    return heading, min(coverage) > 0.6


def _check_observer(region_map: RegionMap, obs: Observer) -> int:
    radius = int(VIEW_RADIUS_M / region_map.gsd)
    h, w = region_map.shape
    if not math.isfinite(obs.heading_deg):
        raise PlanetlocError(f"observer heading must be a finite number, got {obs.heading_deg}")
    if not (radius <= obs.row < h - radius and radius <= obs.col < w - radius):
        raise PlanetlocError(
            f"observer at row {obs.row}, col {obs.col} is within {VIEW_RADIUS_M:.0f} m of the "
            f"edge of the {h}x{w} map; its view would leave the map"
        )
    return radius


def sector_stats(region_map: RegionMap, obs: Observer) -> dict[str, dict[str, float]]:
    """Land-cover shares, median building height and main roof per sector and overall."""
    radius = _check_observer(region_map, obs)
    dist, bearing = _window_geometry(radius)
    sl = (
        slice(obs.row - radius, obs.row + radius + 1),
        slice(obs.col - radius, obs.col + radius + 1),
    )
    cls = region_map.cls[sl]
    height = region_map.height[sl]
    roof = region_map.roof[sl]
    rel = (bearing - obs.heading_deg + 45.0) % 360.0 // 90.0
    in_view = dist * region_map.gsd >= NEAR_RADIUS_M
    in_view &= dist <= radius
    stats: dict[str, dict[str, float]] = {}
    for index, name in enumerate(SECTORS):
        mask = in_view & (rel == index)
        total = max(int(mask.sum()), 1)
        c = cls[mask]
        counts = np.bincount(c, minlength=16)[:16] / total
        entry = {
            "bare": counts[BARE],
            "grass": counts[GRASS],
            "tree": counts[TREE],
            "water": counts[WATER],
            "road": counts[ROAD],
            "building": counts[BUILDING],
            "plaza": counts[PLAZA],
            "sports": counts[SPORTS],
            "parking": counts[PARKING],
            "pool": counts[POOL],
            "rail": counts[RAIL],
        }
        bmask = mask & (cls == BUILDING)
        entry["height"] = float(np.median(height[bmask])) if bmask.any() else 0.0
        roofs = roof[bmask]
        roofs = roofs[roofs != NO_ROOF]
        entry["roof"] = float(np.bincount(roofs).argmax()) if roofs.size else -1.0
        stats[name] = {k: float(v) for k, v in entry.items()}
    whole = in_view & (dist * region_map.gsd <= 60)
    c = cls[whole]
    total = max(int(whole.sum()), 1)
    stats["all"] = {
        "tree": float(np.mean(c == TREE)),
        "building": float(np.mean(c == BUILDING)),
        "water": float(np.mean(c == WATER)),
        "pool": float(np.sum(c == POOL) / total),
        "roundabout": float(region_map.roundabout[sl][dist * region_map.gsd < 35].mean()),
        "major": float(region_map.major_road[sl][dist <= 3].mean()),
    }
    bmask = in_view & (cls == BUILDING)
    stats["all"]["height"] = float(np.median(height[bmask])) if bmask.any() else 0.0
    roofs = roof[bmask]
    top = np.bincount(roofs[roofs != NO_ROOF], minlength=len(ROOF_NAMES))
    order = np.argsort(-top)
    stats["all"]["roof1"] = float(order[0]) if top[order[0]] > 0 else -1.0
    stats["all"]["roof2"] = (
        float(order[1]) if top[order[1]] > 0.25 * max(top[order[0]], 1) else -1.0
    )
    return stats


def _sector_view(
    s: dict[str, float], region_map: RegionMap, rng: np.random.Generator
) -> SectorView | None:
    """What dominates one sector, or None when nothing stands out."""
    style = region_map.style
    if s["water"] >= 0.15:
        return SectorView("water")
    if s["sports"] >= 0.12:
        return SectorView("sports_field")
    if s["parking"] >= 0.15:
        return SectorView("parking")
    if s["plaza"] >= 0.15:
        return SectorView("plaza")
    if s["rail"] >= 0.05:
        return SectorView("rail")
    if s["tree"] >= 0.35:
        return SectorView("dense_trees")
    if s["building"] >= 0.18:
        roof = ROOF_NAMES[int(s["roof"])] if s["roof"] >= 0 else None
        # A region mixes facade materials; which one faces this sector is drawn.
        facade = str(rng.choice(style.facades))
        return SectorView("buildings", storeys=storeys(s["height"]), roof=roof, facade=facade)
    if s["grass"] >= 0.3:
        return SectorView("lawn")
    if s["bare"] >= 0.3:
        return SectorView("bare_ground", soil=style.soil_name)
    if s["tree"] >= 0.12:
        return SectorView("scattered_trees")
    return None


def _extras_that_fit(tree_cover: str, climate: str, season: str) -> list[str]:
    out = []
    for key in EXTRAS:
        if key == "birds" and tree_cover == "none":
            continue  # birds "in the trees" need trees
        if key == "warm_air" and season == "winter" and climate in ("temperate", "cold"):
            continue
        out.append(key)
    return out


def observe(
    region_map: RegionMap,
    scene: Scene,
    observer: Observer,
    *,
    intersection: bool,
    difficulty: str,
    rng: np.random.Generator,
) -> Observation:
    """Measure the view of ``observer`` and draw which cues are told and which are wrong.

    ``intersection`` says whether the observer stands at a crossing (see
    :func:`choose_heading`); ``difficulty`` is a key of :data:`DIFFICULTY`.
    """
    if difficulty not in DIFFICULTY:
        raise PlanetlocError(
            f"difficulty must be one of {', '.join(DIFFICULTY)}, got {difficulty!r}"
        )
    p_say, p_wrong = DIFFICULTY[difficulty]
    stats = sector_stats(region_map, observer)
    style = region_map.style
    al = stats["all"]
    errors: list[str] = []

    junction = "none"
    if al["roundabout"] > 0.05:
        junction = "roundabout"
    elif intersection:
        junction = "intersection"

    sectors: dict[str, SectorView] = {}
    for side in ("left", "right", "ahead", "behind"):
        view = _sector_view(stats[side], region_map, rng)
        if view is not None:
            sectors[side] = view
    swapped: set[str] = set()
    for side in ("left", "right", "ahead", "behind"):
        if side in sectors and side not in swapped and rng.random() < p_wrong:
            # A describer confusing sides mirrors them: what was opposite moves over too.
            other = OPPOSITE[side]
            swapped |= {side, other}
            moved, back = sectors.pop(side), sectors.pop(other, None)
            sectors[other] = moved
            if back is not None:
                sectors[side] = back
            errors.append(f"sides {side} and {other} swapped")

    has_buildings = al["building"] > 0.05
    floors, roofs, facade = 0, (), None
    if has_buildings:
        height = al["height"]
        if rng.random() < p_wrong:
            factor = float(rng.choice([0.4, 2.5]))
            height *= factor
            errors.append(f"building height scaled by {factor}")
        floors = storeys(height)
        if al["roof1"] >= 0:
            first = ROOF_NAMES[int(al["roof1"])]
            if rng.random() < p_wrong:
                wrong = str(rng.choice(ROOF_NAMES))
                if wrong != first:
                    errors.append(f"roof colour {first} told as {wrong}")
                first = wrong
            second = ROOF_NAMES[int(al["roof2"])] if al["roof2"] >= 0 else None
            roofs = (first,) if second is None or second == first else (first, second)
        facade = str(rng.choice(style.facades))

    tree = al["tree"]
    if tree >= 0.3:
        cover = "dense"
    elif tree >= 0.1:
        cover = "scattered"
    elif tree >= 0.03:
        cover = "few"
    else:
        cover = "none"
    leafless = scene.season == "winter" and style.climate in ("temperate", "cold") and tree >= 0.03

    # Shadows: their direction follows the sun, their length its elevation.
    shadow_bearing = (scene.sun_azimuth_deg + 180.0) % 360.0
    rel = (shadow_bearing - observer.heading_deg) % 360.0
    shadow_side = ("ahead", "right", "behind", "left")[int(((rel + 45) % 360) // 90)]
    if scene.sun_elevation_deg < 35:
        shadow_length = "long"
    elif scene.sun_elevation_deg > 62:
        shadow_length = "short"
    else:
        shadow_length = "medium"

    present = [
        "street",
        "facing",
        *(s for s in ("left", "right", "ahead", "behind") if s in sectors),
    ]
    if has_buildings:
        present.append("heights")
        if roofs:
            present.append("roofs")
        present.append("facades")
    else:
        present.append("no_buildings")
    present.append("vegetation")
    if style.climate in ("arid", "tropical"):
        present.append("climate")
    if al["water"] > 0.05:
        present.append("water")
    if al["pool"] > 0.001:
        present.append("pool")
    present.append("shadow")
    if tree >= 0.2:
        present.append("shade")
    present.sort(key=FACT_CUES.index)

    extras = _extras_that_fit(cover, style.climate, scene.season)
    rng.shuffle(extras)
    present += [f"extra:{key}" for key in extras[:EXTRAS_MENTIONED]]
    said = [c for c in present if c == "street" or rng.random() < p_say]
    spare = [c for c in present if c not in said]
    spare += [f"extra:{key}" for key in extras[EXTRAS_MENTIONED:]]

    measured = {f"{k}_{side}": v for side in SECTORS for k, v in stats[side].items()}
    measured.update({f"{k}_all": v for k, v in al.items()})
    return Observation(
        heading_deg=float(observer.heading_deg),
        facing=compass_name(observer.heading_deg),
        street_axis=axis_name(observer.heading_deg),
        major_street=al["major"] > 0.5,
        junction=junction,
        sectors=sectors,
        storeys=floors,
        roofs=roofs,
        facade=facade,
        tree_cover=cover,
        canopy=style.canopy_name,
        leafless=leafless,
        climate=style.climate,
        soil=style.soil_name,
        season=scene.season,
        water_near=al["water"] > 0.05,
        pool=al["pool"] > 0.001,
        shadow_side=shadow_side,
        shadow_toward=compass_name(shadow_bearing),
        shadow_length=shadow_length,
        shade=tree >= 0.2,
        extras=tuple(extras),
        cues=tuple(said),
        spare=tuple(spare),
        errors=tuple(errors),
        difficulty=difficulty,
        measured=measured,
    )
