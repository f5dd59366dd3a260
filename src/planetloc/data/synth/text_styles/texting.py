"""``texting``: a quick phone message to a friend.

All lower case, no apostrophes ("im", "theres"), shorthand ("bldgs", "w/", "rn", "abt",
"ppl", "&"), clauses strung together with dashes and commas, hardly a full stop. Tells the
sides in no fixed order, often skips what is behind, and rarely mentions the compass,
facades or shadows. 25-100 words.
"""

from __future__ import annotations

import numpy as np

from planetloc.data.synth.observation import (
    GENERAL_CUES,
    Observation,
    SectorView,
    height_class,
)
from planetloc.data.synth.text_styles.compose import EXTRA, Plan, StyleSpec, pick

ABBREV = {
    "north": "n",
    "northeast": "ne",
    "east": "e",
    "southeast": "se",
    "south": "s",
    "southwest": "sw",
    "west": "w",
    "northwest": "nw",
}
COLOURS = {
    "terracotta": ("terracotta", "orange"),
    "dark grey": ("dark grey", "dk grey"),
    "light grey": ("light grey", "lt grey"),
    "silver metal": ("metal", "tin"),
    "rusty brown": ("rusty",),
}
PLACES = {
    "water": ("water", "some water, river or smth", "a river or lake idk"),
    "sports_field": ("a sports field", "a field w/ a running track"),
    "parking": ("a big parking lot", "a car park full of cars"),
    "plaza": ("a big paved square", "a plaza"),
    "rail": ("train tracks", "a railway"),
    "dense_trees": ("lots of trees", "a ton of trees", "a wall of trees"),
    "lawn": ("grass, like a park", "a lawn"),
    "scattered_trees": ("a few trees", "couple trees"),
}
SIDES = {
    "ahead": ("{x} in front of me", "straight ahead theres {x}", "{x} ahead"),
    "left": ("{x} on my left", "left side theres {x}", "to my left {x}"),
    "right": ("{x} on my right", "right side {x}", "theres {x} to my right"),
    "behind": ("behind me {x}", "{x} behind me"),
}
EXTRAS = {
    "traffic_noise": ("traffic is so loud", "lots of traffic noise"),
    "bus_stop": ("theres a bus stop right here", "im by a bus stop"),
    "cyclist": ("some guy on a bike just rang at me",),
    "food_smell": ("smells like food from a stall somewhere",),
    "power_lines": ("power lines everywhere",),
    "pedestrians": ("ppl waiting to cross",),
    "street_signs": ("street signs on a pole at the corner",),
    "parked_cars": ("cars parked both sides",),
    "delivery_van": ("delivery van w/ hazards on",),
    "awnings": ("shops w/ awnings",),
    "worn_sidewalk": ("sidewalk all cracked",),
    "traffic_light": ("traffic light at the next corner",),
    "birds": ("birds chirping",),
    "scooters": ("couple scooters by a lamp post",),
    "graffiti": ("graffiti on a wall",),
    "warm_air": ("its warm n no wind",),
}
# After the sectors, the scene-wide cues in the record's order.
GENERAL = list(GENERAL_CUES)
KEEP = {
    "behind": 0.4,
    "facing": 0.3,
    "roofs": 0.7,
    "facades": 0.3,
    "shadow": 0.15,
    "climate": 0.5,
    "shade": 0.3,
    "pool": 0.8,
    EXTRA: 0.5,
}
RANK = {
    "street": 10,
    "ahead": 8,
    "left": 8,
    "right": 8,
    "heights": 7,
    "vegetation": 6,
    "water": 6,
    "roofs": 5,
    "pool": 5,
    "no_buildings": 5,
    "behind": 4,
    "facing": 3,
    "climate": 3,
    "facades": 2,
    EXTRA: 2,
    "shadow": 1,
    "shade": 1,
}
SHADOW_SIDE = {"ahead": "ahead", "right": "right", "behind": "behind me", "left": "left"}
SIGN_OFFS = ("come find me", "see u in a bit", "call me when ur close")
LINKS = (", ", " - ", " & ", ", ", " n ", " ", ", ", " - ", " ")


def _colour(name: str, rng: np.random.Generator) -> str:
    return pick(rng, COLOURS.get(name, (name,)))


def _street(r: Observation, rng: np.random.Generator) -> str:
    if r.major_street:
        road = pick(rng, ("big busy rd", "main rd", "wide busy st"))
    else:
        road = pick(rng, ("small st", "quiet lil st", "narrow st", "side st"))
    if r.junction == "roundabout":
        return pick(
            rng,
            (
                f"im by the roundabout w/ grass in the middle, {road}",
                f"im on a {road} next to a roundabout",
            ),
        )
    if r.junction == "intersection":
        return pick(rng, (f"im at a crossroads, {road}", f"at a junction rn, im on a {road}"))
    text = pick(
        rng, (f"im on a {road} rn", f"ok im standing on some {road}", f"hey im on a {road}")
    )
    if rng.random() < 0.2:
        a, b = r.street_axis.split("-")
        text += f" going {ABBREV[a]}-{ABBREV[b]}"
    return text


def _place(view: SectorView, rng: np.random.Generator) -> str:
    if view.kind == "buildings":
        n, facade = view.storeys, view.facade
        if view.roof is None:
            return pick(rng, (f"some {facade} bldgs abt {n} floors", f"{n} floor {facade} bldgs"))
        roof = _colour(view.roof, rng)
        return pick(
            rng,
            (
                f"{facade} bldgs w/ {roof} roofs abt {n} floors",
                f"{n} floor {facade} bldgs, {roof} roofs",
            ),
        )
    if view.kind == "bare_ground":
        return pick(rng, (f"an empty dirt lot ({view.soil})", f"bare {view.soil} dirt"))
    return pick(rng, PLACES[view.kind])


def _heights(n: int, rng: np.random.Generator) -> str:
    cls = height_class(n)
    if cls == "low":
        return pick(rng, ("mostly low stuff 1-2 floors", "bldgs r low, 1-2 floors"))
    if cls == "tower":
        return pick(rng, (f"huge towers like {n} floors", f"massive bldgs {n}+ floors"))
    return pick(rng, (f"bldgs like {n} floors", f"most bldgs {n} floors ish"))


def _vegetation(r: Observation, rng: np.random.Generator) -> str:
    text = pick(
        rng,
        {
            "dense": ("tons of trees", f"loads of {r.canopy} trees"),
            "scattered": ("some trees around", f"a few {r.canopy} trees"),
            "few": ("hardly any trees",),
            "none": ("no trees at all",),
        }[r.tree_cover],
    )
    if r.leafless:
        text += pick(rng, (" but theyre bare, grass all brown", " (no leaves, brown grass)"))
    return text


def phrase(r: Observation, plan: Plan, cue: str, rng: np.random.Generator) -> str:
    """One lower-case clause for ``cue``."""
    if cue == "street":
        return _street(r, rng)
    if cue == "facing":
        direction = pick(rng, (r.facing, ABBREV[r.facing]))
        return pick(rng, (f"facing {direction}", f"facing {direction} i think"))
    if cue in r.sectors:
        return pick(rng, SIDES[cue]).format(x=_place(r.sectors[cue], rng))
    if cue == "heights":
        return _heights(r.storeys, rng)
    if cue == "roofs":
        colours = pick(rng, (" & ", "/")).join(_colour(c, rng) for c in r.roofs)
        return pick(rng, (f"roofs r {colours}", f"{colours} roofs mostly"))
    if cue == "facades":
        return pick(rng, (f"lots of {r.facade}", f"walls r {r.facade}"))
    if cue == "no_buildings":
        return pick(rng, ("barely any bldgs", "like no buildings here"))
    if cue == "vegetation":
        return _vegetation(r, rng)
    if cue == "climate":
        if r.climate == "arid":
            return f"super dry & dusty, {r.soil} dirt everywhere"
        return "super humid n green"
    if cue == "water":
        return pick(rng, ("theres water nearby", "can see water from here"))
    if cue == "pool":
        return pick(rng, ("theres a pool in some yard", "someones got a pool"))
    if cue == "shadow":
        if r.shadow_length == "short":
            return "sun right overhead"
        long = "long " if r.shadow_length == "long" else ""
        return f"{long}shadows going {SHADOW_SIDE[r.shadow_side]}"
    if cue == "shade":
        return "shady from the trees"
    return pick(rng, EXTRAS[cue.split(":", 1)[1]])


def plan(r: Observation, told: tuple[str, ...], rng: np.random.Generator) -> Plan:
    """Sides and topics in no fixed order; sometimes a sign-off."""
    sides = ["ahead", "left", "right", "behind"]
    rng.shuffle(sides)
    general = list(GENERAL)
    rng.shuffle(general)
    general.insert(int(rng.integers(0, len(general) + 1)), EXTRA)
    order = ["street", *sides, *general]
    order.insert(1 if rng.random() < 0.5 else len(order), "facing")
    sign_off = pick(rng, SIGN_OFFS) if rng.random() < 0.3 else ""
    return Plan(order=order, notes={"sign_off": sign_off})


def join(r: Observation, plan: Plan, parts: list[tuple[str, str]], rng: np.random.Generator) -> str:
    """Clauses strung together with assorted separators, all lower case, no apostrophes."""
    text = parts[0][1]
    for _, clause in parts[1:]:
        text += (". " if rng.random() < 0.05 else pick(rng, LINKS)) + clause
    if plan.notes["sign_off"]:
        text += pick(rng, (" - ", ". ", " ")) + plan.notes["sign_off"]
    return text.lower().replace("'", "")


SPEC = StyleSpec(
    name="texting",
    min_words=25,
    max_words=100,
    keep=KEEP,
    rank=RANK,
    plan=plan,
    phrase=phrase,
    join=join,
)
