"""``inventory``: a labelled checklist, side by side.

"Label: value" items ("In front: paved plaza; Left side: brick buildings, 4 storeys"), noun
phrases only, approximate numbers ("approx. 5 storeys"), unseen details lumped under one
"Also" item. Goes front, back, right, left, then the buildings, greenery and the rest. Often
leaves out unseen details, climate and shade. 35-120 words.
"""

from __future__ import annotations

import numpy as np

from planetloc.data.synth.observation import Observation, SectorView, height_class
from planetloc.data.synth.text_styles.compose import EXTRA, Plan, StyleSpec, cue_group, pick

LABELS = {
    "street": ("Where I am", "My location", "My position"),
    "facing": ("Facing", "I face", "Heading"),
    "ahead": ("Ahead", "In front", "Front"),
    "behind": ("Behind", "At my back", "Rear"),
    "left": ("Left", "Left side", "On my left"),
    "right": ("Right", "Right side", "On my right"),
    "heights": ("Building height", "Heights", "Buildings"),
    "facades": ("Facades", "Wall material", "Frontages"),
    "roofs": ("Roofs", "Roof colours", "Rooftops"),
    "no_buildings": ("Buildings", "Built-up"),
    "vegetation": ("Greenery", "Vegetation", "Trees"),
    "climate": ("Conditions", "Ground"),
    "water": ("Water",),
    "pool": ("Pool", "Swimming pool"),
    "shadow": ("Shadows", "Shadow direction"),
    "shade": ("Shade",),
    EXTRA: ("Also", "Other", "Misc.", "Extras"),
}
PLACES = {
    "water": ("open water", "water body"),
    "sports_field": ("sports ground with track", "playing field, marked lines"),
    "parking": ("parking area, full", "car park"),
    "plaza": ("paved plaza", "pedestrian square, paved"),
    "rail": ("railway line", "rail tracks on gravel"),
    "dense_trees": ("dense tree stand", "thick woodland"),
    "lawn": ("grass lawn", "open grass, park-like"),
    "scattered_trees": ("scattered trees", "a few trees"),
}
HEIGHT_WORDS = {"low": "low-rise", "mid": "mid-rise", "tall": "high-rise", "tower": "tower blocks"}
EXTRAS = {
    "traffic_noise": "traffic noise",
    "bus_stop": "bus stop with shelter",
    "cyclist": "passing cyclist",
    "food_smell": "smell of a food stall",
    "power_lines": "overhead power lines",
    "pedestrians": "pedestrians at the crossing",
    "street_signs": "street signs on a pole",
    "parked_cars": "cars parked both sides",
    "delivery_van": "delivery van (hazards on)",
    "awnings": "shop awnings",
    "worn_sidewalk": "worn concrete sidewalk",
    "traffic_light": "traffic light at next junction",
    "birds": "birdsong",
    "scooters": "scooters by a lamp post",
    "graffiti": "graffiti on a low wall",
    "warm_air": "warm, still air",
}
ORDER = [
    "street",
    "facing",
    "ahead",
    "behind",
    "right",
    "left",
    "heights",
    "facades",
    "roofs",
    "no_buildings",
    "vegetation",
    "climate",
    "water",
    "pool",
    "shadow",
    "shade",
    EXTRA,
]
KEEP = {EXTRA: 0.3, "climate": 0.5, "shade": 0.4, "facing": 0.8, "shadow": 0.7, "facades": 0.9}
RANK = {
    "street": 10,
    "ahead": 8,
    "behind": 8,
    "left": 8,
    "right": 8,
    "heights": 7,
    "roofs": 7,
    "vegetation": 6,
    "water": 6,
    "no_buildings": 6,
    "facades": 5,
    "pool": 5,
    "facing": 5,
    "shadow": 4,
    "climate": 3,
    "shade": 2,
    EXTRA: 1,
}
SHADOW_SIDE = {
    "ahead": "ahead of me",
    "right": "to my right",
    "behind": "behind me",
    "left": "to my left",
}


def _place(view: SectorView, rng: np.random.Generator) -> str:
    if view.kind == "buildings":
        n = view.storeys
        roof = "" if view.roof is None else view.roof
        if pick(rng, ("a", "b")) == "a":
            return f"{view.facade} buildings, {n} storeys" + (f", {roof} roofs" if roof else "")
        return f"buildings ({view.facade}), approx. {n} floors" + (
            f", roofs {roof}" if roof else ""
        )
    if view.kind == "bare_ground":
        return pick(rng, (f"bare {view.soil} lot", f"vacant lot, {view.soil} soil"))
    return pick(rng, PLACES[view.kind])


def _street(r: Observation, rng: np.random.Generator) -> str:
    if r.major_street:
        road = pick(rng, ("main road", "wide two-way road", "major street"))
    else:
        road = pick(rng, ("minor street", "local street", "small street"))
    axis = pick(rng, (f"{r.street_axis} axis", f"oriented {r.street_axis}"))
    junction = {
        "none": "",
        "intersection": pick(rng, (", at an intersection", ", at a crossing")),
        "roundabout": ", beside a roundabout (grassy island)",
    }[r.junction]
    if r.junction == "roundabout":
        return f"{road}{junction}"
    return f"{road}, {axis}{junction}"


def _value(r: Observation, cue: str, rng: np.random.Generator) -> str:
    if cue == "street":
        return _street(r, rng)
    if cue == "facing":
        return r.facing
    if cue in r.sectors:
        return _place(r.sectors[cue], rng)
    if cue == "heights":
        word = HEIGHT_WORDS[height_class(r.storeys)]
        return pick(rng, (f"{word}, ~{r.storeys} storeys", f"approx. {r.storeys} floors typical"))
    if cue == "facades":
        return str(r.facade)
    if cue == "roofs":
        return pick(rng, (", ", " + ", " and ")).join(r.roofs)
    if cue == "no_buildings":
        return pick(rng, ("almost none", "very few"))
    if cue == "vegetation":
        text = {
            "dense": pick(rng, (f"dense {r.canopy} canopy", f"heavy, {r.canopy}")),
            "scattered": f"scattered {r.canopy} trees",
            "few": "a few trees only",
            "none": pick(rng, ("none to speak of", "none")),
        }[r.tree_cover]
        return text + (" (leafless; brown grass)" if r.leafless else "")
    if cue == "climate":
        return f"dry, dusty {r.soil} ground" if r.climate == "arid" else "humid, lush"
    if cue == "water":
        return pick(rng, ("nearby", "yes, close by", "within view"))
    if cue == "pool":
        return pick(rng, ("one, in a yard", "yes (private yard)"))
    if cue == "shadow":
        side = SHADOW_SIDE[r.shadow_side]
        if r.shadow_length == "long":
            return f"long, toward {r.shadow_toward} ({side})"
        if r.shadow_length == "short":
            return "short, sun near overhead"
        return side
    if cue == "shade":
        return pick(rng, ("sidewalk shaded by trees", "trees shade the footpath"))
    return EXTRAS[cue.split(":", 1)[1]]


def phrase(r: Observation, plan: Plan, cue: str, rng: np.random.Generator) -> str:
    """``Label: value`` for ``cue``; unseen details are bare values, labelled when joined."""
    value = _value(r, cue, rng)
    if cue_group(cue) == EXTRA:
        return value
    return f"{pick(rng, LABELS[cue])}{plan.notes['sep']}{value}"


def plan(r: Observation, told: tuple[str, ...], rng: np.random.Generator) -> Plan:
    """A fixed checklist; the punctuation is chosen once per text."""
    return Plan(
        order=list(ORDER),
        notes={"sep": pick(rng, (": ", " - ", ": ")), "end": pick(rng, (". ", "; "))},
    )


def join(r: Observation, plan: Plan, parts: list[tuple[str, str]], rng: np.random.Generator) -> str:
    """Items separated by the text's punctuation, unseen details gathered into one item."""
    items: list[str] = []
    extras = [text for cue, text in parts if cue_group(cue) == EXTRA]
    for cue, text in parts:
        if cue_group(cue) != EXTRA:
            items.append(text)
    if extras:
        items.append(f"{pick(rng, LABELS[EXTRA])}{plan.notes['sep']}{', '.join(extras)}")
    return plan.notes["end"].join(items) + "."


SPEC = StyleSpec(
    name="inventory",
    min_words=35,
    max_words=120,
    keep=KEEP,
    rank=RANK,
    plan=plan,
    phrase=phrase,
    join=join,
)
