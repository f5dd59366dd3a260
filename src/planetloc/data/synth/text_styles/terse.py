"""``terse``: clipped field notes.

Fragments without articles or verbs, compass points abbreviated (N, NE), storeys as bare
numbers, "bldgs". Tells what is ahead first, then left, right and behind. Often leaves out
facades, shade, climate, shadows and unseen details. 25-80 words.
"""

from __future__ import annotations

import numpy as np

from planetloc.data.synth.observation import Observation, SectorView, height_class
from planetloc.data.synth.text_styles.compose import EXTRA, Plan, StyleSpec, pick

ABBREV = {
    "north": "N",
    "northeast": "NE",
    "east": "E",
    "southeast": "SE",
    "south": "S",
    "southwest": "SW",
    "west": "W",
    "northwest": "NW",
}
AXIS = {
    "north-south": "N-S",
    "northeast-southwest": "NE-SW",
    "east-west": "E-W",
    "northwest-southeast": "NW-SE",
}
COLOURS = {
    "terracotta": ("terracotta", "clay"),
    "red": ("red",),
    "dark grey": ("dark grey",),
    "light grey": ("light grey", "pale grey"),
    "white": ("white",),
    "blue": ("blue",),
    "green": ("green",),
    "brown": ("brown",),
    "silver metal": ("metal", "tin"),
    "rusty brown": ("rusty", "rust-brown"),
    "black": ("black",),
    "beige": ("beige",),
}
PLACES = {
    "water": ("water", "open water", "waterfront"),
    "sports_field": ("sports field", "playing field", "sports ground"),
    "parking": ("car park", "parking lot", "big lot of parked cars"),
    "plaza": ("paved square", "plaza", "open paving"),
    "rail": ("rail tracks", "train line", "railway"),
    "dense_trees": ("thick trees", "dense trees", "woods"),
    "lawn": ("grass", "open lawn", "grassy park"),
    "scattered_trees": ("few trees", "odd tree or two", "some trees"),
}
SIDES = {
    "ahead": ("{X} ahead.", "Ahead, {x}.", "{X} in front."),
    "left": ("{X} left.", "{X} to my left.", "Left, {x}."),
    "right": ("{X} right.", "{X} to my right.", "Right, {x}."),
    "behind": ("{X} behind.", "Behind me, {x}.", "{X} at my back."),
}
EXTRAS = {
    "traffic_noise": ("Traffic noise.", "Horns, traffic hum."),
    "bus_stop": ("Bus stop close by.", "Bus shelter here."),
    "cyclist": ("Cyclist passing.", "Bike bell, cyclist."),
    "food_smell": ("Smell of street food.", "Food stall smell."),
    "power_lines": ("Power lines overhead.", "Overhead wires, wooden poles."),
    "pedestrians": ("People waiting to cross.", "Pedestrians at crossing."),
    "street_signs": ("Signs on pole at corner.", "Street signs, corner."),
    "parked_cars": ("Cars parked both sides.", "Kerbs lined with cars."),
    "delivery_van": ("Van stopped, hazards on.", "Delivery van, flashers."),
    "awnings": ("Shop awnings.", "Awnings over shopfronts."),
    "worn_sidewalk": ("Cracked concrete sidewalk.", "Old slab pavement."),
    "traffic_light": ("Traffic light at next junction.", "Signal blinking, next corner."),
    "birds": ("Birds in trees.", "Birdsong."),
    "scooters": ("Scooters by lamp post.", "Two scooters parked."),
    "graffiti": ("Graffiti on low wall.", "Tagged wall by road."),
    "warm_air": ("Warm, still air.", "Warm, no wind."),
}
ORDER = [
    "street",
    "facing",
    "ahead",
    "left",
    "right",
    "behind",
    "heights",
    "roofs",
    "facades",
    "no_buildings",
    "vegetation",
    "water",
    "pool",
    "climate",
    "shadow",
    "shade",
    EXTRA,
]
KEEP = {
    "facades": 0.5,
    "shade": 0.3,
    "climate": 0.6,
    "shadow": 0.5,
    "behind": 0.6,
    "facing": 0.9,
    EXTRA: 0.35,
}
RANK = {
    "street": 10,
    "ahead": 9,
    "left": 8,
    "right": 8,
    "heights": 7,
    "roofs": 7,
    "facing": 6,
    "vegetation": 6,
    "water": 6,
    "behind": 5,
    "pool": 5,
    "no_buildings": 5,
    "facades": 3,
    "climate": 3,
    "shadow": 3,
    "shade": 2,
    EXTRA: 1,
}
SHADOW_SIDE = {
    "ahead": "ahead",
    "right": "to my right",
    "behind": "behind me",
    "left": "to my left",
}


def _colour(name: str, rng: np.random.Generator) -> str:
    return pick(rng, COLOURS[name])


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _road(r: Observation, rng: np.random.Generator) -> str:
    if r.major_street:
        return pick(rng, ("main road", "wide busy road", "big road"))
    return pick(rng, ("side street", "narrow street", "small street", "back street"))


def _street(r: Observation, rng: np.random.Generator) -> str:
    road, axis = _road(r, rng), AXIS[r.street_axis]
    if r.junction == "roundabout":
        return pick(
            rng,
            (
                f"I'm at a roundabout, grassy island. {_cap(road)}.",
                f"Me: {road} next to roundabout, grass in middle.",
                f"My spot: {road} by a roundabout.",
            ),
        )
    if r.junction == "intersection":
        return pick(
            rng,
            (
                f"I'm at a junction, {road} running {axis}.",
                f"Me: crossroads, {road}, {axis}.",
                f"My spot: intersection, {road} {axis}.",
            ),
        )
    return pick(
        rng,
        (f"I'm on a {road}, {axis}.", f"Me: {road}, runs {axis}.", f"My spot: {road}, {axis}."),
    )


def _place(view: SectorView, rng: np.random.Generator) -> str:
    if view.kind == "buildings":
        n, facade = view.storeys, view.facade
        blocks = "bldgs" if "block" in str(facade) else "blocks"
        if view.roof is None:
            return pick(rng, (f"{facade} {blocks}, {n} fl", f"{n}-storey {facade}"))
        roof = _colour(view.roof, rng)
        return pick(
            rng,
            (
                f"{facade} {blocks}, {n} fl, {roof} roofs",
                f"{n}-storey {facade}, {roof} roofs",
                f"{roof}-roofed {facade} bldgs, {n} floors",
            ),
        )
    if view.kind == "bare_ground":
        return pick(rng, (f"bare {view.soil} dirt", f"empty {view.soil} lot"))
    return pick(rng, PLACES[view.kind])


def _heights(n: int, rng: np.random.Generator) -> str:
    cls = height_class(n)
    if cls == "low":
        return pick(rng, ("Low-rise, 1-2 floors.", "Mostly 1-2 storeys."))
    if cls == "mid":
        return pick(rng, (f"Mostly {n} floors.", f"Bldgs ~{n} storeys."))
    if cls == "tall":
        return pick(rng, (f"Tall, ~{n} floors.", f"Mostly {n}-storey blocks."))
    return pick(rng, (f"High-rises, ~{n} floors.", f"Towers, {n}+ floors."))


def _vegetation(r: Observation, rng: np.random.Generator) -> str:
    text = pick(
        rng,
        {
            "dense": (f"Heavy tree cover, {r.canopy}.", f"Lots of {r.canopy} trees."),
            "scattered": (f"Some {r.canopy} trees.", "Trees here and there."),
            "few": ("Few trees.", "Barely any trees."),
            "none": ("No trees.", "Treeless."),
        }[r.tree_cover],
    )
    if r.leafless:
        text += " " + pick(rng, ("Bare trees, brown grass.", "Trees leafless, grass brown."))
    return text


def phrase(r: Observation, plan: Plan, cue: str, rng: np.random.Generator) -> str:
    """One note for ``cue``."""
    if cue == "street":
        return _street(r, rng)
    if cue == "facing":
        return pick(rng, ("Facing {d}.", "Looking {d}.", "Heading {d}.")).format(d=ABBREV[r.facing])
    if cue in r.sectors:
        place = _place(r.sectors[cue], rng)
        return pick(rng, SIDES[cue]).format(x=place, X=_cap(place))
    if cue == "heights":
        return _heights(r.storeys, rng)
    if cue == "roofs":
        colours = "/".join(_colour(c, rng) for c in r.roofs)
        return pick(
            rng, (f"Roofs {colours}.", f"{_cap(colours)} roofs.", f"Roofs mostly {colours}.")
        )
    if cue == "facades":
        return pick(
            rng, (f"{_cap(str(r.facade))} fronts.", f"Facades {r.facade}.", f"Walls {r.facade}.")
        )
    if cue == "no_buildings":
        return pick(rng, ("Hardly any buildings.", "Almost no bldgs.", "Very few buildings."))
    if cue == "vegetation":
        return _vegetation(r, rng)
    if cue == "climate":
        if r.climate == "arid":
            return pick(rng, (f"Dry. Dusty {r.soil} ground.", f"Dusty, {r.soil} dirt."))
        return pick(rng, ("Lush, humid.", "Humid, very green."))
    if cue == "water":
        return pick(rng, ("Water nearby.", "Water close."))
    if cue == "pool":
        return pick(rng, ("Pool in a yard.", "Swimming pool nearby."))
    if cue == "shadow":
        side = SHADOW_SIDE[r.shadow_side]
        if r.shadow_length == "long":
            return pick(
                rng,
                (
                    f"Long shadows {side} ({ABBREV[r.shadow_toward]}).",
                    f"Shadows long, pointing {ABBREV[r.shadow_toward]}, {side}.",
                ),
            )
        if r.shadow_length == "short":
            return pick(rng, ("Sun high, short shadows.", "Short shadows, sun overhead."))
        return f"Shadows {side}."
    if cue == "shade":
        return pick(rng, ("Shady sidewalk.", "Shade from trees."))
    return pick(rng, EXTRAS[cue.split(":", 1)[1]])


def plan(r: Observation, told: tuple[str, ...], rng: np.random.Generator) -> Plan:
    """Notes follow a fixed checklist: ahead first."""
    return Plan(order=list(ORDER))


def join(r: Observation, plan: Plan, parts: list[tuple[str, str]], rng: np.random.Generator) -> str:
    """Notes one after another."""
    return " ".join(text for _, text in parts)


SPEC = StyleSpec(
    name="terse",
    min_words=25,
    max_words=80,
    keep=KEEP,
    rank=RANK,
    plan=plan,
    phrase=phrase,
    join=join,
)
