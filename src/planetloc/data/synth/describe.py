"""First-person scene descriptions read off a region map, in the manner of an LVLM caption.

The observer stands on a street at a point of the map facing along it. What lies ahead,
behind, left and right within about 90 m is measured from the land-cover, height and roof
layers, then told with varied phrasing. Like a real caption the text is partial (some cues
are left out), mentions things a satellite cannot see, and at higher difficulty gets a few
details wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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

DIFFICULTY = {
    # (probability a cue is mentioned, probability a mentioned cue is wrong)
    "easy": (0.95, 0.0),
    "medium": (0.75, 0.04),
    "hard": (0.55, 0.10),
}
VIEW_RADIUS_M = 90.0
NEAR_RADIUS_M = 12.0
MIN_WORDS, MAX_WORDS = 60, 200
SECTORS = ("ahead", "right", "behind", "left")
COMPASS8 = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
AXES = ("north-south", "northeast-southwest", "east-west", "northwest-southeast")
INVISIBLE = (
    "I can hear the hum of traffic and the occasional horn.",
    "A bus stop with a small shelter stands a few steps away.",
    "A cyclist rings a bell as they pass me.",
    "There is a faint smell of food from a nearby stall.",
    "Power lines run overhead between wooden poles.",
    "A few pedestrians are waiting to cross.",
    "Street signs are mounted on a metal pole at the corner.",
    "Parked cars line the curb on both sides.",
    "A delivery van is stopped with its hazard lights on.",
    "Some shop fronts have awnings over the sidewalk.",
    "The sidewalk is made of worn concrete slabs.",
    "A traffic light blinks at the next junction.",
    "Birds are chirping somewhere in the trees.",
    "A couple of scooters are parked near a lamp post.",
    "There is graffiti on a low wall beside the road.",
    "The air feels warm and still.",
)
OPENERS = (
    "I am standing on {street}.",
    "I'm standing on {street}.",
    "Right now I am on {street}.",
    "I find myself standing on {street}.",
    "I stand in the middle of {street}.",
)


@dataclass(frozen=True)
class Observer:
    """Where the describer stands and which way it faces (compass bearing, degrees)."""

    row: int
    col: int
    heading_deg: float


@cache
def _window_geometry(radius_px: int) -> tuple[np.ndarray, np.ndarray]:
    dr, dc = np.mgrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    dist = np.hypot(dr, dc).astype(np.float32)
    bearing = (np.degrees(np.arctan2(dc, -dr)) + 360.0) % 360.0  # row grows southward
    return dist, bearing.astype(np.float32)


def compass_name(bearing_deg: float) -> str:
    return COMPASS8[int(((bearing_deg % 360) + 22.5) // 45) % 8]


def axis_name(bearing_deg: float) -> str:
    return AXES[int(((bearing_deg % 180) + 22.5) // 45) % 4]


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


def _sector_stats(region_map: RegionMap, obs: Observer) -> dict[str, dict[str, float]]:
    radius = int(VIEW_RADIUS_M / region_map.gsd)
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


def storeys(height_m: float) -> int:
    return max(1, int(round(height_m / 3.2)))


def _height_phrase(height_m: float, rng: np.random.Generator) -> str:
    floors = storeys(height_m)
    if floors <= 2:
        return str(rng.choice(["low one- and two-storey", "single-storey", "low-rise"]))
    if floors <= 6:
        return str(rng.choice([f"{floors}-storey", "mid-rise", f"{floors}-floor"]))
    if floors <= 15:
        return str(rng.choice([f"{floors}-storey", "tall", "multi-storey"]))
    return str(rng.choice(["towering high-rise", "skyscraper-height", f"{floors}-storey tower"]))


def _sector_phrase(
    s: dict[str, float], region_map: RegionMap, rng: np.random.Generator
) -> str | None:
    """What dominates one sector, or None when nothing stands out."""
    style = region_map.style
    if s["water"] >= 0.15:
        return str(
            rng.choice(["open water", "the water's edge of a river", "a stretch of calm water"])
        )
    if s["sports"] >= 0.12:
        return str(
            rng.choice(
                ["a sports field with white line markings", "a playing field with a running track"]
            )
        )
    if s["parking"] >= 0.15:
        return str(
            rng.choice(
                [
                    "a large parking lot full of cars",
                    "a wide car park",
                    "rows of parked cars in a lot",
                ]
            )
        )
    if s["plaza"] >= 0.15:
        return str(
            rng.choice(["a paved plaza", "an open paved plaza with benches", "a wide paved plaza"])
        )
    if s["rail"] >= 0.05:
        return str(rng.choice(["railway tracks on a gravel bed", "a rail line", "train tracks"]))
    if s["tree"] >= 0.35:
        return str(
            rng.choice(
                [
                    "dense tree cover",
                    "a thick stand of trees with dense tree cover",
                    "dense tree cover and deep shade",
                ]
            )
        )
    if s["building"] >= 0.18:
        colour = ROOF_NAMES[int(s["roof"])] if s["roof"] >= 0 else "grey"
        material = str(rng.choice(style.facades))
        kind = _height_phrase(s["height"], rng)
        return str(
            rng.choice(
                [
                    f"a row of {kind} {material} buildings with {colour} roofs",
                    f"{kind} buildings, {material}, topped with {colour} roofs",
                    f"{material} {kind} buildings whose roofs look {colour}",
                ]
            )
        )
    if s["grass"] >= 0.3:
        return str(rng.choice(["an open grassy lawn", "a grassy park", "a patch of open grass"]))
    if s["bare"] >= 0.3:
        return str(
            rng.choice(
                [f"an empty lot of bare {style.soil_name} earth", f"bare {style.soil_name} ground"]
            )
        )
    if s["tree"] >= 0.12:
        return str(rng.choice(["a few scattered trees", "some trees dotted around"]))
    return None


def describe(
    region_map: RegionMap,
    scene: Scene,
    obs: Observer,
    *,
    intersection: bool,
    difficulty: str,
    rng: np.random.Generator,
) -> tuple[str, dict[str, float]]:
    """A 60-200 word first-person description and the measurements it was made from."""
    if difficulty not in DIFFICULTY:
        raise ValueError(f"difficulty must be one of {sorted(DIFFICULTY)}, got {difficulty!r}")
    p_say, p_wrong = DIFFICULTY[difficulty]
    stats = _sector_stats(region_map, obs)
    style = region_map.style
    al = stats["all"]
    sentences: list[tuple[int, str]] = []  # (priority, sentence): low priority is dropped first

    width = (
        "wide, busy"
        if al["major"] > 0.5
        else str(rng.choice(["narrow", "quiet", "two-lane", "modest"]))
    )
    axis = axis_name(obs.heading_deg)
    street = f"a {width} street that runs {axis}"
    if al["roundabout"] > 0.05:
        street = f"a {width} street right next to a roundabout with a grassy island"
    elif intersection:
        street = f"a {width} intersection, with one street running {axis}"
    sentences.append((10, str(rng.choice(OPENERS)).format(street=street)))
    sentences.append((6, f"I am facing {compass_name(obs.heading_deg)}."))

    side_templates = {
        "left": ("To my left there is {x}.", "On my left I see {x}.", "On the left side: {x}."),
        "right": (
            "To my right there is {x}.",
            "On my right I notice {x}.",
            "On the right-hand side is {x}.",
        ),
        "ahead": (
            "Ahead of me there is {x}.",
            "Straight ahead I can see {x}.",
            "Further along the street is {x}.",
        ),
        "behind": ("Behind me there is {x}.", "Back the way I came there is {x}."),
    }
    for side, prio in (("left", 9), ("right", 9), ("ahead", 8), ("behind", 5)):
        phrase = _sector_phrase(stats[side], region_map, rng)
        if phrase is None:
            continue
        if rng.random() < p_wrong:  # a wrong side, as a captioner might confuse them
            side = {"left": "right", "right": "left", "ahead": "behind", "behind": "ahead"}[side]
        sentences.append((prio, str(rng.choice(side_templates[side])).format(x=phrase)))

    if al["building"] > 0.05:
        floors = al["height"]
        if rng.random() < p_wrong:
            floors = floors * float(rng.choice([0.4, 2.5]))
        kind = _height_phrase(floors, rng)
        sentences.append(
            (
                7,
                str(
                    rng.choice(
                        [
                            f"Most buildings around me are {kind}.",
                            f"The buildings here are mostly {kind}.",
                            f"The surrounding buildings are {kind} structures.",
                        ]
                    )
                ),
            )
        )
        if al["roof1"] >= 0:
            c1 = ROOF_NAMES[int(al["roof1"])]
            if rng.random() < p_wrong:
                c1 = str(rng.choice(ROOF_NAMES))
            both = f"{c1} and {ROOF_NAMES[int(al['roof2'])]}" if al["roof2"] >= 0 else c1
            sentences.append(
                (
                    7,
                    str(
                        rng.choice(
                            [
                                f"The roofs I can see are mostly {both}.",
                                f"Rooftops are predominantly {both}.",
                                f"Most roofs are {both}.",
                            ]
                        )
                    ),
                )
            )
        sentences.append((3, f"The facades are largely {rng.choice(style.facades)}."))
    else:
        sentences.append((6, "There are hardly any buildings around me."))

    tree = al["tree"]
    season_bare = scene.season == "winter" and style.climate in ("temperate", "cold")
    if tree >= 0.3:
        veg = f"The area has dense tree cover of {style.canopy_name} trees."
    elif tree >= 0.1:
        veg = f"There are scattered {style.canopy_name} trees along the way."
    elif tree >= 0.03:
        veg = "Only a few trees grow here."
    else:
        veg = "There are almost no trees in sight."
    if season_bare and tree >= 0.03:
        veg += " The trees are bare and the grass looks brown."
    sentences.append((7, veg))
    if style.climate == "arid":
        sentences.append((5, f"The ground between buildings is dry, dusty and {style.soil_name}."))
    elif style.climate == "tropical":
        sentences.append((4, "The greenery is lush and the air is humid."))
    if al["water"] > 0.05:
        sentences.append((6, "I can see water nearby."))
    if al["pool"] > 0.001:
        sentences.append((5, "A swimming pool glints in one of the yards."))

    # Shadows: their direction follows the sun, their length its elevation.
    shadow_bearing = (scene.sun_azimuth_deg + 180.0) % 360.0
    rel = (shadow_bearing - obs.heading_deg) % 360.0
    rel_name = ("ahead of me", "to my right", "behind me", "to my left")[
        int(((rel + 45) % 360) // 90)
    ]
    if scene.sun_elevation_deg < 35:
        sentences.append(
            (5, f"Long shadows stretch {rel_name}, toward the {compass_name(shadow_bearing)}.")
        )
    elif scene.sun_elevation_deg > 62:
        sentences.append((5, "The sun is nearly overhead and shadows are short."))
    else:
        sentences.append((4, f"Shadows fall {rel_name}."))
    if tree >= 0.2:
        sentences.append((3, "The trees provide welcome shade over the sidewalk."))

    for line in rng.choice(INVISIBLE, size=3, replace=False):
        sentences.append((1, str(line)))

    kept = [s for s in sentences if s[0] >= 10 or rng.random() < p_say]
    text = _fit_length(kept, sentences, rng)
    measured = {f"{k}_{side}": v for side in SECTORS for k, v in stats[side].items()}
    measured.update({f"{k}_all": v for k, v in al.items()})
    return text, measured


def _fit_length(
    kept: list[tuple[int, str]], pool: list[tuple[int, str]], rng: np.random.Generator
) -> str:
    """Join sentences, topping up from left-out ones or trimming the least important."""

    def words(items: list[tuple[int, str]]) -> int:
        return sum(len(s.split()) for _, s in items)

    spare = [s for s in pool if s not in kept]
    while words(kept) < MIN_WORDS and spare:
        kept.append(spare.pop(0))
    extra = [line for line in INVISIBLE if all(line != s for _, s in kept)]
    rng.shuffle(extra)
    while words(kept) < MIN_WORDS and extra:
        kept.append((0, extra.pop()))
    while words(kept) > MAX_WORDS and len(kept) > 1:
        kept.remove(min(kept, key=lambda s: s[0]))
    order = {id(s): i for i, s in enumerate(pool)}
    kept.sort(key=lambda s: order.get(id(s), len(pool)))
    return " ".join(s for _, s in kept)
