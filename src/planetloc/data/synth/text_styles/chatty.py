"""``chatty``: someone talking it through on the phone.

Run-on sentences joined with "and", fillers ("like", "honestly", "i think"), contractions,
vague quantities ("a bunch of", "kinda tall", "like 4 floors"), often all lower case. Starts
with whatever stands out most, then jumps between topics. Rarely knows the compass
direction, seldom bothers with facades or shadows. 50-170 words.
"""

from __future__ import annotations

import re

import numpy as np

from planetloc.data.synth.observation import (
    GENERAL_CUES,
    Observation,
    SectorView,
    height_class,
)
from planetloc.data.synth.text_styles.compose import EXTRA, Plan, StyleSpec, pick

COLOURS = {
    "terracotta": ("orangey terracotta", "terracotta", "orange clay-tile"),
    "red": ("red", "reddish"),
    "dark grey": ("dark grey", "charcoal-grey"),
    "light grey": ("light grey", "pale grey"),
    "white": ("white",),
    "blue": ("blue",),
    "green": ("green",),
    "brown": ("brown", "brownish"),
    "silver metal": ("shiny metal", "tin"),
    "rusty brown": ("rusty brown", "rusty"),
    "black": ("black",),
    "beige": ("beige-ish", "beige"),
}
PLACES = {
    "water": ("some water, like a river or a canal or something", "a bit of water", "the water"),
    "sports_field": (
        "a sports field with lines painted on it",
        "some kind of sports pitch",
        "a playing field with a running track",
    ),
    "parking": (
        "a massive car park full of cars",
        "a huge parking lot",
        "a big lot with loads of parked cars",
    ),
    "plaza": ("this big open paved square", "a paved plaza thing", "a big open square, all paved"),
    "rail": ("train tracks", "some railway tracks", "a train line"),
    "dense_trees": (
        "loads of trees, like really thick",
        "a bunch of trees, super dense",
        "a ton of greenery",
    ),
    "lawn": ("a grassy bit, like a little park", "some open grass", "a lawn-y park area"),
    "scattered_trees": ("a few trees here and there", "a couple of trees"),
}
SIDES = {
    "ahead": (
        "right in front of me there's {x}",
        "up ahead there's {x}",
        "straight ahead you've got {x}",
    ),
    "left": ("on my left there's {x}", "to the left there's {x}", "there's {x} off to my left"),
    "right": ("on my right there's {x}", "to my right is {x}", "there's {x} over on the right"),
    "behind": ("behind me there's {x}", "back behind me is {x}", "behind me it's {x}"),
}
EXTRAS = {
    "traffic_noise": ("i can hear a lot of traffic, horns and stuff", "it's pretty noisy, traffic"),
    "bus_stop": ("there's a bus stop right here", "i'm a few steps from a bus stop"),
    "cyclist": ("a guy on a bike just rang his bell at me", "a cyclist just went past"),
    "food_smell": ("it smells like food from some stall", "something smells really good, food"),
    "power_lines": ("power lines everywhere overhead", "there's wires strung on poles above me"),
    "pedestrians": ("some people are waiting to cross", "a few people waiting at the crossing"),
    "street_signs": ("there's street signs on a pole at the corner", "signs on a pole nearby"),
    "parked_cars": ("cars parked all along both sides", "both sides are full of parked cars"),
    "delivery_van": ("a delivery van's stopped with its hazards on", "some van's double parked"),
    "awnings": ("the shops have those awnings out", "shops with awnings over the pavement"),
    "worn_sidewalk": ("the pavement's kinda cracked", "the sidewalk is old cracked concrete"),
    "traffic_light": (
        "a traffic light's blinking up at the next corner",
        "there's a traffic light at the next junction",
    ),
    "birds": ("birds chirping in the trees", "i can hear birds"),
    "scooters": ("a couple scooters parked by a lamp post", "some scooters by a lamp post"),
    "graffiti": ("graffiti on a wall by the road", "someone's sprayed graffiti on a low wall"),
    "warm_air": ("it's warm and there's no wind at all", "it's warm, kinda still"),
}
SALIENCE = {
    "water": 9,
    "sports_field": 8,
    "rail": 7,
    "plaza": 6,
    "parking": 5,
    "lawn": 4,
    "dense_trees": 3,
    "bare_ground": 2,
    "buildings": 1,
    "scattered_trees": 0,
}
# After the sectors, the scene-wide cues in the record's order.
GENERAL = list(GENERAL_CUES)
KEEP = {
    "facing": 0.35,
    "facades": 0.4,
    "shadow": 0.35,
    "climate": 0.8,
    "behind": 0.6,
    "roofs": 0.85,
    EXTRA: 0.7,
}
RANK = {
    "street": 10,
    "ahead": 9,
    "left": 8,
    "right": 8,
    "heights": 7,
    "vegetation": 7,
    "water": 7,
    "roofs": 6,
    "pool": 6,
    "behind": 5,
    "no_buildings": 5,
    "climate": 4,
    "facing": 3,
    "facades": 3,
    "shadow": 2,
    "shade": 2,
    EXTRA: 2,
}
SHADOW_SIDE = {
    "ahead": "out in front of me",
    "right": "to my right",
    "behind": "behind me",
    "left": "to my left",
}
STARTERS = ("", "", "", "oh and ", "also ", "like, ", "um, ", "honestly ", "anyway ")
LINKS = (", and ", ", ", " and ", " and also ")


def _height(n: int, rng: np.random.Generator) -> str:
    cls = height_class(n)
    if cls == "low":
        return pick(rng, ("pretty low, one or two floors", "small, like one or two storeys"))
    if cls == "mid":
        return pick(rng, (f"like {n} floors", f"maybe {n} storeys", f"{n} floors or so"))
    if cls == "tall":
        return pick(rng, (f"kinda tall, like {n} floors", f"pretty tall, {n}ish floors"))
    return pick(rng, (f"super tall, like {n} floors", f"massive towers, {n} floors maybe"))


def _street(r: Observation, rng: np.random.Generator) -> str:
    if r.major_street:
        width = pick(rng, ("big busy", "pretty wide, busy", "really busy, wide"))
    else:
        width = pick(rng, ("smallish", "kinda narrow", "quiet little", "pretty quiet"))
    if r.junction == "roundabout":
        return pick(
            rng,
            (
                f"so i'm on a {width} street right by a roundabout, the one with grass in the "
                "middle",
                f"ok i'm next to a roundabout with a grassy bit in the middle, on a {width} road",
            ),
        )
    if r.junction == "intersection":
        return pick(
            rng,
            (
                f"so i'm right at a crossroads on a {width} street",
                f"ok so i'm at a corner where two streets cross, {width} one",
            ),
        )
    text = pick(
        rng,
        (
            f"so i'm on this {width} street",
            f"ok so i'm standing on a {width} street",
            f"right, i'm on some {width} road",
        ),
    )
    if rng.random() < 0.3:
        text += pick(rng, (f" that goes {r.street_axis} i think", f", runs {r.street_axis}-ish"))
    return text


def _place(view: SectorView, rng: np.random.Generator) -> str:
    if view.kind == "buildings":
        h = _height(view.storeys, rng)
        roof = "" if view.roof is None else f", {pick(rng, COLOURS[view.roof])} roofs"
        return pick(
            rng,
            (
                f"a bunch of {view.facade} buildings, {h}{roof}",
                f"some {view.facade} buildings, {h}{roof}",
                f"a row of {view.facade} places, {h}{roof}",
            ),
        )
    if view.kind == "bare_ground":
        return pick(rng, (f"an empty dirt lot, kinda {view.soil}", f"just bare {view.soil} ground"))
    return pick(rng, PLACES[view.kind])


def _roofs(r: Observation, rng: np.random.Generator) -> str:
    first = pick(rng, COLOURS[r.roofs[0]])
    if len(r.roofs) == 1:
        return pick(rng, (f"roofs are mostly {first}", f"lots of {first} roofs"))
    second = pick(rng, COLOURS[r.roofs[1]])
    return pick(
        rng,
        (
            f"roofs are mostly {first}, some {second}",
            f"lots of {first} roofs and a few {second} ones",
        ),
    )


def _vegetation(r: Observation, rng: np.random.Generator) -> str:
    options = {
        "dense": (
            f"there's tons of trees around, {r.canopy} ones i think",
            "trees everywhere, honestly",
        ),
        "scattered": (f"a few {r.canopy} trees dotted around", "some trees here and there"),
        "few": ("not many trees at all", "like two or three trees"),
        "none": ("basically no trees", "zero trees, seriously"),
    }[r.tree_cover]
    text = pick(rng, options)
    if r.leafless:
        text += pick(
            rng,
            (
                ", and they're all bare, grass is kinda brown",
                ", no leaves though and the grass looks dead",
            ),
        )
    return text


def phrase(r: Observation, plan: Plan, cue: str, rng: np.random.Generator) -> str:
    """One spoken clause for ``cue``, lower case, no final punctuation."""
    if cue == "street":
        return _street(r, rng)
    if cue == "facing":
        return pick(
            rng,
            (
                f"i'm facing {r.facing}-ish",
                f"pretty sure i'm facing {r.facing}",
                f"i'm looking {r.facing}, more or less",
            ),
        )
    if cue in r.sectors:
        return pick(rng, SIDES[cue]).format(x=_place(r.sectors[cue], rng))
    if cue == "heights":
        h = _height(r.storeys, rng)
        return pick(rng, (f"most of the buildings are {h}", f"buildings round here are {h}"))
    if cue == "roofs":
        return _roofs(r, rng)
    if cue == "facades":
        return pick(rng, (f"the walls are mostly {r.facade}", f"lots of {r.facade} everywhere"))
    if cue == "no_buildings":
        return pick(rng, ("there's barely any buildings around", "hardly any buildings, honestly"))
    if cue == "vegetation":
        return _vegetation(r, rng)
    if cue == "climate":
        if r.climate == "arid":
            return pick(
                rng,
                (
                    f"it's super dry and dusty, the ground's all {r.soil}",
                    f"everything's dusty and {r.soil}",
                ),
            )
        return pick(
            rng, ("it's really green and humid", "everything's super lush and it's sticky-humid")
        )
    if cue == "water":
        return pick(rng, ("there's water close by too", "i can see some water nearby"))
    if cue == "pool":
        return pick(
            rng, ("i can see a pool in someone's yard", "someone's got a swimming pool over there")
        )
    if cue == "shadow":
        side = SHADOW_SIDE[r.shadow_side]
        if r.shadow_length == "long":
            return pick(
                rng,
                (
                    f"the shadows are long, going {side}",
                    f"shadows stretching {side}, kinda towards the {r.shadow_toward}",
                ),
            )
        if r.shadow_length == "short":
            return pick(
                rng,
                (
                    "the sun's pretty much overhead, barely any shadow",
                    "hardly any shadows, sun's high",
                ),
            )
        return f"shadows are falling {side}"
    if cue == "shade":
        return pick(rng, ("the trees make nice shade on the sidewalk", "it's nice and shady"))
    return pick(rng, EXTRAS[cue.split(":", 1)[1]])


def plan(r: Observation, told: tuple[str, ...], rng: np.random.Generator) -> Plan:
    """Most striking side first, then topics in whatever order they come to mind."""
    sides = sorted(r.sectors, key=lambda s: (-SALIENCE[r.sectors[s].kind], float(rng.random())))
    sides += [s for s in ("ahead", "left", "right", "behind") if s not in sides]
    general = list(GENERAL)
    rng.shuffle(general)
    cut = int(rng.integers(0, len(general) + 1))
    general.insert(cut, EXTRA)
    order = ["street", *sides, *general]
    order.insert(1 if rng.random() < 0.5 else len(sides) + 1, "facing")
    return Plan(order=order, notes={"lower": bool(rng.random() < 0.6)})


def _capitalise(text: str) -> str:
    text = re.sub(r"\bi(?=\b|')", "I", text)
    return re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def join(r: Observation, plan: Plan, parts: list[tuple[str, str]], rng: np.random.Generator) -> str:
    """Clauses run together two or three at a time, with fillers between sentences."""
    sentences: list[str] = []
    current = ""
    for index, (_, clause) in enumerate(parts):
        if not current:
            current = (pick(rng, STARTERS) if index else "") + clause
        else:
            current += pick(rng, LINKS) + clause
        if current.count(",") >= 3 or rng.random() < 0.3 or index == len(parts) - 1:
            sentences.append(current + pick(rng, (".", ".", ".", "!", "...")))
            current = ""
    text = " ".join(sentences)
    return text if plan.notes["lower"] else _capitalise(text)


SPEC = StyleSpec(
    name="chatty",
    min_words=50,
    max_words=170,
    keep=KEEP,
    rank=RANK,
    plan=plan,
    phrase=phrase,
    join=join,
)
