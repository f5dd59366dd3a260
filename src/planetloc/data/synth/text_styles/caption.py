"""``caption``: the measured, complete voice of an image-captioning model.

Full sentences in sentence case, every sentence a statement about the scene, storeys given
as numbers or as "low-rise" / "multi-storey", sides told left, right, ahead, behind. It
tells every cue the difficulty kept. 60-200 words.
"""

from __future__ import annotations

import numpy as np

from planetloc.data.synth.observation import (
    FACT_CUES,
    Observation,
    SectorView,
    height_class,
)
from planetloc.data.synth.text_styles.compose import EXTRA, Plan, StyleSpec, pick

OPENERS = (
    "I am standing on {street}.",
    "I'm standing on {street}.",
    "Right now I am on {street}.",
    "I find myself standing on {street}.",
    "I stand in the middle of {street}.",
)
SIDES = {
    "left": (
        "To my left there {be} {x}.",
        "On my left I see {x}.",
        "On the left side: {x}.",
    ),
    "right": (
        "To my right there {be} {x}.",
        "On my right I notice {x}.",
        "On the right-hand side {be} {x}.",
    ),
    "ahead": (
        "Ahead of me there {be} {x}.",
        "Straight ahead I can see {x}.",
        "Further along the street {be} {x}.",
    ),
    "behind": ("Behind me there {be} {x}.", "Back the way I came there {be} {x}."),
}
# (wording, plural) per sector kind; buildings are worded from their attributes.
PLACES = {
    "water": (
        ("open water", False),
        ("the edge of a stretch of water", False),
        ("a stretch of calm water", False),
    ),
    "sports_field": (
        ("a sports field with white line markings", False),
        ("a playing field with a running track", False),
    ),
    "parking": (
        ("a large parking lot full of cars", False),
        ("a wide car park", False),
        ("rows of parked cars in a lot", True),
    ),
    "plaza": (
        ("a paved plaza", False),
        ("an open paved plaza with benches", False),
        ("a wide paved plaza", False),
    ),
    "rail": (
        ("railway tracks on a gravel bed", True),
        ("a rail line", False),
        ("train tracks", True),
    ),
    "dense_trees": (
        ("dense tree cover", False),
        ("a thick stand of trees with dense tree cover", False),
        ("dense tree cover and deep shade", False),
    ),
    "lawn": (
        ("an open grassy lawn", False),
        ("a grassy park", False),
        ("a patch of open grass", False),
    ),
    "scattered_trees": (("a few scattered trees", True), ("some trees dotted around", True)),
}
EXTRAS = {
    "traffic_noise": "I can hear the hum of traffic and the occasional horn.",
    "bus_stop": "A bus stop with a small shelter stands a few steps away.",
    "cyclist": "A cyclist rings a bell as they pass me.",
    "food_smell": "There is a faint smell of food from a nearby stall.",
    "power_lines": "Power lines run overhead between wooden poles.",
    "pedestrians": "A few pedestrians are waiting to cross.",
    "street_signs": "Street signs are mounted on a metal pole at the corner.",
    "parked_cars": "Parked cars line the curb on both sides.",
    "delivery_van": "A delivery van is stopped with its hazard lights on.",
    "awnings": "Some shop fronts have awnings over the sidewalk.",
    "worn_sidewalk": "The sidewalk is made of worn concrete slabs.",
    "traffic_light": "A traffic light blinks at the next junction.",
    "birds": "Birds are chirping somewhere in the trees.",
    "scooters": "A couple of scooters are parked near a lamp post.",
    "graffiti": "There is graffiti on a low wall beside the road.",
    "warm_air": "The air feels warm and still.",
}
# The caption tells cues in the record's own order (as the original generator did).
ORDER = [*FACT_CUES, EXTRA]
RANK = {
    "street": 10,
    "left": 9,
    "right": 9,
    "ahead": 8,
    "heights": 7,
    "roofs": 7,
    "vegetation": 7,
    "facing": 6,
    "no_buildings": 6,
    "water": 6,
    "behind": 5,
    "pool": 5,
    "climate": 5,
    "shadow": 5,
    "facades": 3,
    "shade": 3,
    EXTRA: 1,
}
SHADOW_SIDE = {
    "ahead": "ahead of me",
    "right": "to my right",
    "behind": "behind me",
    "left": "to my left",
}


def height_words(floors: int, rng: np.random.Generator) -> str:
    """A caption's adjective for buildings of ``floors`` storeys."""
    cls = height_class(floors)
    if cls == "low":
        return pick(rng, ("low one- and two-storey", "single-storey", "low-rise"))
    if cls == "mid":
        return pick(rng, (f"{floors}-storey", "mid-rise", f"{floors}-floor"))
    if cls == "tall":
        return pick(rng, (f"{floors}-storey", "tall", "multi-storey"))
    return pick(rng, ("towering high-rise", "skyscraper-height", f"{floors}-storey tower"))


def _place(view: SectorView, rng: np.random.Generator) -> tuple[str, bool]:
    if view.kind == "buildings":
        kind = height_words(view.storeys, rng)
        material = view.facade
        if view.roof is None:
            return f"a row of {kind} {material} buildings", False
        colour = view.roof
        options = (
            (f"a row of {kind} {material} buildings with {colour} roofs", False),
            (f"{kind} buildings, {material}, topped with {colour} roofs", True),
            (f"{material} {kind} buildings whose roofs look {colour}", True),
        )
        return options[int(rng.integers(len(options)))]
    if view.kind == "bare_ground":
        options = (
            (f"an empty lot of bare {view.soil} earth", False),
            (f"bare {view.soil} ground", False),
        )
        return options[int(rng.integers(len(options)))]
    options = PLACES[view.kind]
    return options[int(rng.integers(len(options)))]


def _street(r: Observation, rng: np.random.Generator) -> str:
    width = "wide, busy" if r.major_street else pick(rng, ("narrow", "quiet", "two-lane", "modest"))
    if r.junction == "roundabout":
        return f"a {width} street right next to a roundabout with a grassy island"
    if r.junction == "intersection":
        return f"a {width} intersection, with one street running {r.street_axis}"
    return f"a {width} street that runs {r.street_axis}"


def _vegetation(r: Observation) -> str:
    text = {
        "dense": f"The area has dense tree cover of {r.canopy} trees.",
        "scattered": f"There are scattered {r.canopy} trees along the way.",
        "few": "Only a few trees grow here.",
        "none": "There are almost no trees in sight.",
    }[r.tree_cover]
    if r.leafless:
        text += " The trees are bare and the grass looks brown."
    return text


def phrase(r: Observation, plan: Plan, cue: str, rng: np.random.Generator) -> str:
    """One caption sentence (or two) for ``cue``."""
    if cue == "street":
        return pick(rng, OPENERS).format(street=_street(r, rng))
    if cue == "facing":
        return f"I am facing {r.facing}."
    if cue in r.sectors:
        place, plural = _place(r.sectors[cue], rng)
        sentence = pick(rng, SIDES[cue]).format(x=place, be="are" if plural else "is")
        return sentence[0].upper() + sentence[1:]
    if cue == "heights":
        kind = height_words(r.storeys, rng)
        return pick(
            rng,
            (
                f"Most buildings around me are {kind}.",
                f"The buildings here are mostly {kind}.",
                f"The surrounding buildings are {kind} structures.",
            ),
        )
    if cue == "roofs":
        both = " and ".join(r.roofs)
        return pick(
            rng,
            (
                f"The roofs I can see are mostly {both}.",
                f"Rooftops are predominantly {both}.",
                f"Most roofs are {both}.",
            ),
        )
    if cue == "facades":
        return f"The facades are largely {r.facade}."
    if cue == "no_buildings":
        return "There are hardly any buildings around me."
    if cue == "vegetation":
        return _vegetation(r)
    if cue == "climate":
        if r.climate == "arid":
            return f"The ground between buildings is dry, dusty and {r.soil}."
        return "The greenery is lush and the air is humid."
    if cue == "water":
        return "I can see water nearby."
    if cue == "pool":
        return "A swimming pool glints in one of the yards."
    if cue == "shadow":
        side = SHADOW_SIDE[r.shadow_side]
        if r.shadow_length == "long":
            return f"Long shadows stretch {side}, toward the {r.shadow_toward}."
        if r.shadow_length == "short":
            return "The sun is nearly overhead and shadows are short."
        return f"Shadows fall {side}."
    if cue == "shade":
        return "The trees provide welcome shade over the sidewalk."
    return EXTRAS[cue.split(":", 1)[1]]


def plan(r: Observation, told: tuple[str, ...], rng: np.random.Generator) -> Plan:
    """Captions always tell cues in the same order."""
    return Plan(order=list(ORDER))


def join(r: Observation, plan: Plan, parts: list[tuple[str, str]], rng: np.random.Generator) -> str:
    """Sentences one after another."""
    return " ".join(text for _, text in parts)


SPEC = StyleSpec(
    name="caption",
    min_words=60,
    max_words=200,
    keep={},
    rank=RANK,
    plan=plan,
    phrase=phrase,
    join=join,
)
